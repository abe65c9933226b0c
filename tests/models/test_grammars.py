"""JSON Schema → grammar: what the API process refuses before any engine work, and the grammar the
engine gets (converted once per schema)."""

from __future__ import annotations

from typing import Any

import pytest

from batchin.errors import InvalidRequest
from batchin.models.grammars import MAX_REPEAT, check_schema, schema_grammar

ORDER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["open", "closed"]},
        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}, "maxItems": 3},
        "note": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "null"}]},
        "when": {"type": "string", "format": "date"},
    },
    "required": ["status", "items", "note", "when"],
    "additionalProperties": False,
    "$defs": {
        "Item": {
            "type": "object",
            "title": "Item",
            "properties": {"minimum": {"type": "integer"}, "id": {"type": "string", "pattern": "^[a-z]{2}$"}},
            "required": ["minimum", "id"],
        }
    },
}


def test_a_supported_schema_passes_and_keeps_its_property_order() -> None:
    text = check_schema(ORDER, param="response_format")
    assert text.index('"status"') < text.index('"items"') < text.index('"note"')
    grammar = schema_grammar(text)
    root = next(line for line in grammar.splitlines() if line.startswith("root ::="))
    assert root.index("status-kv") < root.index("items-kv") < root.index("note-kv")
    assert schema_grammar(text) is grammar  # converted once per schema


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "integer", "minimum": 1}, "'minimum' is not supported (at #)"),
        (
            {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
            "'uniqueItems' is not supported (at #/properties/tags)",
        ),
        ({"not": {"type": "string"}}, "'not' is not supported"),
        ({"$ref": "https://example.com/schema.json"}, "only local '$ref'"),
        ({"type": "string", "pattern": "[0-9]+"}, "'pattern' must be anchored"),
        ({"type": "string", "maxLength": MAX_REPEAT + 1}, f"'maxLength' over {MAX_REPEAT}"),
        ({"type": ["string", "null"], "maxLength": 3}, "a list of types beside other keywords"),
        ({"allOf": [{"type": "string"}]}, "'allOf' is supported only for combining objects"),
        (
            {"type": "object", "properties": {"n": {"type": "nmber"}}},
            "Invalid JSON schema at properties/n/type",
        ),
    ],
)
def test_what_a_grammar_cannot_enforce_is_refused_naming_it(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_schema(schema, param="response_format")
    assert raised.value.param == "response_format"
    assert message in raised.value.message


def test_property_names_are_not_taken_for_keywords() -> None:
    check_schema({"type": "object", "properties": {"minimum": {"type": "number"}, "not": {}}}, param="p")


def test_an_engine_that_passes_the_schema_on_only_needs_it_valid() -> None:
    check_schema({"type": "integer", "minimum": 1}, param="response_format", grammar=False)
    with pytest.raises(InvalidRequest, match="Invalid JSON schema"):
        check_schema({"type": 3}, param="response_format", grammar=False)


def test_a_schema_must_be_an_object_of_bounded_size() -> None:
    with pytest.raises(InvalidRequest, match="must be an object"):
        check_schema([1], param="p")
    huge = {"type": "object", "description": "x" * 70_000}
    with pytest.raises(InvalidRequest, match="over 64 KiB"):
        check_schema(huge, param="p")


def test_strings_in_the_grammar_take_no_raw_control_characters() -> None:
    """RFC 8259: U+0000-U+001F must be escaped inside a string. llama-cpp-python's converter allowed
    them, and a newline sampled inside a string made the output unparseable at temperature 1."""
    from batchin.models.grammars import JSON_OBJECT_SCHEMA, schema_grammar

    [char] = [line for line in schema_grammar(JSON_OBJECT_SCHEMA).splitlines() if line.startswith("char ::=")]
    assert char.startswith('char ::= [^"\\\\\\x7F\\x00-\\x1F] |')
