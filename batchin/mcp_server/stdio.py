"""`batchin mcp`: MCP over stdio for desktop clients, acting with the key in BATCHIN_API_KEY.

stdout belongs to the protocol. Native engines (llama.cpp, CTranslate2) may print from C code, so
file descriptor 1 is pointed at stderr and the protocol writes to a private duplicate of the
original stdout; logging goes to stderr.
"""

from __future__ import annotations

import io
import logging
import os
import sys

from batchin.app import background_work, build_services
from batchin.config import Settings
from batchin.mcp_server.runtime import McpRuntime
from batchin.mcp_server.server import build_mcp_server

__all__ = ["serve_stdio"]


def _claim_stdout_for_protocol() -> None:
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(
        os.fdopen(protocol_fd, "wb", buffering=0), encoding="utf-8", write_through=True
    )


async def serve_stdio(settings: Settings, api_key: str | None) -> None:
    _claim_stdout_for_protocol()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    runtime = McpRuntime(local_api_key=api_key)
    services = await build_services(settings)
    runtime.services = services
    try:
        async with background_work(services):
            await build_mcp_server(runtime).run_async(transport="stdio", show_banner=False)
    finally:
        await services.close()
