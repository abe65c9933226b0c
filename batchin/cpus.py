"""The CPUs this process may run on, and how many of them an embedded engine's threads take."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset), not the
    host's count. Thread pools sized past it (llama.cpp's decode threads spin while they wait for
    each other) run slower than pools that fit."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_threads() -> int:
    """Threads for a CPU engine's pool (llama.cpp): one CPU fewer than usable, at least one. The
    API processes, the supervisor and its writer run beside the engine; a pool as wide as the
    machine loses a thread to them whenever they work, and its other threads then spin at each
    graph node's barrier until it runs again. Measured on 2 vCPUs (bench/profiles/
    fill_timeline_fill6.txt): a 33-token prompt's evaluation at nice 10 beside busy processes took
    353-413 ms with one thread and 654-2,477 ms with two, and interactive TTFT p50 under a fill
    batch with `serve --workers 2` was 0.26-0.45 s against 0.49-0.85 s. The price, on a machine
    with nothing else to run: one run gave 0.25 s idle TTFT against 0.15 s with two threads."""
    return max(1, usable_cpus() - 1)
