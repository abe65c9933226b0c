"""A fake OpenAI-compatible upstream that calls tools, for the remote runner's pass-through tests.

Given `tools` (and a tool_choice other than `none`), it answers as OpenAI does: a call to the
function tool_choice names, else the first one, with `arguments`; streamed as a first piece with
id, type and name and `arguments: ""`, then the arguments in two fragments, `finish_reason:
"tool_calls"`, the usage and `[DONE]`; whole as `message.tool_calls` with `content: null`. Without
tools it answers "plain". `bodies` keeps every request body it received.

    upstream = start_tool_upstream(arguments='{"city": "Paris"}')
    ... RemoteConfig(base_urls=(upstream.url,), ...) ...
    upstream.bodies[-1]["tools"]
    upstream.stop()
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.fake_upstream import FakeUpstream, FakeUpstreamConfig

__all__ = ["ToolUpstream", "start_tool_upstream"]


class ToolUpstream(FakeUpstream):
    bodies: list[dict[str, Any]]


def _chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> bytes:
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    body = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "up",
    }
    return b"data: " + orjson.dumps({**body, "choices": choices, "usage": usage}) + b"\n\n"


def _app(arguments: str, bodies: list[dict[str, Any]]) -> Starlette:
    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        bodies.append(body)
        choice = body.get("tool_choice")
        calling = bool(body.get("tools")) and choice != "none"
        name = (
            choice["function"]["name"]
            if isinstance(choice, dict)
            else body["tools"][0]["function"]["name"]
            if calling
            else ""
        )
        usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
        if not body.get("stream"):
            if calling:
                call = {
                    "id": "call_up_0",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
                message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
            else:
                message = {"role": "assistant", "content": "plain"}
            choices = [{"index": 0, "message": message, "finish_reason": "tool_calls" if calling else "stop"}]
            whole = {"id": "chatcmpl-up", "object": "chat.completion", "choices": choices, "usage": usage}
            return Response(orjson.dumps(whole), media_type="application/json")
        events = [_chunk({"role": "assistant", "content": None})]
        if calling:
            first = {
                "index": 0,
                "id": "call_up_0",
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            events.append(_chunk({"tool_calls": [first]}))
            half = len(arguments) // 2
            for fragment in (arguments[:half], arguments[half:]):
                events.append(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}))
            events.append(_chunk({}, "tool_calls"))
        else:
            events += [_chunk({"content": "plain"}), _chunk({}, "stop")]
        events += [_chunk(None, usage=usage), b"data: [DONE]\n\n"]
        return Response(b"".join(events), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return Response(orjson.dumps({"object": "list", "data": []}), media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


def start_tool_upstream(arguments: str = "{}") -> ToolUpstream:
    bodies: list[dict[str, Any]] = []
    upstream = ToolUpstream(FakeUpstreamConfig(), app=_app(arguments, bodies))
    upstream.bodies = bodies
    return upstream
