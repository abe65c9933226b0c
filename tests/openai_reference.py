"""OpenAI's published OpenAPI document (tests/reference/openai-openapi.yaml) as a validator of the
OpenAI-compatible shapes we return.

The document says OpenAPI 3.1 but still writes OpenAPI 3.0's `nullable: true` in hundreds of
places (`finish_reason`, `logprobs`, …), which JSON Schema 2020-12 ignores: read literally, every
mid-stream chunk OpenAI itself sends (`"finish_reason": null`) would fail. We read `nullable` as
its authors meant it (and as the SDK generated from this document does): null is allowed there.
Everything else is taken literally, with OpenAPI 3.1's own schema dialect (OAS31Validator).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import ValidationError, best_match
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT = Path(__file__).parent / "reference" / "openai-openapi.yaml"
_URI = "urn:openai:openapi"


class _NoDates(yaml.CSafeLoader):
    """YAML without its timestamp rule: dates in examples stay strings, as JSON would have them."""


_NoDates.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}


def _allow_null(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` rewritten as JSON Schema 2020-12 says it."""
    if isinstance(node, list):
        return [_allow_null(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _allow_null(value) for key, value in node.items()}
    if out.pop("nullable", None) is not True:
        return out
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [out, {"type": "null"}]}


@functools.cache
def document() -> dict[str, Any]:
    """The document as published (nullable untouched), parsed once per session."""
    with DOCUMENT.open("rb") as source:
        loaded: dict[str, Any] = yaml.load(source, Loader=_NoDates)
    return loaded


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(
        _allow_null(copy.deepcopy(document())), default_specification=DRAFT202012
    )
    return Registry().with_resource(_URI, resource)


def _validator(pointer: str) -> OAS31Validator:
    return OAS31Validator({"$ref": f"{_URI}#{pointer}"}, registry=_registry())


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def component(name: str) -> str:
    """The JSON pointer of a component schema."""
    return f"/components/schemas/{_escape(name)}"


def response_schema(path: str, method: str, status: str = "200", content: str = "application/json") -> str:
    """The JSON pointer of the schema OpenAI documents for one response of one operation."""
    op = document()["paths"][path][method]
    if content not in op["responses"][status].get("content", {}):
        raise KeyError(f"OpenAI documents no {content} body for {method.upper()} {path} {status}")
    parts = ["paths", path, method, "responses", status, "content", content, "schema"]
    return "/" + "/".join(_escape(p) for p in parts)


def violations(instance: Any, pointer: str) -> list[str]:
    """Every way `instance` breaks the schema at `pointer`, each as 'where: what'."""
    errors = sorted(
        _validator(pointer).iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [_describe(best_match([e])) for e in errors]


def _describe(error: ValidationError) -> str:
    # best_match descends into anyOf/oneOf, so "not valid under any of the given schemas" names a cause.
    # A long value (a base64 string, a whole object) is named `<value>`: the path says which.
    where = "/".join(str(p) for p in error.absolute_path) or "<root>"
    shown = repr(error.instance)
    message = error.message.replace(shown, "<value>") if len(shown) > 80 else error.message
    return f"{where}: {message[:500]}"
