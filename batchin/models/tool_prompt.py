"""Showing tools to a local model, in one format: Hermes-style tool calls, the format Qwen2.5 and the
Hermes models were trained on. The model answers a call with

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

(several blocks for parallel calls), and reads a result as `<tool_response>…</tool_response>`.

A chat template that shows tools in this format itself (its source writes `<tool_call>` and it
renders the `tools` it is given, as Qwen2.5's does) is used as it is. Any other template (SmolLM2's
has no tools) gets the same format written by us: the tool list and the call instructions at the end
of the system prompt, earlier calls as `<tool_call>` blocks in the assistant's turn, and tool results
as `<tool_response>` blocks in a user turn. Either way the reply is read by tool_calls.py and kept
to the declared functions by tool_grammar.py.
"""

from __future__ import annotations

import json
from typing import Any

from batchin.models.base import ChatMessage, ToolSet
from batchin.models.text_stream import ChatTemplate

__all__ = ["CALL_CLOSE", "CALL_OPEN", "render_chat", "shows_tools", "tool_objects"]

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_PROBE = "batchin_probe_tool"

_INSTRUCTIONS = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{tools}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def tool_objects(tools: ToolSet) -> list[dict[str, Any]]:
    """The tools as OpenAI's objects (what templates and upstreams expect)."""
    objects = []
    for function in tools.functions:
        spec: dict[str, Any] = {"name": function.name}
        if function.description is not None:
            spec["description"] = function.description
        spec["parameters"] = json.loads(function.parameters)
        if function.strict is not None:
            spec["strict"] = function.strict
        objects.append({"type": "function", "function": spec})
    return objects


def shows_tools(template: ChatTemplate) -> bool:
    """Whether the template shows tools in the Hermes format itself."""
    if CALL_OPEN not in template.source:
        return False
    probe = [{"type": "function", "function": {"name": _PROBE, "parameters": {"type": "object"}}}]
    try:
        rendered = template.render((ChatMessage("user", "hello"),), tools=probe)
    except Exception:  # any failure on the probe means "no tools": a model load must not fail on it
        return False
    return _PROBE in rendered


def render_chat(
    template: ChatTemplate, messages: tuple[ChatMessage, ...], tools: ToolSet | None, *, native: bool
) -> str:
    """The prompt text. Tools are shown unless there are none or `tool_choice` is `none`."""
    shown = tool_objects(tools) if tools is not None and tools.choice != "none" else None
    if native:
        return template.render(messages, tools=shown)
    has_history = any(m.tool_calls or m.role == "tool" for m in messages)
    if shown is None and not has_history:
        return template.render(messages)
    return template.render(_written_out(messages, shown))


def _written_out(
    messages: tuple[ChatMessage, ...], shown: list[dict[str, Any]] | None
) -> tuple[ChatMessage, ...]:
    """The conversation with tools, calls and results written as text, for a template without tools."""
    out: list[ChatMessage] = []
    for message in messages:
        if message.role == "tool":
            block = f"<tool_response>\n{message.content}\n</tool_response>"
            if out and out[-1].role == "user" and out[-1].content.startswith("<tool_response>"):
                out[-1] = ChatMessage("user", f"{out[-1].content}\n{block}")  # results of one turn together
            else:
                out.append(ChatMessage("user", block))
        elif message.tool_calls:
            calls = "\n".join(_call_block(c.name, c.arguments) for c in message.tool_calls)
            out.append(ChatMessage("assistant", f"{message.content}\n{calls}" if message.content else calls))
        else:
            out.append(ChatMessage(message.role, message.content))
    if shown is not None:
        listing = _INSTRUCTIONS.format(
            tools="\n".join(json.dumps(tool, ensure_ascii=False) for tool in shown)
        )
        if out and out[0].role == "system":
            out[0] = ChatMessage("system", f"{out[0].content}\n\n{listing}")
        else:
            out.insert(0, ChatMessage("system", listing))
    return tuple(out)


def _call_block(name: str, arguments: str) -> str:
    try:
        written = json.dumps(json.loads(arguments), ensure_ascii=False)
    except ValueError:
        written = json.dumps(arguments, ensure_ascii=False)  # not JSON: kept, as a string
    return f'{CALL_OPEN}\n{{"name": {json.dumps(name)}, "arguments": {written}}}\n{CALL_CLOSE}'
