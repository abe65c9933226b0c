"""The grammar (llama.cpp GBNF) that keeps a local model's tool calls to the declared functions.

It starts right after a call opener (`<tool_call>` and a newline, tool_prompt.py) and allows only

    {"name": "<a declared function>", "arguments": <JSON valid against that function's schema>}
    </tool_call>

then, when parallel calls are allowed, more such blocks, and then the end of the turn. Each
function's arguments are converted by llama.cpp's own JSON-Schema converter (`SchemaConverter` in
llama_cpp.llama_grammar, what `LlamaGrammar.from_json_schema` uses), all into one grammar, so the
arguments of every call parse and match their schema. Built in the engine's worker, cached per tool
set (a ToolSet is hashable).
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from batchin.errors import InvalidRequest
from batchin.models.base import ToolSet
from batchin.models.grammars import strict_json_strings
from batchin.models.tool_prompt import CALL_CLOSE, CALL_OPEN

__all__ = ["tool_call_grammar"]


def _literal(text: str) -> str:
    # GBNF literals take JSON's escapes (\" \\ \n \uXXXX); non-ASCII characters stand as they are.
    return json.dumps(text, ensure_ascii=False)


@functools.lru_cache(maxsize=64)
def tool_call_grammar(tools: ToolSet) -> str:
    """The grammar text for `tools` (only `tools.function` when tool_choice names one)."""
    from llama_cpp import llama_grammar

    schema_converter: Any = llama_grammar.SchemaConverter  # untyped in llama-cpp-python

    functions = [f for f in tools.functions if tools.function in (None, f.name)]
    if not functions:
        raise InvalidRequest(
            f"tool_choice names {tools.function!r}, which is not in tools.", param="tool_choice"
        )
    converter = schema_converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    heads: list[str] = []
    for index, function in enumerate(functions):
        schema = _own_refs(json.loads(function.parameters), f"f{index}")
        try:
            resolved = converter.resolve_refs(schema, f"tool{index}")
            arguments = converter.visit(resolved, f"f{index}-args")
        except Exception as exc:  # the converter raises bare asserts and KeyErrors on what it cannot do
            raise InvalidRequest(
                f"The parameters schema of tool '{function.name}' cannot be enforced: "
                f"{type(exc).__name__}: {exc}",
                param="tools",
            ) from exc
        head = _literal(f'{{"name": {json.dumps(function.name, ensure_ascii=False)}, "arguments": ')
        heads.append(f"tc-f{index} ::= {head} {arguments}")
    names = " | ".join(f"tc-f{index}" for index in range(len(functions)))
    more = f" ( {_literal(chr(10) + CALL_OPEN + chr(10))} tc-call )*" if tools.parallel else ""
    rules = [f"root ::= tc-call{more}", f"tc-call ::= ( {names} ) {_literal('}' + chr(10) + CALL_CLOSE)}"]
    return strict_json_strings("\n".join([*rules, *heads, converter.format_grammar()]))


def _own_refs(schema: Any, prefix: str) -> Any:
    """The schema with each local `$ref` pointing at a copy of its target under a name of its own
    (`$defs/<prefix>-<n>-<name>`). The converter names a ref's rule after the pointer's last
    segment and reuses a rule of that name, so two functions' `#/$defs/Day` (or two pointers ending
    in the same word) would otherwise share the first one's rule."""
    if not isinstance(schema, dict):
        return schema
    schema = copy.deepcopy(schema)
    names: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/"):
                name = names.setdefault(ref, f"{prefix}-{len(names)}-{ref.rsplit('/', 1)[-1]}")
                node["$ref"] = f"#/$defs/{name}"
            for value in node.values():
                walk(value)

    walk(schema)
    targets = {}
    for ref, name in names.items():
        target: Any = schema
        for part in ref[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            target = target.get(key) if isinstance(target, dict) else None
        if target is not None:  # a dangling pointer is left for the converter to refuse
            targets[name] = target
    if targets:
        defs = schema.get("$defs")
        schema["$defs"] = {**(defs if isinstance(defs, dict) else {}), **targets}
    return schema
