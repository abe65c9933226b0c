"""How a tool function becomes an MCP tool: core refusals become CoreToolError (mapped to the
error envelope by the caller middleware), and read-only / idempotent hints are declared once. Each
tool states the key scope it needs; the caller middleware checks it (`scopes_of`) before the
arguments are even read, as HTTP checks a route's scope before its body."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastmcp import FastMCP
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from batchin.errors import BatchInError
from batchin.mcp_server.errors import CoreToolError
from batchin.protocol.accounts import Scope

__all__ = ["ToolSpec", "register", "scopes_of"]

ToolFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    function: ToolFunction
    title: str
    read_only: bool = False
    # Tools that return mixed MCP content (images, audio) declare their structured shape here.
    output_model: type[BaseModel] | None = None
    idempotent: bool = False
    # The key scope the tool needs (None: any valid key, as for public HTTP reads); always stated.
    scope: Scope | None = field(kw_only=True)


def scopes_of(specs: list[ToolSpec]) -> dict[str, Scope | None]:
    """Each tool's name (its function's, as FastMCP names it) and the scope it needs."""
    return {spec.function.__name__: spec.scope for spec in specs}


def _mapping_core_errors(function: ToolFunction) -> ToolFunction:
    @functools.wraps(function)
    async def tool(*args: Any, **kwargs: Any) -> Any:
        try:
            return await function(*args, **kwargs)
        except BatchInError as exc:
            raise CoreToolError(exc) from None

    return tool


def register(mcp: FastMCP, specs: list[ToolSpec]) -> None:
    for spec in specs:
        options: dict[str, Any] = {}
        if spec.output_model is not None:
            options["output_schema"] = spec.output_model.model_json_schema()
        mcp.tool(
            _mapping_core_errors(spec.function),
            title=spec.title,
            annotations=ToolAnnotations(
                read_only_hint=spec.read_only,
                idempotent_hint=spec.idempotent or spec.read_only,
                destructive_hint=False,
                open_world_hint=False,
            ),
            **options,
        )
