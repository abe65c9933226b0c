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

import functools
import json
from typing import Any

from batchin.errors import InvalidRequest
from batchin.models.base import ToolSet
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
        schema: Any = json.loads(function.parameters)
        try:
            # Each function's own base URL keeps two functions' `#/$defs/X` apart.
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
    return "\n".join([*rules, *heads, converter.format_grammar()])
