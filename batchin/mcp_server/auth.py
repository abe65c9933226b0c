"""Bearer API keys on the Streamable HTTP transport: the same keys, hashes and revocation as the
HTTP API. A missing or unknown key is refused by FastMCP with 401 before any MCP message is read;
the per-call RPM limit is counted per tool call by the caller middleware, not per HTTP request
(an MCP session sends several protocol requests for one tool call)."""

from __future__ import annotations

from fastmcp.server.auth import AccessToken, TokenVerifier

from batchin.errors import BatchInError
from batchin.mcp_server.runtime import McpRuntime

__all__ = ["ApiKeyVerifier"]


class ApiKeyVerifier(TokenVerifier):
    def __init__(self, runtime: McpRuntime) -> None:
        super().__init__()
        self._runtime = runtime

    async def verify_token(self, token: str) -> AccessToken | None:
        services = self._runtime.services
        if services is None:
            return None
        try:
            principal = await services.auth.authenticate(token)
        except BatchInError:
            return None
        return AccessToken(
            token=token,
            client_id=principal.key_id,
            scopes=[],
            claims={"user_id": principal.user_id, "key_prefix": principal.key_prefix},
        )
