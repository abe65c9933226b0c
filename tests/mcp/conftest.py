"""An MCP client wired to the test services, in memory (FastMCP's Client over the server object)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from fastmcp import Client

from batchin.mcp_server.runtime import McpRuntime
from batchin.mcp_server.server import build_mcp_server
from batchin.services import Services

McpClientFactory = Callable[[str | None], AbstractAsyncContextManager[Client[Any]]]


@pytest.fixture
def mcp_client(services: Services) -> McpClientFactory:
    """`async with mcp_client(api_key) as client`: a client acting with that key (as stdio does)."""

    @asynccontextmanager
    async def connect(api_key: str | None) -> AsyncIterator[Client[Any]]:
        server = build_mcp_server(McpRuntime(services=services, local_api_key=api_key))
        async with Client(server) as client:
            yield client

    return connect
