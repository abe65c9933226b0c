"""Same-run A/B of one status read (GET /v1/batches/{id}) of a running batch of `--tasks` tasks:
a baseline checkout against this one, both `batchin serve --workers 1` on one SQLite data dir.

The batch is written straight into the store: 60% of its tasks completed, 5% failed, the rest
pending but due only in a year (so no dispatcher runs them and the batch stays `in_progress`).
Each round, for A then B (the order alternates): a "cold" read after `--gap` seconds without any
(longer than any count reuse), its wall time; then `--polls` reads back to back, the server's CPU
per read from /proc and the wall time per read. Prints one JSON line with the medians and B / A.

    python bench/ab_batch_status.py --base /tmp/base-checkout [--tasks 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchin.core.accounts.keys import hash_secret
from batchin.store.tables import api_keys, batches
from bench.harness import (
    ROOT,
    ab_figure,
    bench_key,
    free_port,
    remote_catalog,
    serve_process,
    stop,
    tree_cpu_seconds,
    wait_ready,
)

YEAR_MS = 365 * 24 * 3600 * 1000


def make_batch(data_dir: str, key: str, tasks: int) -> str:
    """A running file batch of `tasks` tasks of `key`'s user, written straight into the store: its id."""
    engine = create_engine(f"sqlite:///{Path(data_dir) / 'batchin.db'}")
    batch_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with engine.begin() as conn:
        query = select(api_keys.c.user_id, api_keys.c.id).where(api_keys.c.key_hash == hash_secret(key))
        user_id, key_id = conn.execute(query).one()
        conn.execute(
            insert(batches).values(
                id=batch_id,
                user_id=user_id,
                key_id=key_id,
                form="file",
                endpoint="/v1/chat/completions",
                completion_window="24h",
                priority="low",
                status="in_progress",
                total_tasks=tasks,
                completed_tasks=0,
                failed_tasks=0,
                request_id="req_bench",
                created_at=now,
                expires_at=now + timedelta(days=1),
                in_progress_at=now,
            )
        )
        body = '{"model": "remote-bench", "messages": [{"role": "user", "content": "hi"}]}'
        later = int(time.time() * 1000) + YEAR_MS  # pending, never due

        def status(line: int) -> str:
            share = line % 100
            return "completed" if share < 60 else "failed" if share < 65 else "pending"

        rows = [
            (batch_id, i, f"t{i}", "/v1/chat/completions", "remote-bench", body, 2, status(i), later, 0, 0)
            for i in range(tasks)
        ]
        conn.exec_driver_sql(
            "INSERT INTO batch_tasks (batch_id, line, custom_id, endpoint, model, body, priority, status, "
            "next_attempt_at, attempts, failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    engine.dispose()
    return batch_id


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--polls", type=int, default=40)
    parser.add_argument("--gap", type=float, default=6.0)
    args = parser.parse_args()
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    data_dir = tempfile.mkdtemp(prefix="batchin-status-")
    catalog = str(remote_catalog("http://127.0.0.1:9/v1"))
    base_env = {**os.environ, "BATCHIN_DATA_DIR": data_dir, "BATCHIN_MODELS": catalog}
    key = bench_key({**base_env, "PYTHONPATH": sides["B"]})
    batch_id = make_batch(data_dir, key, args.tasks)
    cold: dict[str, list[float]] = {s: [] for s in sides}
    poll_cpu: dict[str, list[float]] = {s: [] for s in sides}
    poll_wall: dict[str, list[float]] = {s: [] for s in sides}
    with contextlib.ExitStack() as stack:
        servers = {}
        for side, path in sides.items():
            port = free_port()
            process = serve_process({**base_env, "PYTHONPATH": path}, port, workers=1)
            stack.callback(stop, process)
            wait_ready(f"http://127.0.0.1:{port}/health", timeout=240)
            client = stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"})
            )
            servers[side] = (client, process.pid)
        url = f"/v1/batches/{batch_id}"
        for client, _ in servers.values():  # both answer, with the same counts
            counts = client.get(url).json()["request_counts"]
            expected = {"total": args.tasks, "completed": args.tasks * 60 // 100, "failed": args.tasks // 20}
            if counts != expected:
                raise SystemExit(f"wrong counts: {counts}, expected {expected}")
        for round_no in range(args.rounds):
            for side in ["A", "B"] if round_no % 2 == 0 else ["B", "A"]:
                client, pid = servers[side]
                time.sleep(args.gap)
                started = time.perf_counter()
                client.get(url).raise_for_status()
                cold[side].append((time.perf_counter() - started) * 1000)
                cpu, started = tree_cpu_seconds(pid), time.perf_counter()
                for _ in range(args.polls):
                    client.get(url).raise_for_status()
                poll_wall[side].append((time.perf_counter() - started) * 1000 / args.polls)
                poll_cpu[side].append((tree_cpu_seconds(pid) - cpu) * 1000 / args.polls)
    result: dict[str, object] = {"bench": "batch_status_ab", "tasks": args.tasks, "rounds": args.rounds}
    for name, samples in (("cold_wall_ms", cold), ("poll_cpu_ms", poll_cpu), ("poll_wall_ms", poll_wall)):
        result[name] = ab_figure(samples["A"], samples["B"], digits=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
