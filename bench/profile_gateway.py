"""Where BatchIn's CPU goes on the gateway path: py-spy samples a real `batchin serve` (pinned to
one core, a remote model on the fake upstream) while bench_gateway's client drives chat calls
and 20-token streams at c=16; the samples are folded into text summaries (top functions by own
time and by cumulative time) in bench/profiles/, small enough to diff and keep.

    python bench/profile_gateway.py [--seconds 20] [--tag before]

Needs py-spy (the [dev] extra) and permission to ptrace the server (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_gateway import DELAY_MS, TOKENS, run
from bench.harness import BIN, batchin_server, fake_upstream, remote_catalog

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--tag", default="current")
    parser.add_argument("--folded-dir", default=tempfile.mkdtemp(), help="where the raw samples go")
    args = parser.parse_args()
    PROFILES.mkdir(exist_ok=True)
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
