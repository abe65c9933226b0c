"""X-Forwarded-For / X-Forwarded-Proto from trusted proxies, applied by the app itself with
uvicorn's own code (its ProxyHeadersMiddleware), when `batchin serve` turns uvicorn's off.

Why: uvicorn wraps the app in that middleware unless told not to, and its frame stays on the
request task's stack for the whole request, so each time the request resumes (its body, the key
check, admission, the engine, the receipt: four to five times a chat call) the resumption passes
through it. Here the same middleware runs over an app that does nothing, at the start of each
request: it rewrites `scope["client"]` and `scope["scheme"]` in place, exactly as it would have,
then returns, leaving nothing on the stack.

The trusted addresses are the ones uvicorn would have used: `FORWARDED_ALLOW_IPS`, else uvicorn's
default (uvicorn.Config, at the pinned version). Applying it twice (an app served by a server that
also applies it) changes nothing: a client already taken from X-Forwarded-For is the same address
again when read from it a second time.
"""

from __future__ import annotations

import os
from typing import Any, cast

from starlette.types import Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

__all__ = ["ForwardedHeaders"]

# uvicorn.Config's trusted proxies when neither its option nor FORWARDED_ALLOW_IPS says otherwise.
_UVICORN_DEFAULT = "127.0.0.1,::1"


async def _rewritten(scope: Scope, receive: Receive, send: Send) -> None:
    """The middleware's inner app: by the time it is called the scope is rewritten; nothing to do."""


class ForwardedHeaders:
    """uvicorn's proxy-header rewrite of one request's scope (see the module docstring)."""

    __slots__ = ("_middleware",)

    def __init__(self, trusted_hosts: str | list[str]) -> None:
        # Any: uvicorn types its ASGI callables with its own TypedDicts, Starlette with mappings.
        self._middleware: Any = ProxyHeadersMiddleware(cast(Any, _rewritten), trusted_hosts)

    @classmethod
    def as_uvicorn_would(cls) -> ForwardedHeaders:
        return cls(os.environ.get("FORWARDED_ALLOW_IPS", _UVICORN_DEFAULT))

    async def apply(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite `scope` as the middleware would (it never suspends: its app returns at once)."""
        await self._middleware(scope, receive, send)
