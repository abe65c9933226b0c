#!/usr/bin/env bash
# Starts a throwaway PostgreSQL and redis-server on loopback for the test suite (installing them from
# Debian's packages if missing), and prints the environment the tests read. Usage:
#   eval "$(scripts/test-services.sh start)"   ...   scripts/test-services.sh stop
set -euo pipefail
STATE=${BATCHIN_TEST_SERVICES_DIR:-/tmp/batchin-test-services}
PG_PORT=${BATCHIN_TEST_PG_PORT:-55432}
REDIS_PORT=${BATCHIN_TEST_REDIS_PORT:-56379}

install_packages() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

start() {
  install_packages
  local bin
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
  mkdir -p "$STATE"
  chmod 777 "$STATE"
  if [ ! -f "$STATE/pg/PG_VERSION" ]; then
    rm -rf "$STATE/pg"
    su postgres -s /bin/sh -c "$bin/initdb -D $STATE/pg -A trust -U postgres --no-sync" >&2
  fi
  if ! su postgres -s /bin/sh -c "$bin/pg_ctl -D $STATE/pg status" >/dev/null 2>&1; then
    su postgres -s /bin/sh -c "$bin/pg_ctl -D $STATE/pg -l $STATE/pg.log -w -o '-p $PG_PORT -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300' start" >&2
  fi
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
      --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" >&2
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  echo "export BATCHIN_TEST_POSTGRES_URL=postgresql+asyncpg://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "export BATCHIN_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

stop() {
  local bin
  bin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)" 2>/dev/null || true)
  [ -n "$bin" ] && [ -d "$STATE/pg" ] && su postgres -s /bin/sh -c "$bin/pg_ctl -D $STATE/pg -m fast stop" >&2 || true
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
