"""Control-path cost: CPU per request of an authenticated, metered call to a no-op model.

The server runs in its own process pinned to one core; the load generator runs on the other.
Server CPU time (user+sys from /proc) over N requests gives CPU ms per request; wall time gives
requests/s. As a baseline in the same run, the same server's public /health-free route
(/openapi.json is too big; we use an unauthenticated 404) shows the framework's own floor.
Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "16"))
PORT = int(os.environ.get("BENCH_PORT", "18231"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


async def drive(url: str, headers: dict[str, str], count: int, method: str = "POST") -> tuple[float, int]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    ok = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal ok
            while not queue.empty():
                queue.get_nowait()
                response = await client.request(method, url, headers=headers)
                ok += response.status_code < 300

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - start, ok


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="batchin-bench-")
    env = {**os.environ, "BATCHIN_DATA_DIR": data_dir, "PYTHONPATH": str(ROOT)}
    created = subprocess.run(
        [
            str(VENV_BIN / "batchin"),
            "users",
            "create",
            "--email",
            "bench@example.com",
            "--name",
            "bench",
            "--credit-cents",
            "100000000",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    user = json.loads(created.stdout)
    key_out = subprocess.run(
        [str(VENV_BIN / "batchin"), "keys", "create", "--user", user["id"], "--rpm", "1000000"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = json.loads(key_out.stdout)["key"]
    server = subprocess.Popen(
        [
            *pin(0),
            str(VENV_BIN / "uvicorn"),
            "--factory",
            "bench.noop_app:create",
            "--host",
            "127.0.0.1",
            "--port",
            str(PORT),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{PORT}"
        for _ in range(200):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        asyncio.run(drive(f"{base}/bench/noop", headers, 300))  # warm-up: caches, pools, JIT-free paths

        def measure(url: str, method: str, count: int) -> tuple[float, float, int]:
            before = cpu_seconds(server.pid)
            wall, ok = asyncio.run(drive(url, headers, count, method))
            return cpu_seconds(server.pid) - before, wall, ok

        floor_cpu, _, _ = measure(f"{base}/v1/nothing-here", "GET", REQUESTS)
        cpu, wall, ok = measure(f"{base}/bench/noop", "POST", REQUESTS)
        print(
            json.dumps(
                {
                    "bench": "control_path",
                    "requests": REQUESTS,
                    "concurrency": CONCURRENCY,
                    "ok": ok,
                    "cpu_ms_per_request": round(cpu * 1000 / REQUESTS, 3),
                    "requests_per_s": round(REQUESTS / wall, 1),
                    "framework_floor_cpu_ms_per_request": round(floor_cpu * 1000 / REQUESTS, 3),
                    "control_path_cpu_ms_over_floor": round((cpu - floor_cpu) * 1000 / REQUESTS, 3),
                    "database": "sqlite",
                    "target_cpu_ms_per_request": 0.5,
                }
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
