"""The caller of the MCP request being served: call context, run receipt and the services as the
tool's group declares them.

Set by the middleware for the duration of one tool call or resource read (a context variable, so
concurrent calls on one server never see each other's caller); tools read it with `current()`.
A tool names the services it uses with a parameter `deps: XxxDeps = uses(XxxDeps)`: FastMCP fills
it on each call and leaves it out of the tool's schema.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TypeVar

from fastmcp.dependencies import Depends

from batchin.core.context import CallContext
from batchin.mcp_server.runtime import ServiceViews, ToolDeps

__all__ = ["McpCall", "current", "uses"]

D = TypeVar("D", bound=ToolDeps)


@dataclass(slots=True)
class McpCall:
    views: ServiceViews
    ctx: CallContext
    receipt: dict[str, str] = field(default_factory=dict)  # the headers an HTTP response would carry

    def add_receipt(self, headers: dict[str, str]) -> None:
        self.receipt.update(headers)


_current: ContextVar[McpCall | None] = ContextVar("batchin_mcp_call", default=None)


def current() -> McpCall:
    call = _current.get()
    if call is None:  # a tool invoked outside the middleware: a wiring bug, never a user error
        raise RuntimeError("MCP tool called outside BatchIn's caller middleware")
    return call


def uses(kind: type[D]) -> D:
    """A tool or resource parameter's default: `kind` built from the caller's services."""

    def resolve() -> D:
        return current().views.get(kind)

    return Depends(resolve)


def bind(call: McpCall) -> object:
    return _current.set(call)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
