"""Where `--workers 2` spends CPU per request that `--workers 1` does not: py-spy samples every API
process (all threads, active ones only: SQLite's own work in the writer thread counts) of both
servers of bench_workers.py in turn while the light client drives chat calls; the samples become
milliseconds per request by function (samples / rate / requests), and the summary in bench/profiles/
lists the functions whose cost per request grew most from 1 to 2 workers.

    python bench/profile_workers.py [--seconds 10] [--tag current]

Needs py-spy (the [dev] extra) and permission to ptrace the servers.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_workers import MODEL, api_processes
from bench.harness import BIN, ROOT, batchin_server, free_port, remote_catalog, stop, wait_ready
from bench.light_http import chat_request, drive
from bench.profile_gateway import PROFILES, _short

RATE = 200
TOP = 30


def per_request_ms(folded: list[Path], requests: int) -> tuple[dict[str, float], dict[str, float]]:
    """(own, cumulative) ms of CPU per request by function, over the processes' samples."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    for path in folded:
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            frames = [_short(frame) for frame in stack.split(";")]
            own[frames[-1]] += int(count_text)
            for frame in set(frames):
                total[frame] += int(count_text)
    scale = 1000 / RATE / max(1, requests)
    return {k: v * scale for k, v in own.items()}, {k: v * scale for k, v in total.items()}


def record(pids: list[int], seconds: int, folder: Path, tag: str) -> list[Path]:
    outputs = [folder / f"{tag}-{pid}.folded" for pid in pids]
    spies = [
        subprocess.Popen(
            [
                *(str(BIN / "py-spy"), "record", "--pid", str(pid), "--duration", str(seconds)),
                *("--rate", str(RATE), "--format", "raw", "--gil", "--output", str(out)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, out in zip(pids, outputs, strict=True)
    ]
    for spy in spies:
        spy.wait()
    return outputs


def section(title: str, figures: dict[str, float]) -> list[str]:
    rows = sorted(figures.items(), key=lambda item: -abs(item[1]))[:TOP]
    return ["", f"## {title}", "", *(f"{ms:8.4f} ms  {name}" for name, ms in rows)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tag", default="current")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="batchin-profile-"))
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench/light_http.py"), "--port", str(upstream_port)], cwd=ROOT
    )
    results: dict[int, tuple[dict[str, float], dict[str, float], int]] = {}
    try:
        wait_ready(f"http://127.0.0.1:{upstream_port}/v1/models")
        for name in ("BATCHIN_REDIS_URL", "BATCHIN_DATABASE_URL"):
            os.environ.pop(name, None)
        env = {"BATCHIN_MODELS": str(remote_catalog(f"http://127.0.0.1:{upstream_port}/v1", MODEL))}
        for workers in (1, 2):
            with batchin_server(core=-1, env=env, workers=workers) as server:
                port = int(server.base.rsplit(":", 1)[1])
                request = chat_request("127.0.0.1", port, server.api_key, MODEL)
                drive("127.0.0.1", [(port, request)], connections=args.connections, seconds=2.0)
                targets = [(port, request)]
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    load = pool.submit(
                        drive, "127.0.0.1", targets, connections=args.connections, seconds=args.seconds + 1
                    )
                    api = api_processes(server.process.pid, workers)
                    folded = record(api, args.seconds, folder, str(workers))
                    driven = load.result()
                requests = round(driven.ok * args.seconds / driven.seconds)
                own, total = per_request_ms(folded, requests)
                results[workers] = (own, total, requests)
    finally:
        stop(upstream, timeout=10)
    (own1, total1, n1), (own2, total2, n2) = results[1], results[2]
    grew_own = {k: own2.get(k, 0.0) - own1.get(k, 0.0) for k in set(own1) | set(own2)}
    grew_total = {k: total2.get(k, 0.0) - total1.get(k, 0.0) for k in set(total1) | set(total2)}
    lines = [
        f"# API processes' CPU per request, --workers 1 ({n1} requests) vs 2 ({n2}), {args.tag}",
        f"# sampled CPU per request: 1 worker {sum(own1.values()):.3f} ms, "
        f"2 workers {sum(own2.values()):.3f} ms",
        *section("own ms per request: 2 workers minus 1", grew_own),
        *section("cumulative ms per request: 2 workers minus 1", grew_total),
        *section("own ms per request, 1 worker", own1),
        *section("own ms per request, 2 workers", own2),
    ]
    PROFILES.mkdir(exist_ok=True)
    text = "\n".join(lines) + "\n"
    (PROFILES / f"workers_{args.tag}.txt").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
