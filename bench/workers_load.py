"""What drives bench_workers.py's servers and answers as their upstream (`--load`): `wrk` (wrk and
nginx, bench/native_load.py) or `python` (bench_workers.py's own process and bench/light_http.py).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from bench.harness import ROOT, free_port, stop, wait_ready
from bench.light_http import MODELS, completion
from bench.native_load import native_tools, nginx_upstream


@dataclass
class Load:
    """What drives the servers and answers as their upstream: `python` (bench_workers.py and
    bench/light_http.py) or `wrk` (wrk and nginx, the binaries' paths set)."""

    name: str
    reason: str
    wrk: str = ""
    nginx: str = ""
    wrk_threads: int = 1


def choose_load(requested: str | None, delay_ms: float, wrk_threads: int) -> Load:
    """The load `requested`, else wrk when wrk and nginx are on PATH and no pacing is asked for."""
    tools = native_tools()
    if requested == "python":
        return Load("python", "asked for (--load python)")
    if requested == "wrk" and isinstance(tools, str):
        raise SystemExit(f"--load wrk: {tools}")
    if requested == "wrk" and delay_ms:
        raise SystemExit("--load wrk: nginx answers at once; --delay-ms needs --load python")
    if isinstance(tools, str):
        return Load("python", tools)
    if delay_ms:
        return Load("python", "--delay-ms needs light_http's pacing upstream")
    reason = "asked for (--load wrk)" if requested == "wrk" else "wrk and nginx found on PATH"
    return Load("wrk", reason, *tools, wrk_threads=wrk_threads)


PYTHON_LOAD = Load("python", "the default of measure()")


@contextlib.contextmanager
def upstream_for(load: Load, delay_ms: float) -> Iterator[tuple[str, int]]:
    """The fake upstream of `load`: its base URL (`…/v1`) and its pid (nginx: the master)."""
    if load.name == "wrk":
        with nginx_upstream(load.nginx, completion(20), MODELS) as (url, process):
            yield url, process.pid
        return
    port = free_port()
    command = [sys.executable, str(ROOT / "bench/light_http.py"), "--port", str(port), "--tokens", "20"]
    process = subprocess.Popen([*command, "--delay-ms", str(delay_ms)], cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1", process.pid
    finally:
        stop(process, timeout=10)
