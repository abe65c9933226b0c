"""The FastMCP server: every capability as a tool, read-only views as resources (with argument
completion and subscriptions to jobs in progress), the caller's prompt registry as prompts, one
middleware that admits each call like an HTTP request. Used by both transports (http.py,
stdio.py)."""

from __future__ import annotations

from fastmcp import FastMCP
from fastmcp.server.auth import AuthProvider
from mcp_types import SubscribeRequestParams, SubscriptionsListenRequestParams, UnsubscribeRequestParams

from batchin import __version__
from batchin.mcp_server.completions import ArgumentCompletion
from batchin.mcp_server.middleware import CallerMiddleware
from batchin.mcp_server.runtime import McpRuntime
from batchin.mcp_server.subscriptions import ResourceSubscriptions
from batchin.resources import register_resources
from batchin.resources.registry_prompts import RegistryPrompts
from batchin.tools import ALL_TOOLS, register_tools
from batchin.tools.registry import scopes_of

__all__ = ["INSTRUCTIONS", "build_mcp_server"]

INSTRUCTIONS = """\
BatchIn serves text, embedding, speech, transcription, image and video models, batches and signed
audit records. Call list_models first and pass a model id to the other tools. Every call is billed
to your API key and counts against its requests-per-minute limit. Errors come back as
{"error": {"code", "message", "param", "status"}}: payment_required (402) means add credit;
rate_limited (429) carries retry_after seconds; not_found (404) names what is missing. Results
are readable text plus the full result as structured content, and carry a receipt in _meta (run id,
traceparent, audit record id) that get_trace and verify_audit_record accept. Subscribe to
batchin://batches/{id} or batchin://videos/{id} to follow a job; your registered prompt versions
are served as MCP prompts."""


def build_mcp_server(runtime: McpRuntime, *, auth: AuthProvider | None = None) -> FastMCP:
    mcp = FastMCP(
        "BatchIn",
        instructions=INSTRUCTIONS,
        version=__version__,
        website_url="https://batchin.tech",
        auth=auth,
        middleware=[CallerMiddleware(runtime, scopes_of(ALL_TOOLS))],
        mask_error_details=True,  # an unexpected exception reaches the client as a bare "Error calling tool"
        on_duplicate="error",
        providers=[RegistryPrompts()],
    )
    register_tools(mcp)
    register_resources(mcp)
    mcp.add_completion_handler(ArgumentCompletion(runtime))
    _serve_subscriptions(mcp, ResourceSubscriptions(runtime, runtime.watch_interval_seconds))
    return mcp


def _serve_subscriptions(mcp: FastMCP, subscriptions: ResourceSubscriptions) -> None:
    """FastMCP has no resource subscriptions of its own: the handlers go on its low-level server
    (which then declares `resources.subscribe` in each era's capabilities)."""
    low_level = mcp._mcp_server
    low_level.add_request_handler(
        "subscriptions/listen", SubscriptionsListenRequestParams, subscriptions.listen
    )
    low_level.add_request_handler("resources/subscribe", SubscribeRequestParams, subscriptions.subscribe)
    low_level.add_request_handler(
        "resources/unsubscribe", UnsubscribeRequestParams, subscriptions.unsubscribe
    )
