"""Replicas that act as one, and every core (issue 16). Prints one JSON line.

On one PostgreSQL and one Redis on loopback (scripts/test-services.sh; BATCHIN_TEST_POSTGRES_URL,
BATCHIN_TEST_REDIS_URL), BENCH_REPLICAS (default 3) `batchin serve` replicas:
- rpm: one key's RPM limit, hit as fast as possible round-robin over the replicas; allowed calls
  against what the limit allows in the time taken (burst + refill), goal within 2%;
- budget: concurrent chat calls spread over the replicas on a key with a small monthly budget;
  spent never over it, and spent = the usage logs' cost;
- batch: a batch run by all replicas, one of them SIGKILLed mid-run; every task's result exactly
  once, every task billed once (usage logs), no reservation left held;
- webhooks: the batch's completion event delivered exactly once;
- saturation: ledger transactions/s (chat calls/s through all replicas, each call one reservation
  and one settlement transaction) and limiter operations/s (Redis GCRA hits from one client) —
  the figures docs/reference/scaling.mdx quotes;
- workers: bench_workers.py's comparison of `batchin serve --workers 2` with `--workers 1`
  (SQLite): req/s, and API-process CPU per request, which is what scaling means while the load
  generator shares the cores.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_workers import compare
from bench.harness import fake_upstream
from bench.replica_cluster import MODEL, Cluster, WebhookCounter, admin, cluster

REPLICAS = int(os.environ.get("BENCH_REPLICAS", "3"))
TASKS = int(os.environ.get("BENCH_REPLICA_BATCH_TASKS", "2000"))
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
UNITS_PER_CENT = 1_000_000


def new_user(c: Cluster, credit_cents: int = 10**6, **key: str) -> tuple[str, str, str]:
    """A user, and a key of it with `key`'s options (rpm, budget_cents): (user id, key id, key)."""
    email = f"r{time.monotonic_ns()}@example.com"
    user = c.cli("users", "create", "--email", email, "--name", "R", "--credit-cents", str(credit_cents))
    rpm = key.pop("rpm", "1000000")
    options = [item for name, value in key.items() for item in (f"--{name.replace('_', '-')}", value)]
    made = c.cli("keys", "create", "--user", user["id"], "--rpm", rpm, *options)
    return user["id"], made["id"], made["key"]


def spread(c: Cluster, key: str, count: int, method: str, path: str, body: Any = None) -> list[int]:
    """`count` requests round-robin over the replicas, 16 at a time; their status codes in order."""
    clients = [
        httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) for url in c.urls
    ]

    def one(index: int) -> int:
        return clients[index % len(clients)].request(method, path, json=body).status_code

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, range(count)))
    finally:
        for client in clients:
            client.close()


def rpm_accuracy(c: Cluster, limit: int = 300) -> dict[str, Any]:
    _, _, key = new_user(c, rpm=str(limit))
    started = time.monotonic()
    codes = spread(c, key, 2 * limit, "GET", "/v1/users/me")
    elapsed = time.monotonic() - started
    allowed = codes.count(200)
    expected = limit + limit * elapsed / 60  # the burst, plus what refilled while we sent
    return {
        "limit_rpm": limit,
        "allowed": allowed,
        "refused": codes.count(429),
        "expected": round(expected, 1),
        # Whole calls: at least the burst, at most the burst and every call refilled in the time.
        "within_bounds": limit <= allowed <= limit + math.ceil(limit * elapsed / 60),
        "error_pct": round(100 * abs(allowed - expected) / expected, 2),
    }


def budget_holds(c: Cluster, budget_cents: int = 20, calls: int = 80) -> dict[str, Any]:
    _, key_id, key = new_user(c, budget_cents=str(budget_cents))
    codes = spread(c, key, calls, "POST", "/v1/chat/completions", CHAT)
    (row,) = c.query("SELECT COALESCE(SUM(spent_units), 0) AS spent FROM key_spend WHERE key_id = $1", key_id)
    (logged,) = c.query(
        "SELECT COALESCE(SUM(cost_units), 0) AS cost, COUNT(*) AS n FROM usage_logs WHERE key_id = $1", key_id
    )
    budget_units = budget_cents * UNITS_PER_CENT
    return {
        "budget_units": budget_units,
        "spent_units": int(row["spent"]),
        "logged_cost_units": int(logged["cost"]),
        "calls_ok": codes.count(200),
        "calls_refused": len(codes) - codes.count(200),
        "usage_logs": int(logged["n"]),
        "overspent": int(row["spent"]) > budget_units,
    }


def batch_input(count: int) -> bytes:
    lines = [
        json.dumps(
            {
                "custom_id": f"t{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {**CHAT, "max_tokens": 4},
            }
        )
        for i in range(count)
    ]
    return ("\n".join(lines) + "\n").encode()


def batch_with_a_replica_killed(c: Cluster, hooks: WebhookCounter, tasks: int = TASKS) -> dict[str, Any]:
    """Killed: the first replica, once a quarter of the tasks are done; watched through the last."""
    user_id, _, key = new_user(c)
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=c.urls[-1], headers=auth, timeout=600) as client:
        upload = client.post(
            "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", batch_input(tasks))}
        )
        upload.raise_for_status()
        body = {
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
            "webhook_url": hooks.url,
        }
        created = client.post("/v1/batches", json=body)
        created.raise_for_status()
        batch_id = created.json()["id"]
        killed_at = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            batch = client.get(f"/v1/batches/{batch_id}").json()
            done = (batch.get("request_counts") or {}).get("completed", 0)
            if killed_at is None and done >= tasks // 4:
                c.kill(0)
                killed_at = done
            if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                break
            time.sleep(0.2)
        seen: dict[str, int] = {}  # custom_id → lines for it in the output and error files
        for file_id in (batch.get("output_file_id"), batch.get("error_file_id")):
            if file_id:
                for line in client.get(f"/v1/files/{file_id}/content").text.splitlines():
                    if line:
                        custom_id = json.loads(line)["custom_id"]
                        seen[custom_id] = seen.get(custom_id, 0) + 1
    settle_deadline = time.monotonic() + 30  # the killed replica's reservations: swept when stale
    while time.monotonic() < settle_deadline:
        (held,) = c.query(
            "SELECT COUNT(*) AS n FROM reservations WHERE user_id = $1 AND status = 'held'", user_id
        )
        if held["n"] == 0:
            break
        time.sleep(1)
    (logs,) = c.query(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM usage_logs WHERE user_id = $1", user_id
    )
    return {
        "batch_id": batch_id,
        "tasks": tasks,
        "status": batch["status"],
        "killed_replica_after_tasks": killed_at,
        "results": sum(seen.values()),
        "failed": (batch.get("request_counts") or {}).get("failed", 0),
        "results_exactly_once": len(seen) == tasks and all(n == 1 for n in seen.values()),
        "usage_logs": int(logs["n"]),
        "reservations_left_held": int(held["n"]),
    }


def webhooks_once(hooks: WebhookCounter, batch_id: str, wait_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not hooks.deliveries:
        time.sleep(0.2)
    time.sleep(3)  # room for a duplicate from another replica to arrive
    for_batch = [e for e, p in hooks.payloads.items() if (p.get("data") or {}).get("id") == batch_id]
    return {
        "events_for_batch": len(for_batch),
        "deliveries": dict(hooks.deliveries),
        "each_delivered_once": bool(hooks.deliveries) and all(n == 1 for n in hooks.deliveries.values()),
    }


def ledger_transactions_per_s(c: Cluster, seconds: float = 8.0) -> dict[str, Any]:
    """Chat calls/s through every replica at once: each is a reservation and a settlement (usage
    log, rollup, balance) in PostgreSQL, plus a limiter hit in Redis."""
    _, _, key = new_user(c)
    ok, elapsed = closed_loop(c.urls, key, seconds, concurrency=48)
    return {
        "chat_calls_per_s": round(ok / elapsed, 1),
        "ledger_transactions_per_s": round(2 * ok / elapsed, 1),
    }


def limiter_ops_per_s(redis_url: str, seconds: float = 3.0) -> dict[str, Any]:
    from batchin.core.billing.limits_redis import RedisRateLimiter

    async def run() -> float:
        limiter = RedisRateLimiter(redis_url)
        done = 0
        stop = time.monotonic() + seconds

        async def worker(index: int) -> None:
            nonlocal done
            while time.monotonic() < stop:
                await limiter.hit(f"bench-limiter-{index}", 10**9, key_id=f"bench-{index}")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(32)))
        rate = done / (time.monotonic() - started)
        await limiter.close()
        return rate

    return {"limiter_ops_per_s_one_client": round(asyncio.run(run()), 1)}


def service_ceilings(postgres_url: str, redis_url: str, seconds: int = 10) -> dict[str, Any]:
    """What the services themselves do on this machine, without BatchIn: pgbench's simple-update
    transactions/s (an UPDATE, a SELECT and an INSERT each, about a ledger write's size) on a
    scratch database, and redis-benchmark running the limiter's own GCRA script on random keys."""
    import glob
    import shutil

    from sqlalchemy.engine import make_url

    from batchin.core.billing.limits_redis import _SCRIPT

    figures: dict[str, Any] = {}
    pgbench = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench")) or [shutil.which("pgbench") or ""]
    url = make_url(postgres_url)
    if pgbench[-1]:
        name = f"bench_pgbench_{os.getpid()}"
        asyncio.run(admin(postgres_url, f'CREATE DATABASE "{name}"'))
        try:
            where = [
                "-h",
                url.host or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "postgres",
            ]
            subprocess.run(
                [pgbench[-1], "-i", "-q", "-s", "4", *where, name], check=True, capture_output=True
            )
            out = subprocess.run(
                [pgbench[-1], "-N", "-c", "8", "-j", "2", "-T", str(seconds), *where, name],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            tps = [line for line in out.splitlines() if line.startswith("tps")]
            figures["postgres_simple_update_tps_c8"] = float(tps[0].split()[2]) if tps else None
        finally:
            asyncio.run(admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    benchmark = shutil.which("redis-benchmark")
    if benchmark:
        where_redis = make_url(redis_url)
        out = subprocess.run(
            [
                benchmark,
                "-h",
                where_redis.host or "127.0.0.1",
                "-p",
                str(where_redis.port or 6379),
                "-c",
                "16",
                "-n",
                "100000",
                "-r",
                "100000",
                "-q",
                "EVAL",
                _SCRIPT,
                "1",
                "bench:{key:__rand_int__}:rpm",
                "1000000",
                "60",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rates = re.findall(r"([0-9.]+) requests per second", out)
        figures["redis_limiter_script_per_s_c16"] = float(rates[-1]) if rates else None
    return figures


def closed_loop(urls: list[str], key: str, seconds: float, concurrency: int) -> tuple[int, float]:
    """Chat calls kept `concurrency` in flight for `seconds`: (successful calls, elapsed)."""

    async def run() -> tuple[int, float]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        clients = [
            httpx.AsyncClient(
                base_url=u, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=60
            )
            for u in urls
        ]
        ok = 0
        stop = time.monotonic() + seconds

        async def worker(index: int) -> None:
            nonlocal ok
            client = clients[index % len(clients)]
            while time.monotonic() < stop:
                response = await client.post("/v1/chat/completions", json=CHAT)
                ok += response.status_code == 200

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.monotonic() - started
        for client in clients:
            await client.aclose()
        return ok, elapsed

    return asyncio.run(run())


def step(result: dict[str, Any], name: str, measure: Any) -> None:
    """One figure; each also goes to stderr as it is made, so a run cut short keeps what it had."""
    result[name] = measure()
    print(json.dumps({name: result[name]}), file=sys.stderr, flush=True)


def main() -> None:
    postgres_url = os.environ["BATCHIN_TEST_POSTGRES_URL"]
    redis_url = os.environ["BATCHIN_TEST_REDIS_URL"]
    result: dict[str, Any] = {"bench": "replicas", "replicas": REPLICAS, "cpus": os.cpu_count()}
    with fake_upstream(core=-1, tokens=20, delay_ms=5) as upstream_url:
        with cluster(upstream_url, postgres_url, redis_url, {"BATCHIN_STALE_RESERVATION_SECONDS": "6"}) as c:
            for _ in range(REPLICAS):
                c.start_replica()
            step(result, "rpm", lambda: rpm_accuracy(c))
            step(result, "budget", lambda: budget_holds(c))
            step(
                result, "saturation", lambda: {**ledger_transactions_per_s(c), **limiter_ops_per_s(redis_url)}
            )
            hooks = WebhookCounter()
            try:
                step(result, "batch", lambda: batch_with_a_replica_killed(c, hooks))
                step(result, "webhooks", lambda: webhooks_once(hooks, result["batch"]["batch_id"]))
            finally:
                hooks.close()
        step(result, "service_ceilings", lambda: service_ceilings(postgres_url, redis_url))
    # `serve --workers 2` over `--workers 1` on SQLite: bench_workers.py (its own light upstream).
    step(result, "workers", lambda: compare(seconds=4.0, rounds=2, connections=64, delay_ms=0.0))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
