"""Showing tools to a model (models/tool_prompt.py) and the grammar of its calls
(models/tool_grammar.py): a template with Hermes tools is used as it is, any other gets the format
written into the conversation; the grammar allows exactly the declared functions."""

from __future__ import annotations

import json

import pytest

from batchin.errors import InvalidRequest
from batchin.models.base import ChatMessage, ToolCall, ToolFunction, ToolSet
from batchin.models.text_stream import ChatTemplate
from batchin.models.tool_grammar import tool_call_grammar
from batchin.models.tool_prompt import render_chat, shows_tools

# SmolLM2-135M-Instruct's own template (from its GGUF): ChatML, no tools.
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# The shape of Qwen2.5's: tools listed with `tojson`, calls written with `arguments | tojson`.
HERMES = (
    "{% if tools %}<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>"
    "<tool_call></tool_call>\n{% endif %}"
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<tool_call>{{ c.function.name }} {{ c.function.arguments | tojson }}"
    "</tool_call>{% endfor %}{% if m.tool_call_id %}({{ m.tool_call_id }}){% endif %}\n{% endfor %}"
)
WEATHER = ToolFunction(
    "get_weather",
    "Weather <now> & later",
    json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
)
TIME = ToolFunction("get_time")
HISTORY = (
    ChatMessage("user", "Weather in Paris?"),
    ChatMessage("assistant", "", tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),)),
    ChatMessage("tool", "Sunny", tool_call_id="call_1"),
    ChatMessage("tool", "22 C", tool_call_id="call_1"),
)


def template(source: str) -> ChatTemplate:
    return ChatTemplate(source, bos_token="", eos_token="")


def test_only_a_template_that_shows_hermes_tools_is_used_for_them() -> None:
    assert shows_tools(template(HERMES))
    assert not shows_tools(template(CHATML))
    assert not shows_tools(template("<tool_call> is mentioned but tools are never shown"))


def test_a_hermes_template_gets_the_tools_and_the_calls_as_objects() -> None:
    text = render_chat(template(HERMES), HISTORY, ToolSet((WEATHER,)), native=True)
    tool = json.loads(text.split("<tools>")[1].split("</tools>")[0])
    assert tool["function"]["name"] == "get_weather"
    assert tool["function"]["description"] == "Weather <now> & later"  # not HTML-escaped, as transformers
    assert '<tool_call>get_weather {"city": "Paris"}</tool_call>' in text
    assert "[tool]Sunny(call_1)" in text


def test_tool_choice_none_shows_no_tools_but_keeps_the_history() -> None:
    text = render_chat(template(HERMES), HISTORY, ToolSet((WEATHER,), choice="none"), native=True)
    assert "<tools>" not in text
    assert "<tool_call>get_weather" in text


def test_a_template_without_tools_gets_the_format_written_into_the_conversation() -> None:
    text = render_chat(template(CHATML), HISTORY, ToolSet((WEATHER, TIME)), native=False)
    system = text.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\n# Tools")
    listed = system.split("<tools>\n")[1].split("\n</tools>")[0].splitlines()
    assert [json.loads(line)["function"]["name"] for line in listed] == ["get_weather", "get_time"]
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in system
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>"
    ) in text
    # The results of one turn go back together, in one user turn.
    assert (
        "<|im_start|>user\n<tool_response>\nSunny\n</tool_response>\n<tool_response>\n22 C\n</tool_response>"
        in text
    )
    assert "SmolLM" not in text  # our system turn replaces the template's default one


def test_the_tools_follow_an_existing_system_prompt() -> None:
    messages = (ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"))
    text = render_chat(template(CHATML), messages, ToolSet((WEATHER,)), native=False)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")


def test_without_tools_or_history_the_prompt_is_unchanged() -> None:
    messages = (ChatMessage("user", "Hi"),)
    assert render_chat(template(CHATML), messages, None, native=False) == template(CHATML).render(messages)


# --- the grammar -----------------------------------------------------------------------------------


def rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.splitlines())


def test_the_grammar_allows_each_declared_function_with_its_schema() -> None:
    found = rules(tool_call_grammar(ToolSet((WEATHER, TIME))))
    assert found["root"] == 'tc-call ( "\\n<tool_call>\\n" tc-call )*'
    assert found["tc-call"] == '( tc-f0 | tc-f1 ) "}\\n</tool_call>"'
    assert found["tc-f0"] == '"{\\"name\\": \\"get_weather\\", \\"arguments\\": " f0-args'
    assert found["tc-f1"] == '"{\\"name\\": \\"get_time\\", \\"arguments\\": " f1-args'
    assert '"\\"city\\""' in found["f0-args-city-kv"]  # city is required: its key is in the rule


def test_a_named_function_and_no_parallel_calls_narrow_the_grammar() -> None:
    found = rules(
        tool_call_grammar(ToolSet((WEATHER, TIME), choice="required", function="get_time", parallel=False))
    )
    assert found["root"] == "tc-call"
    assert found["tc-call"] == '( tc-f0 ) "}\\n</tool_call>"'
    assert "get_weather" not in "".join(found.values())


def test_each_functions_defs_stay_its_own() -> None:
    def with_day(values: list[str]) -> str:
        return json.dumps(
            {
                "type": "object",
                "properties": {"day": {"$ref": "#/$defs/Day"}},
                "$defs": {"Day": {"type": "string", "enum": values}},
            }
        )

    grammar = tool_call_grammar(
        ToolSet((ToolFunction("a", None, with_day(["mon"])), ToolFunction("b", None, with_day(["tue"]))))
    )
    assert '"\\"mon\\""' in grammar
    assert '"\\"tue\\""' in grammar


def test_a_schema_the_converter_cannot_enforce_is_a_400_naming_tools() -> None:
    broken = ToolFunction(
        "f", None, json.dumps({"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}})
    )
    with pytest.raises(InvalidRequest) as raised:
        tool_call_grammar(ToolSet((broken,)))
    assert raised.value.param == "tools"
    assert "'f'" in raised.value.message
