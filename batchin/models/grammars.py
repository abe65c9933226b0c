"""JSON Schema → llama.cpp grammar (GBNF): checked up front, converted and cached per schema.

Two halves, for any engine that constrains its own sampling with a grammar:

- `check_schema(schema, param=...)` is pure Python (no engine import), so the API process runs it
  before any engine work: a schema that is not valid JSON Schema, or that uses a keyword the grammar
  cannot enforce, is a 400 naming the parameter and the keywords (`UNSUPPORTED_KEYWORDS`). It also
  returns the schema's text (`schema_text`), which is what travels to the engine and keys the caches.
- `schema_grammar(text)` runs where the engine is (the worker process): llama-cpp-python's
  JSON-schema-to-grammar converter, cached per schema text, since the same schema usually comes
  again (a client's pydantic model). `JSON_OBJECT_SCHEMA` is the schema of `{"type": "json_object"}`.

What the grammar enforces: types, `properties`/`required`/`additionalProperties`, `items`,
`prefixItems`, `minItems`/`maxItems`, `enum`, `const`, `anyOf`/`oneOf`, `allOf` of objects, local
`$ref` (`#/$defs/...`), anchored `pattern`, `minLength`/`maxLength`, and the formats `date`, `time`,
`date-time` and `uuid`. Other formats are annotations, as JSON Schema treats them by default.
Annotations (`title`, `description`, `default`, `examples`, unknown keywords) change nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

from batchin.errors import InvalidRequest
from batchin.models.llama_lib import close_devnull_at_exit

__all__ = [
    "JSON_OBJECT_SCHEMA",
    "MAX_REPEAT",
    "MAX_SCHEMA_BYTES",
    "UNSUPPORTED_KEYWORDS",
    "check_schema",
    "schema_grammar",
    "schema_text",
    "strict_json_strings",
]

# Keywords that restrict values in ways llama.cpp's converter does not turn into grammar: output
# would not be guaranteed to match, so a schema using them is refused instead of quietly loosened.
UNSUPPORTED_KEYWORDS: frozenset[str] = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedProperties",
        "unevaluatedItems",
        "additionalItems",
    }
)

# Keywords whose value is a schema / a list of schemas / a map of schemas: where the walk descends.
_ONE_SCHEMA = ("items", "additionalProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
# Beside a list of types, the converter keeps only the types: anything else would be dropped.
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$schema", "$id", "$comment"})

JSON_OBJECT_SCHEMA = '{"type":"object"}'
MAX_SCHEMA_BYTES = 64 * 1024
MAX_REPEAT = 1000  # minLength/maxLength/minItems/maxItems: each unit becomes grammar
_MAX_DEPTH = 32


def schema_text(schema: dict[str, Any]) -> str:
    """The schema as compact JSON, property order kept (the grammar writes properties in it)."""
    return json.dumps(schema, separators=(",", ":"), ensure_ascii=False)


def check_schema(schema: object, *, param: str, grammar: bool = True) -> str:
    """Refuse (400 naming `param`) a schema that is not valid JSON Schema or, with `grammar` (the
    engine enforces it itself), one the grammar cannot enforce; return its text."""
    if not isinstance(schema, dict):
        raise InvalidRequest("The JSON schema must be an object.", param=param)
    text = schema_text(schema)
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"The JSON schema is over {MAX_SCHEMA_BYTES // 1024} KiB.", param=param)
    refusal = _refusal(text, grammar)
    if refusal:
        raise InvalidRequest(refusal, param=param)
    return text


@functools.lru_cache(maxsize=256)
def _refusal(text: str, grammar: bool) -> str | None:
    """Why the schema is refused, or None; cached, since clients send the same schema again."""
    schema = json.loads(text)
    from jsonschema import Draft202012Validator  # imported on first use: most calls send no schema
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the root"
        return f"Invalid JSON schema at {where}: {exc.message}."
    if not grammar:
        return None
    found: dict[str, list[str]] = {}
    for path, node in _subschemas(schema, "#", 0):
        for problem in _node_problems(node, path):
            found.setdefault(problem, []).append(path)
    if not found:
        return None
    problems = [
        f"{problem} (at {', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''})"
        for problem, paths in sorted(found.items())
    ]
    return f"Unsupported JSON schema: {'; '.join(problems)}."


def _subschemas(node: object, path: str, depth: int) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return  # `true`/`false` schemas
    if depth > _MAX_DEPTH:
        yield path, {"$nesting": depth}
        return
    yield path, node
    for key in _ONE_SCHEMA:
        if isinstance(node.get(key), dict):
            yield from _subschemas(node[key], f"{path}/{key}", depth + 1)
    for key in _SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for i, item in enumerate(node[key]):
                yield from _subschemas(item, f"{path}/{key}/{i}", depth + 1)
    for key in _SCHEMA_MAPS:
        if isinstance(node.get(key), dict):
            for name, item in node[key].items():
                yield from _subschemas(item, f"{path}/{key}/{name}", depth + 1)


def _node_problems(node: dict[str, Any], path: str) -> Iterator[str]:
    if "$nesting" in node:
        yield f"nesting deeper than {_MAX_DEPTH} levels"
        return
    for keyword in sorted(UNSUPPORTED_KEYWORDS.intersection(node)):
        yield f"'{keyword}' is not supported"
    ref = node.get("$ref")
    if isinstance(ref, str) and not ref.startswith("#/"):
        yield "only local '$ref' (#/...) is supported"
    pattern = node.get("pattern")
    if isinstance(pattern, str) and not (pattern.startswith("^") and pattern.endswith("$")):
        yield "'pattern' must be anchored (start with ^ and end with $)"
    for keyword in ("minLength", "maxLength", "minItems", "maxItems"):
        value = node.get(keyword)
        if isinstance(value, int) and value > MAX_REPEAT:
            yield f"'{keyword}' over {MAX_REPEAT} is not supported"
    if isinstance(node.get("type"), list) and set(node) - _ANNOTATIONS - {"type"}:
        yield "a list of types beside other keywords is not supported (use anyOf)"
    all_of = node.get("allOf")
    if isinstance(all_of, list) and not all(
        isinstance(part, dict) and ("properties" in part or "$ref" in part) for part in all_of
    ):
        yield "'allOf' is supported only for combining objects"


@functools.lru_cache(maxsize=256)
def schema_grammar(text: str, *, param: str = "response_format") -> str:
    """GBNF for a schema checked by `check_schema` (engine side: imports llama-cpp-python)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    close_devnull_at_exit()
    try:
        gbnf: str = json_schema_to_gbnf(text)
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        # The converter asserts on what it cannot express; `check_schema` refuses what we know of.
        raise InvalidRequest(
            f"Unsupported JSON schema: the grammar converter refused it ({exc}).", param=param
        ) from None
    return strict_json_strings(gbnf)


# llama-cpp-python's converter lets any character but `"` and `\` stand in a string, raw control
# characters included, which JSON forbids (RFC 8259: U+0000-U+001F must be escaped): a newline
# sampled inside a string made the output unparseable. llama.cpp's own converter excludes them.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def strict_json_strings(gbnf: str) -> str:
    """The grammar with JSON's string characters: no raw control characters (nor DEL)."""
    return gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)
