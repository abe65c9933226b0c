"""Shared pieces of the benchmarks: processes pinned to cores, a user and key, timed HTTP/SSE calls.

Benchmarks compare against a baseline measured in the same run (ratios), since these machines are
shared and noisy; each script prints one JSON line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int) -> list[str]:
    """Prefix pinning a process to one core (when taskset and a second core exist; core < 0: none)."""
    if core < 0 or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds of each thread of `pid`, by "name:tid"."""
    tick = os.sysconf("SC_CLK_TCK")
    threads: dict[str, tuple[float, float]] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        threads[f"{name}:{tid}"] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return threads


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (a `batchin serve --workers N` supervisor's API processes)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for thread in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(child) for child in thread.read_text().split()]
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live descendants."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def ab_figure(
    a_rounds: list[float], b_rounds: list[float], unit: str = "", digits: int = 3
) -> dict[str, Any]:
    """One figure of a same-run A/B (baseline A, this tree B): each side's median over its rounds
    (keys `A{unit}`, `B{unit}`), B over A (None when A is 0), and the rounds themselves."""
    a, b = statistics.median(a_rounds), statistics.median(b_rounds)
    return {
        f"A{unit}": round(a, digits),
        f"B{unit}": round(b, digits),
        "ratio": round(b / a, 3) if a else None,
        "A_rounds": [round(x, digits) for x in a_rounds],
        "B_rounds": [round(x, digits) for x in b_rounds],
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    api_key: str
    data_dir: str
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)


def serve_process(
    env: dict[str, str],
    port: int,
    *,
    workers: int | None = None,
    core: int = -1,
    log: Path | None = None,
    launcher: list[str] | None = None,
) -> subprocess.Popen[bytes]:
    """`batchin serve` on 127.0.0.1:`port` with `workers` API processes (None: the command's
    default, one per CPU it may run on), started, not yet ready (see `wait_ready`); its output goes
    to `log` when given. `launcher`: what runs `serve …` instead of the `batchin` script
    (bench/cprofile_serve.py)."""
    command = [
        *pinned(core),
        *(launcher or [str(BIN / "batchin")]),
        *("serve", "--host", "127.0.0.1", "--port", str(port)),
        *("--log-level", "warning"),
        *(() if workers is None else ("--workers", str(workers))),
    ]
    if log is None:
        return subprocess.Popen(command, env=env, cwd=ROOT)
    with log.open("wb") as sink:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM (a graceful drain), then SIGKILL if it has not ended in `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def cli_json(env: dict[str, str], *args: str) -> dict[str, Any]:
    """`batchin ARGS…` with `env`; its JSON answer."""
    done = subprocess.run([str(BIN / "batchin"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"batchin {' '.join(args)} failed: {done.stderr}")
    return dict(json.loads(done.stdout))


def bench_key(env: dict[str, str], credit_cents: int = 10**8, rpm: int = 1_000_000) -> str:
    """A new user with `credit_cents` and an API key of it allowed `rpm`: the key."""
    user = cli_json(
        env,
        *("users", "create", "--email", f"bench{time.monotonic_ns()}@example.com", "--name", "bench"),
        *("--credit-cents", str(credit_cents)),
    )
    return str(cli_json(env, "keys", "create", "--user", user["id"], "--rpm", str(rpm))["key"])


@contextlib.contextmanager
def batchin_server(
    *,
    core: int = 0,
    env: dict[str, str] | None = None,
    credit_cents: int = 10**8,
    workers: int | None = None,
    launcher: list[str] | None = None,
) -> Iterator[Server]:
    """A real `batchin serve` on a free port, with one user and a high-RPM key. `launcher`: what
    runs `serve …` instead of the `batchin` script (bench/cprofile_serve.py)."""
    data_dir = tempfile.mkdtemp(prefix="batchin-bench-")
    full_env = {**os.environ, "BATCHIN_DATA_DIR": data_dir, **(env or {})}
    key = bench_key(full_env, credit_cents)
    port = free_port()
    process = serve_process(full_env, port, workers=workers, core=core, launcher=launcher)
    server = Server(f"http://127.0.0.1:{port}", process, key, data_dir)
    try:
        wait_ready(f"{server.base}/health", timeout=240)  # a loaded machine starts slowly
        yield server
    finally:
        stop(process, timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def fake_upstream(*, core: int = 1, tokens: int = 20, delay_ms: float = 5.0) -> Iterator[str]:
    """The fake OpenAI-compatible upstream (tests/fakes/fake_upstream.py) in its own process."""
    with fake_upstream_process(core=core, tokens=tokens, delay_ms=delay_ms) as (url, _):
        yield url


@contextlib.contextmanager
def fake_upstream_process(
    *, core: int = 1, tokens: int = 20, delay_ms: float = 5.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As `fake_upstream`, with its process (for a bench that measures the upstream's own CPU)."""
    port = free_port()
    process = subprocess.Popen(
        [
            *pinned(core),
            sys.executable,
            str(ROOT / "tests/fakes/fake_upstream.py"),
            "--port",
            str(port),
            "--tokens",
            str(tokens),
            "--delay-ms",
            str(delay_ms),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1", process
    finally:
        process.terminate()
        process.wait(timeout=15)


def remote_catalog(upstream_url: str, model_id: str = "remote-bench", *, max_concurrency: int = 256) -> Path:
    """An operator catalog with one remote model pointing at `upstream_url`."""
    path = Path(tempfile.mkdtemp(prefix="batchin-catalog-")) / "models.toml"
    path.write_text(
        f"""
[models.{model_id}]
kind = ["chat", "completion"]
engine = "remote"
description = "benchmark upstream"
licence = "test"
context_length = 8192
status = "always_on"
max_concurrency = {max_concurrency}
queue_size = {max_concurrency}

[models.{model_id}.upstream]
urls = ["{upstream_url}"]
model = "fake-model"

[models.{model_id}.pricing]
input_per_1m = 0.01
output_per_1m = 0.02
"""
    )
    return path
