"""The real ASGI app served by uvicorn on a loopback port inside the test's own event loop: a live
server that real HTTP clients connect to (and hang up on), over the test's services, so a test can
watch the engines, the admission pools and the ledger while a call is under way."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def served_on_loopback(app: ASGIApp) -> AsyncIterator[str]:
    """Serve `app` (its lifespan off: the test owns the services) and yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, ws="none", lifespan="off", access_log=False, log_config=None, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if serving.done():
                serving.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving
        sock.close()
