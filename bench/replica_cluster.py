"""Several `batchin serve` replicas on one PostgreSQL and one Redis on loopback (the services of
scripts/test-services.sh, named by BATCHIN_TEST_POSTGRES_URL and BATCHIN_TEST_REDIS_URL), each
replica its own process on its own port, as on separate machines: what bench_replicas.py measures
and tests/test_replicas.py checks.

Each cluster gets a database of its own (created, then dropped), one data dir shared by the
replicas (the shared volume a deployment mounts for uploaded files and batch outputs, and where
the webhook and media-link keys live, so every replica unseals what another sealed), and a catalog
with one remote model on a fake upstream, priced high so that a budget runs out in a few calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import cli_json, free_port, serve_process, stop, wait_ready

MODEL = "remote-replica"
# USD per 1M tokens: a 20-token answer costs 2 cents, so budgets run out within a few dozen calls.
OUTPUT_PER_1M = 1000.0
INPUT_PER_1M = 10.0


def catalog(upstream_url: str, folder: Path) -> Path:
    path = folder / "models.toml"
    path.write_text(
        f"""
[models.{MODEL}]
kind = ["chat", "completion"]
engine = "remote"
description = "replica benchmark upstream"
licence = "test"
context_length = 8192
status = "always_on"
max_concurrency = 256
queue_size = 1024

[models.{MODEL}.upstream]
urls = ["{upstream_url}"]
model = "fake-model"

[models.{MODEL}.pricing]
input_per_1m = {INPUT_PER_1M}
output_per_1m = {OUTPUT_PER_1M}
"""
    )
    return path


class WebhookCounter:
    """A local webhook endpoint counting deliveries by their `webhook-id` (one per event)."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.payloads: dict[str, dict[str, Any]] = {}
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                event_id = self.headers.get("webhook-id", "")
                counter.deliveries[event_id] += 1
                counter.payloads[event_id] = json.loads(body or b"{}")
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Cluster:
    env: dict[str, str]
    database_url: str  # asyncpg's form, for direct checks
    data_dir: Path
    replicas: list[subprocess.Popen[bytes]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def cli(self, *args: str) -> dict[str, Any]:
        return cli_json(self.env, *args)

    def start_replica(self, workers: int = 1) -> str:
        port = free_port()
        log = self.data_dir.parent / f"replica-{len(self.replicas)}.log"
        url = f"http://127.0.0.1:{port}"
        self.replicas.append(serve_process(self.env, port, workers=workers, log=log))
        self.urls.append(url)
        self.logs.append(log)
        wait_ready(f"{url}/health", timeout=240)  # a loaded machine starts slowly
        return url

    def kill(self, index: int) -> None:
        """SIGKILL: the replica dies mid-work, as a machine does, without any shutdown."""
        self.replicas[index].send_signal(signal.SIGKILL)
        self.replicas[index].wait(timeout=10)

    def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async def run() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(self.database_url)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()

        return asyncio.run(run())


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_plain(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def cluster(
    upstream_url: str, postgres_url: str, redis_url: str, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """A fresh database and shared data dir, migrated once; replicas are started by the caller."""
    name = f"bench_replicas_{uuid.uuid4().hex[:10]}"
    base, _, _ = postgres_url.rpartition("/")
    database_url = f"{base}/{name}"
    asyncio.run(admin(postgres_url, f'CREATE DATABASE "{name}"'))
    work = Path(tempfile.mkdtemp(prefix="batchin-replicas-"))
    data_dir = work / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env.update(
        BATCHIN_DATA_DIR=str(data_dir),
        BATCHIN_DATABASE_URL=database_url,
        BATCHIN_REDIS_URL=redis_url,
        BATCHIN_MODELS=str(catalog(upstream_url, work)),
        BATCHIN_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        BATCHIN_WEBHOOK_POLL_SECONDS="0.2",
        # A killed replica's batch tasks are claimed again once its lease lapses: keep that short.
        BATCHIN_BATCH_LEASE_SECONDS="3",
        **(extra_env or {}),
    )
    running = Cluster(env, _plain(database_url), data_dir)
    try:
        running.cli("db", "upgrade")  # once, before replicas could race to do it
        yield running
    finally:
        for process in running.replicas:
            if process.poll() is None:
                process.terminate()
        for process in running.replicas:
            stop(process, timeout=30)
        asyncio.run(admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)
