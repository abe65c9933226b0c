"""Same-run A/B of what an idle server costs: CPU ms per second of `batchin serve --workers 1`
with no traffic, a baseline checkout against this one.

Both servers (the whole process tree: supervisor and API process) run side by side on a remote
catalog (no engine to load), get `--settle` seconds to finish starting, then their CPU is read from
/proc over the same `--seconds` window. The background workers' claims and the batch supervisor's
passes are all an idle server does, so this is their cost. Prints one JSON line.

    python bench/ab_idle.py --base /tmp/base-checkout [--seconds 20] [--settle 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import ROOT, batchin_server, remote_catalog, tree_cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=10.0)
    args = parser.parse_args()
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    catalog = str(remote_catalog("http://127.0.0.1:9/v1"))  # never called
    with contextlib.ExitStack() as stack:
        pids = {}
        for side, path in sides.items():
            env = {"BATCHIN_MODELS": catalog, "PYTHONPATH": path}
            server = stack.enter_context(batchin_server(core=-1, env=env, workers=1))
            pids[side] = server.process.pid
        time.sleep(args.settle)
        before = {side: tree_cpu_seconds(pid) for side, pid in pids.items()}
        started = time.monotonic()
        time.sleep(args.seconds)
        elapsed = time.monotonic() - started
        after = {side: tree_cpu_seconds(pid) for side, pid in pids.items()}
    per_second = {side: (after[side] - before[side]) * 1000 / elapsed for side in sides}
    result = {
        "bench": "idle_ab",
        "base": sides["A"],
        "seconds": round(elapsed, 1),
        "A_cpu_ms_per_s": round(per_second["A"], 2),
        "B_cpu_ms_per_s": round(per_second["B"], 2),
        "ratio": round(per_second["B"] / per_second["A"], 3) if per_second["A"] else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
