"""Streamable HTTP at /v1/mcp on the API's own port, authenticated with the same Bearer keys.

Served by a plain Route at /v1/mcp whose endpoint is the MCP ASGI app (a `Mount` would either
shadow the other /v1 paths or answer /v1/mcp with a 307 to /v1/mcp/). Stateless: any replica can
answer any request, so several `batchin serve` processes behind one address need no session
affinity. Host and Origin headers are checked (the MCP spec's DNS-rebinding protection, off in
FastMCP by default): loopback names, the host of `public_base_url` and `mcp_allowed_hosts` are
accepted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from fastmcp.server.http import StarletteWithLifespan
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batchin.config import Settings
from batchin.errors import Unauthorized
from batchin.mcp_server.auth import ApiKeyVerifier
from batchin.mcp_server.runtime import McpRuntime
from batchin.mcp_server.server import build_mcp_server

__all__ = ["MCP_PATH", "UnauthorizedAsEnvelope", "build_mcp_http_app"]

MCP_PATH = "/v1/mcp"


def allowed_hosts(settings: Settings) -> list[str]:
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *settings.mcp_allowed_hosts]
    public = urlsplit(settings.public_base_url)
    if public.hostname:
        hosts += [public.hostname, f"{public.hostname}:*"]
    return hosts


def build_mcp_http_app(runtime: McpRuntime, settings: Settings) -> StarletteWithLifespan:
    mcp = build_mcp_server(runtime, auth=ApiKeyVerifier(runtime))
    return mcp.http_app(
        path=MCP_PATH,
        stateless_http=True,
        host_origin_protection=True,
        allowed_hosts=allowed_hosts(settings),
        allowed_origins=settings.mcp_allowed_origins,
    )


class UnauthorizedAsEnvelope:
    """FastMCP answers a missing or unknown key with an empty 401; send the API's error envelope
    instead (keeping its `WWW-Authenticate: Bearer`), so both surfaces refuse alike."""

    _BODY = orjson.dumps(
        Unauthorized("Invalid or missing API key. Send Authorization: Bearer <API_KEY>.").body()
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacing = False

        async def send_envelope(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start" and message["status"] == 401:
                replacing = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _BODY_HEADERS]
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self._BODY)).encode()),
                ]
                await send({**message, "headers": headers})
            elif replacing and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": self._BODY})
            else:
                await send(message)

        await self.app(scope, receive, send_envelope)


_BODY_HEADERS = (b"content-type", b"content-length")
