"""Where BatchIn's CPU goes on the gateway path: py-spy samples a real `batchin serve` (pinned to
one core, a remote model on the fake upstream) while bench_gateway's client drives chat calls
and 20-token streams at c=16; the samples are folded into text summaries (top functions by own
time and by cumulative time) in bench/profiles/, small enough to diff and keep.

    python bench/profile_gateway.py [--seconds 20] [--tag before]
    python bench/profile_gateway.py --cprofile [--cpu-clock] [--modes chat,stream] [--tag before]

Needs py-spy (the [dev] extra) and permission to ptrace the server (root, or ptrace_scope 0).

py-spy's `--gil` view charges the event loop with the time it holds the GIL while descheduled
(the server is pinned to one core, so a woken writer thread runs then): a hand-off shows up as
"own time" of `SimpleQueue.put`. `--cprofile` instead reads each thread's CPU from /proc over a
fixed number of calls (the honest split: event loop vs SQLite writer threads), then profiles the
event loop's thread with cProfile over the same calls (deterministic counts per call; its times
are inflated by the profiler and, being wall-clock, include what other threads ran meanwhile).
`--cpu-clock` times the profile with the thread's CPU clock instead (no other thread's work in it)
and adds a table of the event loop's CPU by part of the path (`PARTS`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import os
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_gateway import DELAY_MS, TOKENS, run
from bench.harness import BIN, batchin_server, fake_upstream, remote_catalog, thread_cpu_seconds

PROFILES = Path(__file__).resolve().parent / "profiles"
TOP = 40


def summarise(folded: Path, title: str) -> str:
    """Top functions by own samples and by cumulative samples (a frame counted once per stack)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_short(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    out = [f"# {title}: {samples} samples", "", f"## top {TOP} by own time", ""]
    out += [f"{n * 100 / samples:6.2f}%  {frame}" for frame, n in own.most_common(TOP)]
    out += ["", f"## top {TOP} by cumulative time", ""]
    out += [f"{n * 100 / samples:6.2f}%  {frame}" for frame, n in total.most_common(TOP)]
    return "\n".join(out) + "\n"


def _short(frame: str) -> str:
    """`func (path/to/module.py:12)` → `func (module.py)`: lines vary between runs, files don't."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(BIN / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--gil",  # only the thread holding the GIL: Python CPU, not threads waiting for it
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def drive(target: tuple[str, dict[str, str], str], stream: bool, stop: threading.Event) -> None:
    while not stop.is_set():
        asyncio.run(run(*target, stream=stream, concurrency=16, count=160))


CPROFILE_CALLS = {"chat": 800, "stream": 320}  # per mode, at c=16

# Parts of the path, by where a function lives (first match wins; builtins stay "other").
PARTS: list[tuple[str, tuple[str, ...]]] = [
    (
        "background pollers (batch supervisor, workers)",
        (
            "batches/lifecycle",
            "core/worker.py",
            "video_worker",
            "experiments/",
            "webhooks/",
            "batches/worker",
            "batches/store",
            "sqlalchemy/",
            "aiosqlite",
            "greenlet",
            "store/database.py",
        ),
    ),
    ("traces", ("core/traces/", "write_behind")),
    ("HTTP front (uvicorn, Starlette, http_api)", ("uvicorn/", "starlette/", "http_api/", "sse_starlette")),
    (
        "upstream client (aiohttp, models/remote)",
        (
            "aiohttp/",
            "upstream_client",
            "upstream_http",
            "models/remote",
            "upstream_stream",
            "multidict",
            "yarl",
            "upstream_health",
            "propcache",
        ),
    ),
    ("asyncio machinery", ("asyncio/", "_weakrefset", "contextlib")),
    ("billing", ("core/billing/",)),
    ("audit and signing", ("core/audit/", "nacl/")),
    ("SQLite writer hand-off (loop side)", ("store/group_commit", "store/statements")),
    ("serving core", ("core/serving/", "models/registry", "models/base", "tool_calls", "core/context")),
    ("pydantic and protocol models", ("protocol/", "pydantic")),
    ("metrics", ("prometheus",)),
]


OTHER = "other (builtins, json, uuid…)"


def _part(file: str, name: str) -> str:
    where = f"{file} {name}"
    return next((p for p, marks in PARTS if any(m in where for m in marks)), OTHER)


def parts_table(prof: Path, calls: int) -> str:
    """The profiled thread's own time per call, summed by part of the path; then the same with the
    "other" functions' own time charged to their callers' parts (split as cProfile's caller
    records split it, one level up: what is still "other" was called from "other" code)."""
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    by_part: collections.Counter[str] = collections.Counter()
    charged: collections.Counter[str] = collections.Counter()
    for (file, _line, name), (_cc, _nc, own, _cum, callers) in stats.items():
        part = _part(file, name)
        by_part[part] += own
        if part != OTHER or not callers:
            charged[part] += own
            continue
        from_callers = sum(record[2] for record in callers.values()) or 1.0
        for (caller_file, _, caller_name), record in callers.items():
            charged[_part(caller_file, caller_name)] += own * record[2] / from_callers
    total = sum(by_part.values())
    return "\n".join(
        [
            *_part_rows(by_part, total, calls),
            f"{total * 1000 / calls:7.3f} ms/call  total (profiled: inflated by the profiler)",
            "",
            '## the same, "other" charged to its callers\' parts',
            "",
            *_part_rows(charged, total, calls),
        ]
    )


def _part_rows(by_part: collections.Counter[str], total: float, calls: int) -> list[str]:
    return [
        f"{own * 1000 / calls:7.3f} ms/call {own * 100 / total:5.1f}%  {part}"
        for part, own in by_part.most_common()
    ]


ThreadTimes = dict[str, tuple[float, float]]


def thread_table(before: ThreadTimes, after: ThreadTimes, calls: int) -> str:
    """Each thread's CPU ms per call over a run (user + system), busiest first."""
    rows = []
    for name, (user, system) in after.items():
        user0, system0 = before.get(name, (0.0, 0.0))
        used = (user - user0) + (system - system0)
        if used > 0:
            rows.append((used, f"{used * 1000 / calls:8.3f} ms/call  {name}"))
    total = sum(used for used, _ in rows)
    lines = [line for _, line in sorted(rows, reverse=True)]
    return "\n".join([*lines, f"{total * 1000 / calls:8.3f} ms/call  all threads"])


def cprofile_modes(tag: str, cpu_clock: bool, modes: list[str]) -> None:
    """Per-thread CPU (unprofiled), then cProfile of the event loop, for `modes` (chat, stream) at c=16."""
    out = Path(tempfile.mkdtemp()) / "gateway.prof"
    launcher = [sys.executable, str(Path(__file__).resolve().parent / "cprofile_serve.py"), str(out)]
    clock = {"BATCHIN_PROFILE_CLOCK": "cpu"} if cpu_clock else {}
    with fake_upstream(core=1, tokens=TOKENS, delay_ms=DELAY_MS) as upstream_url:
        catalog = remote_catalog(upstream_url)
        env = {"BATCHIN_MODELS": str(catalog), **clock}
        with batchin_server(core=0, env=env, launcher=launcher) as server:
            gateway = (
                f"{server.base}/v1/chat/completions",
                {"Authorization": f"Bearer {server.api_key}"},
                "remote-bench",
            )
            pid = server.process.pid
            asyncio.run(run(*gateway, stream=True, concurrency=4, count=40))  # warm-up
            asyncio.run(run(*gateway, stream=False, concurrency=4, count=40))
            for mode, calls in CPROFILE_CALLS.items():
                if mode not in modes:
                    continue
                stream = mode == "stream"
                before = thread_cpu_seconds(pid)
                asyncio.run(run(*gateway, stream=stream, concurrency=16, count=calls))
                threads = thread_table(before, thread_cpu_seconds(pid), calls)
                server.process.send_signal(signal.SIGUSR1)
                time.sleep(0.2)
                asyncio.run(run(*gateway, stream=stream, concurrency=16, count=calls))
                server.process.send_signal(signal.SIGUSR2)
                for _ in range(50):  # the stats file is written by the server's signal handler
                    time.sleep(0.1)
                    if out.exists():
                        break
                if cpu_clock:
                    threads += "\n\n## event loop thread by part of the path (cProfile, CPU clock)\n\n"
                    threads += parts_table(out, calls)
                text = _cprofile_text(out, f"{mode} c=16, {calls} calls ({tag})", threads)
                keep = os.environ.get("BENCH_KEEP_PROF")  # a directory: the raw stats for pstats
                if keep:
                    shutil.copy(out, Path(keep) / f"gateway_{mode}_{tag}.prof")
                out.unlink()
                (PROFILES / f"gateway_{mode}_{tag}.txt").write_text(text)
                print(text)


def _cprofile_text(prof: Path, title: str, threads: str) -> str:
    parts = [f"# {title}", "", "## CPU per call by thread (/proc, unprofiled run)", "", threads, ""]
    for order in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(str(prof), stream=buffer).strip_dirs().sort_stats(order).print_stats(TOP)
        body = buffer.getvalue()
        parts += [f"## event loop thread, cProfile, top {TOP} by {order}", "", body[body.find("   ncalls") :]]
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--tag", default="current")
    parser.add_argument("--folded-dir", default=tempfile.mkdtemp(), help="where the raw samples go")
    parser.add_argument("--cprofile", action="store_true", help="per-thread CPU and cProfile, not py-spy")
    parser.add_argument("--cpu-clock", action="store_true", help="with --cprofile: time with the CPU clock")
    parser.add_argument("--modes", default="chat,stream", help="with --cprofile: which of chat, stream")
    args = parser.parse_args()
    PROFILES.mkdir(exist_ok=True)
    if args.cprofile:
        cprofile_modes(args.tag, args.cpu_clock, args.modes.split(","))
        return
    with fake_upstream(core=1, tokens=TOKENS, delay_ms=DELAY_MS) as upstream_url:
        catalog = remote_catalog(upstream_url)
        with batchin_server(core=0, env={"BATCHIN_MODELS": str(catalog)}) as server:
            gateway = (
                f"{server.base}/v1/chat/completions",
                {"Authorization": f"Bearer {server.api_key}"},
                "remote-bench",
            )
            asyncio.run(run(*gateway, stream=True, concurrency=4, count=40))  # warm-up
            for mode, stream in (("chat", False), ("stream", True)):
                folded = Path(args.folded_dir) / f"gateway_{mode}_{args.tag}.folded"
                stop = threading.Event()
                load = threading.Thread(target=drive, args=(gateway, stream, stop))
                load.start()
                spy = profile(server.process.pid, args.seconds, folded)
                spy.wait()
                stop.set()
                load.join()
                title = f"{mode} c=16, {args.seconds}s ({args.tag})"
                text = summarise(folded, title)
                (PROFILES / f"gateway_{mode}_{args.tag}.txt").write_text(text)
                print(text)


if __name__ == "__main__":
    main()
