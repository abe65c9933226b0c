"""Who is calling, for every tool call and resource read, and how refusals are reported.

Each call is admitted exactly like an HTTP request (authenticate, count one request against the
key's RPM limit) and gets its own CallContext (request id, trace continued from an HTTP
`traceparent`, prompt version header, and the entry region resolved as for HTTP from the key, the
peer and X-BatchIn-Region: core/regions.py), so tool calls are limited, billed, logged and
traced like their HTTP twins. A tool call then needs the key scope the tool states (the scope of
its HTTP twin; 403 `permission_denied` otherwise), checked before its arguments are read. The run
receipt (run id, traceparent, audit record headers) is
returned in the result's `_meta`.

prompts/get is admitted like a resource read (and needs the prompt registry's scope); prompts/list
only identifies the caller, like tools/list, without counting a request against the RPM limit.
Completion and subscription handlers identify their caller with `identify_caller`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from fastmcp.exceptions import PromptError, ResourceError
from fastmcp.exceptions import ValidationError as ArgumentsInvalid
from fastmcp.prompts.base import Prompt, PromptResult
from fastmcp.server.dependencies import get_access_token, get_http_headers, get_http_request
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import ToolResult
from mcp import types as mt

from batchin.core.context import CallContext
from batchin.core.permissions import require_scope
from batchin.core.trace_context import continue_trace
from batchin.errors import BatchInError, Unauthorized
from batchin.mcp_server import caller
from batchin.mcp_server.errors import CoreToolError, argument_error, error_payload, error_result
from batchin.mcp_server.runtime import McpRuntime
from batchin.protocol.accounts import Scope
from batchin.resources.registry_prompts import PROMPT_SCOPE

__all__ = ["CallerMiddleware", "identify_caller"]

_NO_KEY = "Invalid or missing API key. Set BATCHIN_API_KEY (stdio) or send Authorization: Bearer <API_KEY>."
_RECEIPT_META_KEY = "batchin.tech/receipt"
_CALL_HEADERS = {"traceparent", "x-batchin-region", "x-batchin-prompt-version"}


class CallerMiddleware(Middleware):
    def __init__(self, runtime: McpRuntime, tool_scopes: dict[str, Scope | None]) -> None:
        self._runtime = runtime
        self._tool_scopes = tool_scopes

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        try:
            call = await identify_caller(self._runtime, admit=True)
            scope = self._tool_scopes.get(context.message.name)
            if scope is not None:
                require_scope(call.ctx.principal, scope)
        except BatchInError as exc:
            return error_result(error_payload(exc))
        token = caller.bind(call)
        try:
            result = await call_next(context)
        except CoreToolError as exc:
            return error_result(exc.payload)
        except ArgumentsInvalid as exc:
            return error_result(argument_error(_first_line(str(exc))))
        finally:
            caller.unbind(token)
        receipt = {**call.ctx.response_headers(), "X-Request-Id": call.ctx.request_id, **call.receipt}
        result.meta = {**(result.meta or {}), _RECEIPT_META_KEY: receipt}
        return result

    async def on_read_resource(
        self,
        context: MiddlewareContext[mt.ReadResourceRequestParams],
        call_next: CallNext[mt.ReadResourceRequestParams, Any],
    ) -> Any:
        try:
            call = await identify_caller(self._runtime, admit=True)
        except BatchInError as exc:
            raise ResourceError(str(error_payload(exc)["error"]["message"])) from None
        token = caller.bind(call)
        try:
            return await call_next(context)
        finally:
            caller.unbind(token)

    async def on_list_prompts(
        self,
        context: MiddlewareContext[mt.ListPromptsRequest],
        call_next: CallNext[mt.ListPromptsRequest, Sequence[Prompt]],
    ) -> Sequence[Prompt]:
        try:
            call = await identify_caller(self._runtime, admit=False)
        except BatchInError:
            return []  # no valid key (stdio without BATCHIN_API_KEY): no registry to list
        token = caller.bind(call)
        try:
            return await call_next(context)
        finally:
            caller.unbind(token)

    async def on_get_prompt(
        self,
        context: MiddlewareContext[mt.GetPromptRequestParams],
        call_next: CallNext[mt.GetPromptRequestParams, PromptResult],
    ) -> PromptResult:
        try:
            call = await identify_caller(self._runtime, admit=True)
            require_scope(call.ctx.principal, PROMPT_SCOPE)
        except BatchInError as exc:
            raise PromptError(f"{exc.code}: {exc.message}") from None
        token = caller.bind(call)
        try:
            return await call_next(context)
        finally:
            caller.unbind(token)


async def identify_caller(runtime: McpRuntime, *, admit: bool) -> caller.McpCall:
    """The caller of the MCP request being served, from its bearer key (HTTP) or the local key
    (stdio, in memory). With `admit`, the request counts against the key's RPM limit (429 past it),
    as an HTTP request does; without, the key is only authenticated (lists, completions)."""
    views = runtime.views()
    access = get_access_token()
    secret = access.token if access is not None else runtime.local_api_key
    if not secret:
        raise Unauthorized(_NO_KEY)
    auth = views.services.auth
    principal, rate = await auth.admit(secret) if admit else (await auth.authenticate(secret), None)
    headers = get_http_headers(include=_CALL_HEADERS)  # {} over stdio and in memory
    prompt_version = (headers.get("x-batchin-prompt-version") or "").strip()[:200] or "default"
    region = views.services.regions.resolve(principal, headers.get("x-batchin-region"), peer=_http_peer())
    ctx = CallContext(
        principal=principal,
        request_id=_http_request_id() or f"req_{uuid.uuid4().hex}",
        region=region,
        rate_limit=rate,
        trace=continue_trace(headers.get("traceparent")),
        prompt_version=prompt_version,
    )
    return caller.McpCall(views=views, ctx=ctx)


def _http_request_id() -> str | None:
    """The id the HTTP middleware gave this request (and returned as X-Request-Id), if over HTTP."""
    try:
        request = get_http_request()
    except RuntimeError:
        return None
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def _http_peer() -> str | None:
    """The connection's peer address, over HTTP; None over stdio and in memory (no proxy there)."""
    try:
        request = get_http_request()
    except RuntimeError:
        return None
    return request.client.host if request.client else None


def _first_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return "; ".join(lines[:3]) if lines else "Invalid tool arguments."
