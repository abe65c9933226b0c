"""A real `batchin serve` killed with SIGKILL in the middle of a batch, then started again: every
task completes exactly once and is billed exactly once, on SQLite and on PostgreSQL.

The model is a remote one served by the fake upstream (tests/fakes/fake_upstream.py), slow enough
that the kill lands while tasks are running. The restarted process sees the dead one's claims (a
process on this host that no longer exists), releases what its interrupted attempts reserved, and
runs those tasks again; everything already completed stays completed and is not run again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import BACKENDS, POSTGRES_URL
from tests.fakes.fake_upstream import FakeUpstream, start_fake_upstream
from tests.live_server import serve_command

pytestmark = pytest.mark.slow

BATCHIN = str(Path(sys.executable).with_name("batchin"))
TASKS = 120
CREDIT_CENTS = 100
# The fake reports 2 prompt tokens ("say hello") and 5 completion tokens; at 150 and 300 units per
# token, half price: 900 units per task.
TASK_UNITS = (2 * 150 + 5 * 300) // 2

CATALOG = """
[models.slow-remote]
kind = ["chat"]
engine = "remote"
licence = "MIT"
context_length = 4096
status = "always_on"
max_concurrency = 6
queue_size = 16
[models.slow-remote.upstream]
urls = ["{url}"]
model = "fake-model"
[models.slow-remote.pricing]
input_per_1m = 1.5
output_per_1m = 3
"""


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = start_fake_upstream(tokens=5, delay_ms=25)  # ~100 ms a task, 6 at a time
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'batchin.db'}"
        return
    import asyncpg

    base = make_url(POSTGRES_URL or "")
    name = f"batchin_crash_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(
        base.set(drivername="postgresql", database="postgres").render_as_string(False)
    )
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def env(tmp_path: Path, upstream: FakeUpstream, database_url: str) -> dict[str, str]:
    catalog = tmp_path / "models.toml"
    catalog.write_text(CATALOG.replace("{url}", upstream.url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env.update(
        BATCHIN_DATA_DIR=str(tmp_path / "data"),
        BATCHIN_DATABASE_URL=database_url,
        BATCHIN_MODELS=str(catalog),
        BATCHIN_BATCH_POLL_SECONDS="0.1",
    )
    return env


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([BATCHIN, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:
        process = subprocess.Popen(
            serve_command(port),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"batchin serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return process
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"batchin serve did not become healthy:\n{log.read_text()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(client: httpx2.Client, batch_id: str, until: Any, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = client.get(f"/v1/batches/{batch_id}").raise_for_status().json()
        if until(batch):
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(
                f"batch not there after {timeout}s: {batch['status']} {batch['request_counts']}"
            )
        time.sleep(0.05)


def restart_and_finish(
    env: dict[str, str], port: int, log: Path, headers: dict[str, str], batch_id: str
) -> tuple[dict[str, Any], str, dict[str, Any], list[dict[str, Any]]]:
    """Start the server again on the same data and wait for the batch to end: the batch, its output
    file's text, the user, and the usage logs."""
    second = serve(env, port, log)
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            done = poll(
                client, batch_id, lambda b: b["status"] in ("completed", "failed", "expired", "cancelled")
            )
            output = client.get(f"/v1/files/{done['output_file_id']}/content").raise_for_status().text
            logs = client.get("/v1/usage/logs?limit=500").raise_for_status().json()
            me = client.get("/v1/users/me").raise_for_status().json()
    finally:
        second.terminate()
        second.wait(timeout=30)
    return done, output, me, logs


def test_a_killed_server_completes_and_bills_every_task_exactly_once(
    env: dict[str, str], upstream: FakeUpstream, tmp_path: Path
) -> None:
    cli(env, "db", "upgrade")
    user = cli(
        env,
        "users",
        "create",
        "--email",
        "crash@example.com",
        "--name",
        "C",
        "--credit-cents",
        str(CREDIT_CENTS),
    )
    port, log = free_port(), tmp_path / "server.log"
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    lines = [
        {
            "custom_id": f"task-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "slow-remote", "messages": [{"role": "user", "content": "say hello"}]},
        }
        for i in range(TASKS)
    ]
    data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    first = serve(env, port, log)
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            uploaded = client.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
            body = {
                "input_file_id": uploaded.raise_for_status().json()["id"],
                "endpoint": "/v1/chat/completions",
            }
            batch_id = client.post("/v1/batches", json=body).raise_for_status().json()["id"]
            poll(client, batch_id, lambda b: b["request_counts"]["completed"] >= TASKS // 4)
            first.send_signal(signal.SIGKILL)  # mid-batch: some tasks done, some running, most waiting
            first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    requests_before_restart = upstream.stats.requests

    done, output, me, logs = restart_and_finish(env, port, log, headers, batch_id)

    assert (done["status"], done["completed_tasks"], done["failed_tasks"]) == ("completed", TASKS, 0), (
        log.read_text()
    )
    assert "error_file_id" not in done  # omitted while absent, as OpenAI's schema has it
    results = [json.loads(line) for line in output.splitlines()]
    assert sorted(r["custom_id"] for r in results) == sorted(f"task-{i}" for i in range(TASKS))
    succeeded = [entry for entry in logs if entry["status"] == "succeeded"]
    assert len(succeeded) == len({entry["request_id"] for entry in succeeded}) == TASKS
    assert sorted(entry["request_id"] for entry in succeeded) == sorted(
        r["response"]["request_id"] for r in results
    )
    charged = sum(entry["cost_micro_cents"] for entry in logs)
    assert charged == TASKS * TASK_UNITS
    spent = (CREDIT_CENTS - Decimal(str(me["credit_balance_cents"]))) * 1_000_000
    assert spent == charged  # nothing is left held or charged twice
    assert requests_before_restart < TASKS  # the kill really interrupted the batch...
    assert upstream.stats.requests > TASKS  # ...with calls in flight, which ran again, billed once


BLOCK_TASKS = 900
FAST_CATALOG = CATALOG.replace(
    "max_concurrency = 6\nqueue_size = 16", "max_concurrency = 64\nqueue_size = 64"
)


def test_a_server_killed_with_settlement_blocks_in_flight_bills_every_task_once(tmp_path: Path) -> None:
    """On SQLite finished tasks are settled in blocks (one writer operation for all the tasks that
    finished while the previous transaction committed). A fast upstream keeps blocks of tasks
    between their claim and their block's commit at any moment; SIGKILL lands among them. After a
    restart every task is completed, billed and usage-logged exactly once, every call that was
    recorded has its receipt, and nothing stays held."""
    fake = start_fake_upstream(tokens=5, delay_ms=1)
    try:
        catalog = tmp_path / "models.toml"
        catalog.write_text(FAST_CATALOG.replace("{url}", fake.url))
        data_dir = tmp_path / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
        env.update(
            BATCHIN_DATA_DIR=str(data_dir),
            BATCHIN_DATABASE_URL=f"sqlite+aiosqlite:///{data_dir / 'batchin.db'}",
            BATCHIN_MODELS=str(catalog),
            BATCHIN_BATCH_POLL_SECONDS="0.1",
        )
        cli(env, "db", "upgrade")
        user = cli(
            env, "users", "create", "--email", "blocks@example.com", "--name", "B", "--credit-cents", "1000"
        )
        port, log = free_port(), tmp_path / "server.log"
        headers = {"Authorization": f"Bearer {user['api_key']}"}
        body = {"model": "slow-remote", "messages": [{"role": "user", "content": "say hello"}]}
        lines = [
            {"custom_id": f"task-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            for i in range(BLOCK_TASKS)
        ]
        data = b"".join(json.dumps(line).encode() + b"\n" for line in lines)

        first = serve(env, port, log)
        try:
            with httpx2.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
                uploaded = client.post(
                    "/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}
                )
                create = {
                    "input_file_id": uploaded.raise_for_status().json()["id"],
                    "endpoint": "/v1/chat/completions",
                }
                batch_id = client.post("/v1/batches", json=create).raise_for_status().json()["id"]
                poll(client, batch_id, lambda b: b["request_counts"]["completed"] >= BLOCK_TASKS // 3)
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        calls_before_restart = fake.stats.requests
        with sqlite3.connect(data_dir / "batchin.db") as db:
            recorded_at_kill = db.execute(
                "SELECT count(*) FROM batch_tasks WHERE status = 'completed'"
            ).fetchone()[0]
            running_at_kill = db.execute(
                "SELECT count(*) FROM batch_tasks WHERE status = 'running'"
            ).fetchone()[0]

        done, output, me, _ = restart_and_finish(env, port, log, headers, batch_id)
    finally:
        fake.stop()

    # The kill interrupted blocks: tasks claimed and not recorded, calls answered and not recorded.
    assert running_at_kill > 0
    assert calls_before_restart > recorded_at_kill
    assert (done["status"], done["completed_tasks"], done["failed_tasks"]) == ("completed", BLOCK_TASKS, 0), (
        log.read_text()[-3000:]
    )
    results = [json.loads(line) for line in output.splitlines()]
    assert sorted(r["custom_id"] for r in results) == sorted(f"task-{i}" for i in range(BLOCK_TASKS))
    with sqlite3.connect(data_dir / "batchin.db") as db:
        logs, requests, charged = db.execute(
            "SELECT count(*), count(DISTINCT request_id), sum(cost_units) FROM usage_logs "
            "WHERE status = 'succeeded'"
        ).fetchone()
        task_cost = db.execute("SELECT sum(cost_units) FROM batch_tasks").fetchone()[0]
        held = db.execute("SELECT count(*) FROM reservations WHERE status = 'held'").fetchone()[0]
        receipts, log_size = db.execute(
            "SELECT (SELECT count(*) FROM vaas_records), (SELECT tree_size FROM vaas_log_state)"
        ).fetchone()
    assert logs == requests == BLOCK_TASKS  # one usage log per task
    assert charged == task_cost == BLOCK_TASKS * TASK_UNITS
    assert held == 0
    spent = (1000 - Decimal(str(me["credit_balance_cents"]))) * 1_000_000
    assert spent == charged  # the balance moved by exactly what the usage logs say
    # Every recorded call was receipted (a receipt is signed per call served, so an attempt the
    # kill cut off after its receipt keeps that receipt: never fewer receipts than tasks).
    assert BLOCK_TASKS <= receipts == log_size <= fake.stats.requests
