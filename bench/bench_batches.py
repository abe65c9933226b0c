"""A million-task batch, end to end, against a fast local fake upstream model.

    python bench/bench_batches.py [--tasks N] [--workers W] [--profile NAME]
        (tasks: default BENCH_BATCH_TASKS, else 1,000,000; workers: `batchin serve`'s own default)

Writes a JSONL file of N chat requests, uploads it to a real `batchin serve` (SQLite, default
settings) with POST /v1/files, starts a batch over it and follows it to the end. Figures: upload +
validation seconds (upload start → the batch leaves `validating`), dispatch rate (tasks finished
per second while in progress), the CPU milliseconds per task of the server (all its processes:
with --workers N the supervisor and its API processes; `event_loop_cpu_ms_per_task` is their main
threads' share, the rest their SQLite and file threads) and of the fake upstream while dispatching,
the largest peak RSS among the server's processes, and the exactly-once checks: every custom_id once in the
output, and (read from the store) every task billed once (one succeeded usage log per request id,
no reservation left held), receipted once (one signed record per task in the transparency log) and
traced once (one trace per task, naming its record). Prints one JSON line.
Targets (issue 16): upload + validation ≤ 60 s, dispatch ≥ 2,000 tasks/s on 2 cores, peak RSS ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (
    batchin_server,
    cpu_seconds,
    fake_upstream_process,
    process_tree,
    remote_catalog,
    tree_cpu_seconds,
)
from bench.profile_gateway import PROFILES, summarise

MODEL = "remote-bench"


def write_input(path: Path, count: int) -> None:
    with path.open("w") as out:
        for index in range(count):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"item {index}"}],
                "max_tokens": 4,
            }
            line = {"custom_id": f"t{index}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")


def event_loop_cpu_seconds(pid: int) -> float:
    """CPU seconds of the event-loop threads (each process's main thread) of the server's processes;
    the rest of their CPU is their threads' (SQLite writers and readers, file writers)."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/task/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def peak_rss_mb(pid: int) -> float:
    """The largest peak RSS among the server's processes (with --workers N: each API process)."""
    peaks = [float("nan")]
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks[1:], default=peaks[0])


@contextlib.contextmanager
def py_spy(pid: int, name: str | None, tasks: int) -> Iterator[None]:
    """With `name`: py-spy samples the server's API processes (the supervisor's children with
    --workers N, else the one process) while the batch dispatches; their stacks, summarised, go to
    bench/profiles/batch_dispatch_NAME.txt."""
    if not name:
        yield
        return
    members = process_tree(pid)
    folded = [
        Path(tempfile.mkdtemp(prefix="batchin-profile-")) / f"{index}.txt" for index in range(len(members))
    ]
    spies = [
        subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-r",
                "200",
                # --gil: samples of the thread running Python (CPU, not waits); add --native for C frames.
                *os.environ.get("BENCH_PYSPY_FLAGS", "--nonblocking --gil").split(),
                "-f",
                "raw",
                "-p",
                str(target),
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for target, out in zip(members[1:] or members, folded, strict=False)
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        both = folded[0].with_name("all.txt")
        both.write_text("".join(f.read_text() for f in folded if f.exists()))
        flags = os.environ.get("BENCH_PYSPY_FLAGS", "--nonblocking --gil")
        title = f"batch dispatch, {tasks} tasks, {len(spies)} API process(es), py-spy {flags}"
        (PROFILES / f"batch_dispatch_{name}.txt").write_text(summarise(both, title))


def store_checks(data_dir: str, tasks: int) -> dict[str, object]:
    """Billed, receipted and traced exactly once, read from the server's SQLite store (WAL: a
    reader never blocks it). Traces are written behind: wait until every one is in."""
    db = sqlite3.connect(f"file:{Path(data_dir) / 'batchin.db'}?mode=ro", uri=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            traces = db.execute("SELECT count(*), count(DISTINCT record_id) FROM trace_summaries").fetchone()
            if traces[0] >= tasks or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        logs, requests, charged = db.execute(
            "SELECT count(*), count(DISTINCT request_id), coalesce(sum(cost_units), 0) FROM usage_logs "
            "WHERE status = 'succeeded'"
        ).fetchone()
        task_cost = db.execute("SELECT coalesce(sum(cost_units), 0) FROM batch_tasks").fetchone()[0]
        held = db.execute("SELECT count(*) FROM reservations WHERE status = 'held'").fetchone()[0]
        records, log_size = db.execute(
            "SELECT (SELECT count(*) FROM vaas_records), (SELECT tree_size FROM vaas_log_state)"
        ).fetchone()
        traced_records = db.execute(
            "SELECT count(*) FROM trace_summaries t JOIN vaas_records r ON r.id = t.record_id"
        ).fetchone()[0]
        spans = db.execute("SELECT count(*) FROM trace_spans").fetchone()[0]
        # A call's spans packed in one row (since revision 0020; a baseline may predate it).
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'trace_call_spans'").fetchone():
            spans += db.execute("SELECT coalesce(sum(span_count), 0) FROM trace_call_spans").fetchone()[0]
    finally:
        db.close()
    return {
        "billed_exactly_once": logs == requests == tasks and charged == task_cost and held == 0,
        "receipted_exactly_once": records == log_size == tasks,
        "traced_exactly_once": traces[0] == traces[1] == traced_records == tasks,
        "store": {
            "usage_logs": logs,
            "charged_units": charged,
            "task_cost_units": task_cost,
            "reservations_held": held,
            "audit_records": records,
            "log_size": log_size,
            "traces": traces[0],
            "traces_with_record": traced_records,
            "spans": spans,
        },
    }


def read_output(client: httpx.Client, file_id: str) -> tuple[int, int]:
    """(distinct custom_ids, duplicates) in the output file."""
    seen: set[str] = set()
    duplicates = 0
    with client.stream("GET", f"/v1/files/{file_id}/content") as response:
        for line in response.iter_lines():
            if line:
                custom_id = json.loads(line)["custom_id"]
                duplicates += custom_id in seen
                seen.add(custom_id)
    return len(seen), duplicates


@dataclass
class Dispatched:
    """One batch run against a live server: its final view and what it cost."""

    batch: dict[str, Any]
    upload_s: float
    upload_and_validation_s: float
    dispatch_s: float  # validated → finished (0 with ingest_only)
    server_cpu_s: float  # the server's process tree while dispatching
    loop_cpu_s: float  # of that, the event-loop threads
    upstream_cpu_s: float


def run_batch(
    client: httpx.Client,
    server_pid: int,
    upstream_pid: int,
    source: Path,
    *,
    ingest_only: bool = False,
    poll_seconds: float = 1.0,
    on_validated: Callable[[], None] | None = None,
) -> Dispatched:
    """Upload `source`, start a batch over it and follow it to the end (with `ingest_only`: cancel
    it once validated), reading the CPU of the server and upstream processes from /proc while it
    dispatches. `on_validated` runs when dispatching starts (a profiler is attached there)."""
    started = time.perf_counter()
    with source.open("rb") as raw:
        uploaded = client.post(
            "/v1/files", data={"purpose": "batch"}, files={"file": ("input.jsonl", raw, "application/jsonl")}
        )
    uploaded.raise_for_status()
    upload_s = time.perf_counter() - started
    batch = client.post(
        "/v1/batches",
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    ).json()
    batch_id = batch["id"]
    validated_at = None
    cpu_start = (0.0, 0.0, 0.0)
    while True:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        now = time.perf_counter()
        if validated_at is None and batch["status"] != "validating":
            validated_at = now
            cpu_start = (
                tree_cpu_seconds(server_pid),
                cpu_seconds(upstream_pid),
                event_loop_cpu_seconds(server_pid),
            )
            if on_validated is not None:
                on_validated()
            if ingest_only:
                client.post(f"/v1/batches/{batch_id}/cancel")
                break
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            break
        time.sleep(poll_seconds)  # each poll counts the tasks by status: keep it off the figures
    finished = time.perf_counter()
    return Dispatched(
        batch=batch,
        upload_s=upload_s,
        upload_and_validation_s=(validated_at or finished) - started,
        dispatch_s=0.0 if ingest_only else finished - (validated_at or finished),
        server_cpu_s=tree_cpu_seconds(server_pid) - cpu_start[0],
        loop_cpu_s=event_loop_cpu_seconds(server_pid) - cpu_start[2],
        upstream_cpu_s=cpu_seconds(upstream_pid) - cpu_start[1],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = int(os.environ.get("BENCH_BATCH_TASKS", "1000000"))
    parser.add_argument("--tasks", type=int, default=default, help="tasks in the batch (default %(default)s)")
    parser.add_argument(
        "--ingest-only", action="store_true", help="stop after validation (the batch is cancelled)"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="`batchin serve --workers N` (default: its own, the CPUs)"
    )
    parser.add_argument(
        "--profile",
        default=None,
        metavar="NAME",
        help="profile the dispatching processes into bench/profiles/batch_dispatch_NAME.txt",
    )
    parser.add_argument(
        "--model-concurrency",
        type=int,
        default=256,
        help="the fake model's max_concurrency (default %(default)s)",
    )
    args = parser.parse_args()
    tasks = args.tasks
    work = Path(tempfile.mkdtemp(prefix="batchin-batch-bench-"))
    source = work / "input.jsonl"
    write_input(source, tasks)
    results: dict[str, object] = {
        "bench": "batches_1m",
        "tasks": tasks,
        "input_mb": round(source.stat().st_size / 2**20, 1),
        "workers": args.workers,
    }
    with fake_upstream_process(core=-1, tokens=1, delay_ms=0) as (upstream_url, upstream):
        catalog = remote_catalog(upstream_url, MODEL, max_concurrency=args.model_concurrency)
        with (
            batchin_server(core=-1, env={"BATCHIN_MODELS": str(catalog)}, workers=args.workers) as server,
            contextlib.ExitStack() as profiling,
        ):
            headers = {"Authorization": f"Bearer {server.api_key}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=600) as client:
                run = run_batch(
                    client,
                    server.process.pid,
                    upstream.pid,
                    source,
                    ingest_only=args.ingest_only,
                    on_validated=lambda: profiling.enter_context(
                        py_spy(server.process.pid, args.profile, tasks)
                    ),
                )
                profiling.close()
                batch = run.batch
                results.update(
                    {
                        "status": batch["status"],
                        "request_counts": batch.get("request_counts") or {},
                        "upload_s": round(run.upload_s, 2),
                        "upload_and_validation_s": round(run.upload_and_validation_s, 2),
                    }
                )
                if not args.ingest_only:
                    dispatch_s = run.dispatch_s
                    checks = store_checks(server.data_dir, tasks)
                    distinct, duplicates = read_output(client, batch["output_file_id"])
                    results.update(
                        {
                            "dispatch_s": round(dispatch_s, 2),
                            "dispatch_tasks_per_s": round(tasks / dispatch_s, 1) if dispatch_s > 0 else None,
                            # CPU per task while dispatching: what a noisy shared machine blurs least.
                            "server_cpu_ms_per_task": round(run.server_cpu_s * 1000 / tasks, 3),
                            "event_loop_cpu_ms_per_task": round(run.loop_cpu_s * 1000 / tasks, 3),
                            "upstream_cpu_ms_per_task": round(run.upstream_cpu_s * 1000 / tasks, 3),
                            "results_exactly_once": distinct == tasks and duplicates == 0,
                            "duplicates": duplicates,
                            **checks,
                        }
                    )
                results["peak_rss_mb"] = round(peak_rss_mb(server.process.pid), 1)
    results["targets"] = {"upload_and_validation_s": 60, "dispatch_tasks_per_s": 2000, "peak_rss_mb": 500}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
