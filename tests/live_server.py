"""A real `batchin serve` subprocess on a free loopback port, with a user made by the CLI: what the
black-box tests (openai SDK, MCP over HTTP and stdio, the Inspector) drive."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

BATCHIN = Path(sys.executable).parent / "batchin"


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    api_key: str
    log: Path
    env: dict[str, str]  # the server's environment: a CLI run with it shares the store

    def client(self, api_key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=api_key or self.api_key, max_retries=0)

    def usage_logs(self) -> list[dict[str, Any]]:
        response = httpx2.get(
            f"{self.base_url}/v1/usage/logs?limit=50",
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=10,
        )
        response.raise_for_status()
        logs: list[dict[str, Any]] = response.json()
        return logs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"batchin serve exited with {server.returncode}:\n{log.read_text()}")
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"batchin serve did not become healthy:\n{log.read_text()}")


def create_user(env: dict[str, str], credit_cents: int = 1000, rate_limit_rpm: int | None = None) -> str:
    """A new user through the CLI; returns its API key."""
    created = subprocess.run(
        [
            *(str(BATCHIN), "users", "create", "--email", f"live-{uuid.uuid4().hex[:8]}@example.com"),
            *("--name", "Live", "--credit-cents", str(credit_cents)),
            *(("--rate-limit-rpm", str(rate_limit_rpm)) if rate_limit_rpm is not None else ()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key: str = json.loads(created.stdout)["api_key"]
    return key


def serve_command(port: int) -> list[str]:
    """`batchin serve` on loopback as one API process (a test that kills or counts the server's
    process needs the one that serves, not a supervisor over workers)."""
    return [
        str(BATCHIN),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--workers",
        "1",
    ]


@contextmanager
def live_server(data: Path, extra_env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env["BATCHIN_DATA_DIR"] = str(data)
    env.update(extra_env or {})
    port = free_port()
    log = data / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            serve_command(port),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        api_key = create_user(env)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server, log)
        yield LiveServer(url, api_key, log, env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
