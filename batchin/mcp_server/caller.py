"""The caller of the MCP request being served: services, call context and run receipt.

Set by the middleware for the duration of one tool call or resource read (a context variable, so
concurrent calls on one server never see each other's caller); tools read it with `current()`.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from batchin.core.context import CallContext

if TYPE_CHECKING:
    from batchin.services import Services

__all__ = ["McpCall", "current"]


@dataclass(slots=True)
class McpCall:
    services: Services
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


def bind(call: McpCall) -> object:
    return _current.set(call)


def unbind(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
