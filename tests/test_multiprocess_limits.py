"""Two real `batchin serve` processes over one SQLite store and one Redis: a key's RPM limit is one
budget across both, and a key revoked through one is refused by the other on its next request."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

from tests.conftest import REDIS_URL
from tests.live_server import serve_command

pytestmark = [
    pytest.mark.slow,
    pytest.mark.redis,
    pytest.mark.skipif(not REDIS_URL, reason="needs BATCHIN_TEST_REDIS_URL (a real redis-server)"),
]

BATCHIN = str(Path(sys.executable).with_name("batchin"))
# Two servers load the embedded model at once beside the suite's other worker: 30 s was seen to
# run out on a loaded 2-CPU machine (the same start takes ~5 s idle).
_READY_TIMEOUT_SECONDS = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env.update(
        BATCHIN_DATA_DIR=str(tmp_path / "data"),
        BATCHIN_REDIS_URL=REDIS_URL or "",
        # Long enough that only the shared Redis marker, not a cache expiry, can explain process B
        # refusing a key that process A revoked.
        BATCHIN_AUTH_CACHE_SECONDS="300",
    )
    return env


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([BATCHIN, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def servers(server_env: dict[str, str], tmp_path: Path) -> Iterator[list[str]]:
    cli(server_env, "db", "upgrade")  # migrate once, before two processes could race to do it
    processes: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"server-{name}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    serve_command(port),
                    env=server_env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            processes.append((process, f"http://127.0.0.1:{port}", log))
        for process, url, log in processes:
            wait_until_ready(process, url, log)
        yield [url for _, url, _ in processes]
    finally:
        for process, _, _ in processes:
            process.terminate()
        for process, _, _ in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_until_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    with httpx2.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"server {url} exited with {process.returncode}:\n{log.read_text()}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.1)
    pytest.fail(f"server {url} not ready after {_READY_TIMEOUT_SECONDS}s:\n{log.read_text()}")


@pytest.fixture
def redis_cleanup() -> Iterator[list[str]]:
    """Key ids whose Redis state (buckets, revocation markers) the test leaves behind, removed after."""
    key_ids: list[str] = []
    yield key_ids
    client = redis.Redis.from_url(REDIS_URL or "")
    try:
        for key_id in key_ids:
            stale = list(client.scan_iter(match=f"batchin:{{{key_id}}}:*"))
            if stale:
                client.delete(*stale)
    finally:
        client.close()


def test_rpm_limit_is_one_budget_across_processes_and_revocation_reaches_both(
    servers: list[str], server_env: dict[str, str], redis_cleanup: list[str]
) -> None:
    a, b = servers
    user = cli(
        server_env, "users", "create", "--email", "mp@example.com", "--name", "MP", "--credit-cents", "100"
    )
    limited = cli(server_env, "keys", "create", "--user", user["id"], "--rpm", "10")
    redis_cleanup.extend([user["key_id"], limited["id"]])
    auth = {"Authorization": f"Bearer {limited['key']}"}

    with httpx2.Client(timeout=10.0) as client:
        responses = [client.get(f"{(a, b)[i % 2]}/v1/users/me", headers=auth) for i in range(20)]

        assert [r.status_code for r in responses] == [200] * 10 + [429] * 10
        for refused in responses[10:]:
            assert refused.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(refused.headers["Retry-After"]) <= 6
        revoked = client.delete(
            f"{a}/v1/keys/{limited['id']}", headers={"Authorization": f"Bearer {user['api_key']}"}
        )
        assert revoked.status_code == 204, revoked.text
        after = client.get(f"{b}/v1/users/me", headers=auth)

    assert after.status_code == 401, after.text
    assert after.json()["error"]["code"] == "unauthorized"
