"""A live server for the docs' code: the real app under uvicorn on a loopback port, in this test
process, so it uses the session's model registry (each engine loads once) and the test's database
backend. Its background workers run (batches, webhooks, videos), and webhooks may call 127.0.0.1,
where the cookbook's receiver listens."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from batchin.config import Settings
from tests.conftest import MakeUser


class _InProcessServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns SIGINT and SIGTERM, not the server under test


@dataclass(frozen=True)
class Live:
    base_url: str
    api_key: str


@pytest.fixture
def live_socket() -> Iterator[socket.socket]:
    # TCP proto explicitly: asyncio sets TCP_NODELAY only when it sees it (else Nagle adds ~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.fixture
def settings(tmp_path: Path, live_socket: socket.socket) -> Settings:
    """SQLite only: the docs' code exercises the API and SDKs, which are the same over either store;
    the store's own tests and the API suites run on both (this halves the slowest test module)."""
    port = live_socket.getsockname()[1]
    return Settings(
        data_dir=tmp_path / "data",
        database_url=None,
        redis_url=None,
        public_base_url=f"http://127.0.0.1:{port}",
        db_pool_size=20,
        # The batches recipe's receiver is on loopback; retries and polling shortened for a test.
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_retry_schedule_seconds=[0.5, 1.0, 2.0],
        webhook_poll_seconds=0.2,
        batch_poll_seconds=0.2,
    )


@pytest.fixture
async def live(
    app: Starlette, settings: Settings, live_socket: socket.socket, make_user: MakeUser
) -> AsyncIterator[Live]:
    config = uvicorn.Config(
        app, lifespan="on", ws="none", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = _InProcessServer(config)
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[live_socket]))
    while not server.started:  # readiness, not an assertion: serve() sets it once listening
        if serving.done():
            serving.result()
            pytest.fail("the server stopped before it started")
        await asyncio.sleep(0.01)
    user = await make_user(credit_cents=10_000)
    try:
        yield Live(settings.public_base_url, user.api_key)
    finally:
        server.should_exit = True
        await serving
