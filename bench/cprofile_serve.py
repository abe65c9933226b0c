"""`batchin serve` with its event loop's thread under cProfile between two signals: SIGUSR1 starts
profiling, SIGUSR2 stops it and writes the stats to the file named first (bench/profile_gateway.py
--cprofile drives it). Only the main thread is profiled: the one running the event loop.

    python bench/cprofile_serve.py OUT.prof serve --host 127.0.0.1 --port 8000

With BATCHIN_PROFILE_CLOCK=cpu the profiler times with the thread's CPU clock instead of the wall
clock: what other threads run while this one waits (the SQLite writer after a hand-off) is then
no longer charged to the function that waited.
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
import time
from types import FrameType


def main() -> None:
    out = sys.argv[1]
    cpu_clock = os.environ.get("BATCHIN_PROFILE_CLOCK") == "cpu"

    def profiler() -> cProfile.Profile:
        return cProfile.Profile(time.thread_time) if cpu_clock else cProfile.Profile()

    profilers = [profiler()]

    def start(_signum: int, _frame: FrameType | None) -> None:
        profilers[0] = profiler()  # a fresh one: each window is profiled on its own
        profilers[0].enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profilers[0].disable()
        profilers[0].dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from batchin.cli import main as batchin_main

    sys.argv = ["batchin", *sys.argv[2:]]
    batchin_main()


if __name__ == "__main__":
    main()
