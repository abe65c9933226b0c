"""What an MCP server needs from its host process: the services (built in the app lifespan, so
set after the server is assembled) and, for stdio and in-memory clients, whose key to act with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from batchin.errors import ServiceUnavailable

if TYPE_CHECKING:
    from batchin.services import Services

__all__ = ["McpRuntime"]


@dataclass(slots=True)
class McpRuntime:
    services: Services | None = None
    # stdio has no Authorization header: the key comes from BATCHIN_API_KEY. None over HTTP, where
    # a request without a bearer key never reaches a tool (401).
    local_api_key: str | None = None

    def require_services(self) -> Services:
        if self.services is None:
            raise ServiceUnavailable("The server is still starting; retry in a moment.")
        return self.services
