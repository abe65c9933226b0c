"""Same-run A/B of the gateway's CPU per call: a baseline checkout against this one.

Two `batchin serve` processes, both pinned to core 0, one running the code under `--base` (a
checkout or `git archive` of the baseline's `batchin/`), one this tree's; the same fake upstream
(20 tokens, 5 ms apart) behind both. Each round drives chat calls at c=1/16/64 and 20-token streams
at c=1/16/64 against A then B (the order alternates every round), reading each server's CPU from
/proc. On a shared machine wall-clock is noise; CPU time of the serving process is the steadier
figure, and the median over rounds the one to compare. Prints one JSON line: per mode the median
CPU ms per call of each side and their ratio (B / A), beside it (`MODE_off_loop`) that of the
threads other than the event loop (chiefly the SQLite group-commit writer: the ledger's, audit
log's and trace rows' transactions; trace rows are written up to one flush interval after their
calls, so a measurement carries a few of the previous one's), and (`MODE_p50_ms`) the median of
each round's p50 latency (chat) or TTFT (streams), wall-clock: read it at c=1 on an idle machine.

    python bench/ab_gateway.py --base /tmp/base-checkout [--rounds 5] [--scale 1]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_gateway import DELAY_MS, TOKENS, Target, measure
from bench.harness import (
    ROOT,
    ab_figure,
    batchin_server,
    fake_upstream_process,
    percentile,
    remote_catalog,
    thread_cpu_seconds,
)

# (mode name, stream, concurrency, calls per measurement at scale 1)
MODES = [
    ("chat_c1", False, 1, 40),
    ("chat_c16", False, 16, 320),
    ("chat_c64", False, 64, 640),
    ("stream_c1", True, 1, 40),
    ("stream_c16", True, 16, 160),
    ("stream_c64", True, 64, 384),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--modes", default=",".join(m[0] for m in MODES))
    args = parser.parse_args()
    wanted = set(args.modes.split(","))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client shares core 1 with the upstream
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    samples: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
    p50s: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
    off_loop: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        upstream_url, _ = stack.enter_context(fake_upstream_process(core=1, tokens=TOKENS, delay_ms=DELAY_MS))
        catalog = str(remote_catalog(upstream_url))
        targets: dict[str, tuple[Target, int]] = {}
        for side, path in sides.items():
            env = {"BATCHIN_MODELS": catalog, "PYTHONPATH": path}
            server = stack.enter_context(batchin_server(core=0, env=env))
            target: Target = (
                f"{server.base}/v1/chat/completions",
                {"Authorization": f"Bearer {server.api_key}"},
                "remote-bench",
            )
            measure(target, server.process.pid, stream=True, concurrency=4, count=40)  # warm-up
            measure(target, server.process.pid, stream=False, concurrency=4, count=40)
            targets[side] = (target, server.process.pid)
        for round_no in range(args.rounds):
            order = ["A", "B"] if round_no % 2 == 0 else ["B", "A"]
            for name, stream, concurrency, planned in MODES:
                if name not in wanted:
                    continue
                count = max(concurrency, int(planned * args.scale))
                for side in order:
                    target, pid = targets[side]
                    off_loop_before = off_loop_cpu_seconds(pid)
                    try:
                        m = measure(target, pid, stream=stream, concurrency=concurrency, count=count)
                    except httpx.TransportError as exc:  # a connection closed under us: say so, measure again
                        failures.append(f"{side} {name} round {round_no}: {type(exc).__name__}")
                        print(failures[-1], file=sys.stderr, flush=True)
                        m = measure(target, pid, stream=stream, concurrency=concurrency, count=count)
                    samples[side].setdefault(name, []).append(m.per_call_cpu_ms())
                    off_loop_ms = (off_loop_cpu_seconds(pid) - off_loop_before) * 1000 / count
                    off_loop[side].setdefault(name, []).append(off_loop_ms)
                    waits = m.ttfts if stream else m.latencies
                    p50s[side].setdefault(name, []).append(percentile(waits, 0.5) * 1000)
    result: dict[str, object] = {"bench": "gateway_ab", "base": sides["A"], "rounds": args.rounds}
    result["transport_errors"] = failures
    for name in samples["A"]:
        result[name] = ab_figure(samples["A"][name], samples["B"][name], unit="_cpu_ms")
        result[f"{name}_off_loop"] = ab_figure(off_loop["A"][name], off_loop["B"][name], unit="_cpu_ms")
        result[f"{name}_p50_ms"] = ab_figure(p50s["A"][name], p50s["B"][name], unit="_ms")
    print(json.dumps(result))


def off_loop_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server's threads other than its event loop (the main thread): the SQLite
    group-commit writer's, chiefly, and aiosqlite's readers'. (Python 3.11 leaves every thread the
    process's OS name, so the writer cannot be told apart by name.)"""
    threads = thread_cpu_seconds(pid).items()
    return sum(user + system for name, (user, system) in threads if name.split(":")[-1] != str(pid))


if __name__ == "__main__":
    main()
