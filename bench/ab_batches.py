"""Same-run A/B of batch dispatch: a baseline checkout against this one, CPU per task.

Two `batchin serve` processes (SQLite, `--workers W`), one running the code under `--base` (a
checkout or `git archive` of the baseline's `batchin/`), one this tree's, the same fast fake
upstream (one token, no delay) behind both. Each round runs one batch of `--tasks` chat tasks on A
then on B (the order alternates every round), reading each server's process tree CPU from /proc
while it dispatches (bench_batches.run_batch). On a shared machine wall-clock is noise; CPU per
task is the steadier figure, and the median over rounds the one to compare. Prints one JSON line:
the median server CPU ms per task of each side (and of their event-loop threads), tasks/s, and
the ratios B / A.

    python bench/ab_batches.py --base /tmp/base-checkout [--rounds 5] [--tasks 10000] [--workers 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_batches import MODEL, run_batch, write_input
from bench.harness import ROOT, Server, ab_figure, batchin_server, fake_upstream_process, remote_catalog

FIGURES = ("cpu_ms_per_task", "loop_cpu_ms_per_task", "tasks_per_s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=1, help="`batchin serve --workers N` on both sides")
    args = parser.parse_args()
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    source = Path(tempfile.mkdtemp(prefix="batchin-ab-batches-")) / "input.jsonl"
    write_input(source, args.tasks)
    samples: dict[str, dict[str, list[float]]] = {side: {f: [] for f in FIGURES} for side in sides}
    checks: dict[str, bool] = {side: True for side in sides}
    with contextlib.ExitStack() as stack:
        upstream_url, upstream = stack.enter_context(fake_upstream_process(core=-1, tokens=1, delay_ms=0))
        catalog = str(remote_catalog(upstream_url, MODEL))
        servers: dict[str, tuple[Server, httpx.Client]] = {}
        for side, path in sides.items():
            env = {"BATCHIN_MODELS": catalog, "PYTHONPATH": path}
            server = stack.enter_context(batchin_server(core=-1, env=env, workers=args.workers))
            headers = {"Authorization": f"Bearer {server.api_key}"}
            client = stack.enter_context(httpx.Client(base_url=server.base, headers=headers, timeout=600))
            servers[side] = (server, client)
        for round_no in range(args.rounds):
            for side in ["A", "B"] if round_no % 2 == 0 else ["B", "A"]:
                server, client = servers[side]
                run = run_batch(client, server.process.pid, upstream.pid, source, poll_seconds=0.25)
                counts = run.batch.get("request_counts") or {}
                checks[side] &= run.batch["status"] == "completed" and counts.get("completed") == args.tasks
                samples[side]["cpu_ms_per_task"].append(run.server_cpu_s * 1000 / args.tasks)
                samples[side]["loop_cpu_ms_per_task"].append(run.loop_cpu_s * 1000 / args.tasks)
                samples[side]["tasks_per_s"].append(args.tasks / max(run.dispatch_s, 1e-9))
    result: dict[str, object] = {
        "bench": "batches_ab",
        "base": sides["A"],
        "tasks": args.tasks,
        "workers": args.workers,
        "rounds": args.rounds,
        "all_completed": checks,
    }
    for figure in FIGURES:
        result[figure] = ab_figure(samples["A"][figure], samples["B"][figure])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
