"""Same-run A/B of `serve --workers 1` and `--workers 2`: a baseline checkout against this one.

Four servers at once (SQLite, no Redis, each its own data dir) in front of one light fake upstream,
driven in alternating rounds by bench_workers.py's client and measured as it measures (CPU of the
API processes and the supervisor from /proc): the baseline's `batchin/` (`--base`, a checkout or
`git archive`) with one and with two API processes, then this tree's. Prints one JSON line: each
setup's CPU ms per call (medians over rounds), this tree's over the baseline's for each worker
count, and each side's 2-over-1 efficiency (requests per server CPU-second, 2 workers / 1).

    python bench/ab_workers.py --base /tmp/base-checkout [--rounds 4] [--seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_workers import MODEL, Setup, measure, ratio
from bench.harness import ROOT, batchin_server, free_port, remote_catalog, stop, wait_ready
from bench.light_http import drive


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    sides = {"base": str(Path(args.base).resolve()), "branch": str(ROOT)}
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/light_http.py"), "--port", str(port), "--tokens", "20"], cwd=ROOT
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models")
        catalog = str(remote_catalog(f"http://127.0.0.1:{port}/v1", MODEL))
        for name in ("BATCHIN_REDIS_URL", "BATCHIN_DATABASE_URL"):
            os.environ.pop(name, None)  # SQLite and the in-process (or shared) limiter
        with contextlib.ExitStack() as stack:
            setups = []
            for side, path in sides.items():
                env = {"BATCHIN_MODELS": catalog, "PYTHONPATH": path}
                for workers in (1, 2):
                    server = stack.enter_context(batchin_server(core=-1, env=env, workers=workers))
                    setups.append(Setup(f"{side}_workers_{workers}", [server], workers))
            for setup in setups:  # warm-up
                drive("127.0.0.1", setup.targets(), connections=args.connections, seconds=2.0)
            for index in range(args.rounds):
                for setup in setups if index % 2 == 0 else setups[::-1]:
                    measure(setup, upstream.pid, connections=args.connections, seconds=args.seconds)
    finally:
        stop(upstream, timeout=10)
    summaries = {setup.name: setup.summary() for setup in setups}

    def cpu(name: str) -> float:
        figures = summaries[name]
        return float(figures["api_cpu_ms_per_request"] + figures["supervisor_cpu_ms_per_request"])

    figures: dict[str, Any] = {"bench": "ab_workers", "rounds": args.rounds, **summaries}
    for workers in (1, 2):
        figures[f"cpu_branch_over_base_workers_{workers}"] = ratio(
            cpu(f"branch_workers_{workers}"), cpu(f"base_workers_{workers}")
        )
    for side in sides:
        figures[f"{side}_efficiency_2_over_1"] = ratio(cpu(f"{side}_workers_1"), cpu(f"{side}_workers_2"))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
