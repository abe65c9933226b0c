"""How a tool function becomes an MCP tool: core refusals become CoreToolError (mapped to the
error envelope by the caller middleware), and read-only / idempotent hints are declared once. Each
tool states the key scope it needs; the caller middleware checks it (`scopes_of`) before the
arguments are even read, as HTTP checks a route's scope before its body.

Results an agent can read (the MCP specification's structured tool output): a tool returns its
HTTP twin's result model, which FastMCP turns into the declared output schema; the tool's `summary`
renders the useful text of that result (the assistant's message, the transcript, one line per
batch) as the text content, and the whole result goes in `structuredContent`. A list result is
wrapped as `{"result": [...]}`, as FastMCP declares it (structured content must be an object).
Tools that answer with images or audio build their own ToolResult and declare `output_model`.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from mcp.types import TextContent, ToolAnnotations
from pydantic import BaseModel, TypeAdapter

from batchin.errors import BatchInError
from batchin.mcp_server.errors import CoreToolError
from batchin.protocol.accounts import Scope

__all__ = ["ToolSpec", "readable_result", "register", "scopes_of"]

ToolFunction = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    function: ToolFunction
    title: str
    read_only: bool = False
    # Tools that return mixed MCP content (images, audio) declare their structured shape here.
    output_model: type[BaseModel] | None = None
    idempotent: bool = False
    destructive: bool = False
    # The key scope the tool needs (None: any valid key, as for public HTTP reads); always stated.
    scope: Scope | None = field(kw_only=True)
    # The result's readable text; required unless the function builds its own ToolResult.
    summary: Callable[[Any], str] | None = field(default=None, kw_only=True)


def scopes_of(specs: list[ToolSpec]) -> dict[str, Scope | None]:
    """Each tool's name (its function's, as FastMCP names it) and the scope it needs."""
    return {spec.function.__name__: spec.scope for spec in specs}


def readable_result(text: str, structured: Any) -> ToolResult:
    """`text` as the content an agent reads, `structured` (JSON-ready) as structuredContent."""
    wrapped = not isinstance(structured, dict)
    return ToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"result": structured} if wrapped else structured,
        meta={"fastmcp": {"wrap_result": True}} if wrapped else None,  # lets FastMCP clients unwrap
    )


def _renderer(spec: ToolSpec) -> Callable[[Any], ToolResult] | None:
    """How the tool's return value becomes its result; None when the function builds it."""
    returns = typing.get_type_hints(spec.function)["return"]
    if returns is ToolResult:
        if spec.output_model is None:
            raise TypeError(f"tool {spec.function.__name__} returns a ToolResult: declare output_model")
        return None
    summary = spec.summary
    if summary is None:
        raise TypeError(f"tool {spec.function.__name__} needs a summary: the text an agent reads")
    adapter: TypeAdapter[Any] = TypeAdapter(returns)
    return lambda value: readable_result(summary(value), adapter.dump_python(value, mode="json"))


def _tool(spec: ToolSpec) -> ToolFunction:
    function, render = spec.function, _renderer(spec)

    @functools.wraps(function)
    async def tool(*args: Any, **kwargs: Any) -> Any:
        try:
            value = await function(*args, **kwargs)
        except BatchInError as exc:
            raise CoreToolError(exc) from None
        return value if render is None else render(value)

    return tool


def register(mcp: FastMCP, specs: list[ToolSpec]) -> None:
    for spec in specs:
        options: dict[str, Any] = {}
        if spec.output_model is not None:
            options["output_schema"] = spec.output_model.model_json_schema()
        mcp.tool(
            _tool(spec),
            title=spec.title,
            annotations=ToolAnnotations(
                read_only_hint=spec.read_only,
                idempotent_hint=spec.idempotent or spec.read_only,
                destructive_hint=spec.destructive,
                open_world_hint=False,
            ),
            **options,
        )
