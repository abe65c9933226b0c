"""/openapi.json: public, OpenAPI 3.1, generated from the one route table (so it lists every route)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator
from starlette.applications import Starlette
from starlette.routing import Route

from batchin.http_api.app import all_endpoints
from batchin.http_api.endpoint import openapi_path
from tests.conftest import MakeUser, bearer

PUBLIC_ROUTES = [("get", "/health"), ("get", "/openapi.json"), ("post", "/v1/topup/stripe/webhook")]


@pytest.fixture
async def document(client: httpx2.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield method, path, op


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator in which the document's `#/components/...` refs resolve."""
    return Draft202012Validator({**schema, "components": doc["components"]})


async def test_document_is_public_openapi_3_1(client: httpx2.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]


async def test_bearer_auth_is_the_default_security(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "batchin_api_…",
    }
    assert document["security"] == [{"bearerAuth": []}]


@pytest.mark.parametrize(("method", "path"), PUBLIC_ROUTES)
async def test_public_routes_need_no_security(document: dict[str, Any], method: str, path: str) -> None:
    assert document["paths"][path][method]["security"] == []


async def test_only_public_endpoints_opt_out_of_security(document: dict[str, Any]) -> None:
    public = {(ep.method.lower(), openapi_path(p)) for ep in all_endpoints() if ep.public for p in ep.paths}
    assert set(PUBLIC_ROUTES) <= public
    for method, path, op in operations(document):
        if (method, path) in public:
            assert op["security"] == []
        else:
            # Since issue 13 an authenticated operation names the key scope it needs (OpenAPI 3.1
            # allows roles on a bearer requirement) and documents the 403 a key without it gets.
            assert op["security"] == [{"bearerAuth": [op["x-batchin-scope"]]}], (method, path)
            for status in ("401", "403"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }


async def test_each_authenticated_operation_states_the_scope_its_route_checks(
    document: dict[str, Any],
) -> None:
    for ep in all_endpoints():
        for path in ep.paths:
            op = document["paths"][openapi_path(path)][ep.method.lower()]
            assert op.get("x-batchin-scope") == ep.scope, (ep.method, path)
            if ep.scope is not None:
                assert op["responses"]["403"]["description"] == "`permission_denied`"
                assert ep.scope in op["description"]


async def test_every_endpoint_is_documented(document: dict[str, Any]) -> None:
    for ep in all_endpoints():
        for path in ep.paths:
            op = document["paths"][openapi_path(path)][ep.method.lower()]
            assert op["summary"] == ep.summary
            assert str(ep.status_code) in op["responses"]


async def test_every_served_route_is_documented_and_nothing_else(
    app: Starlette, document: dict[str, Any]
) -> None:
    served = {
        (method.lower(), openapi_path(route.path))
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(method, path) for method, path, _ in operations(document)}
    assert served == documented


async def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))


async def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    [param] = document["paths"]["/v1/keys/{id}"]["delete"]["parameters"]
    assert param == {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


async def test_usage_log_paging_is_documented_with_the_seed_bounds(document: dict[str, Any]) -> None:
    params = {p["name"]: p for p in document["paths"]["/v1/usage/logs"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
    assert params["offset"]["schema"] == {"type": "integer", "minimum": 0, "default": 0}


async def test_every_ref_resolves_within_components(document: dict[str, Any]) -> None:
    found = set(refs(document))
    assert "#/components/schemas/ErrorResponse" in found
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref
        assert isinstance(resolve(document, ref), dict), ref


async def test_component_schemas_are_valid_json_schema(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:  # pragma: no cover - the message names the schema
            raise AssertionError(f"{name}: {exc}") from exc


async def test_document_parses_as_openapi_3_1(document: dict[str, Any]) -> None:
    openapi_pydantic = pytest.importorskip("openapi_pydantic")
    parsed = openapi_pydantic.v3.v3_1.OpenAPI.model_validate(document)
    assert parsed.openapi == "3.1.0"
    assert set(parsed.paths or {}) == set(document["paths"])


async def test_responses_match_their_documented_schemas(
    client: httpx2.AsyncClient, document: dict[str, Any], make_user: MakeUser
) -> None:
    user = await make_user()
    auth = bearer(user.api_key)
    created = await client.post("/v1/keys", json={"name": "doc", "monthly_budget_cents": 5}, headers=auth)
    samples = [
        ("get", "/v1/users/me", "200", await client.get("/v1/users/me", headers=auth)),
        ("post", "/v1/keys", "200", created),
        ("get", "/v1/keys", "200", await client.get("/v1/keys", headers=auth)),
        ("get", "/v1/usage/summary", "200", await client.get("/v1/usage/summary", headers=auth)),
        ("get", "/v1/usage/by-model", "200", await client.get("/v1/usage/by-model", headers=auth)),
        ("get", "/v1/usage/logs", "200", await client.get("/v1/usage/logs", headers=auth)),
        ("get", "/health", "200", await client.get("/health")),
        ("get", "/v1/users/me", "401", await client.get("/v1/users/me")),
        ("delete", "/v1/keys/{id}", "404", await client.delete("/v1/keys/nope", headers=auth)),
    ]
    for method, path, status, response in samples:
        assert str(response.status_code) == status, (path, response.text)
        schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        errors = list(validator(document, schema).iter_errors(response.json()))
        assert errors == [], (method, path, [e.message for e in errors])


async def test_document_passes_the_openapi_3_1_spec_validator(document: dict[str, Any]) -> None:
    # The validator client generators and schemathesis rely on; it raises on the first problem.
    OpenAPIV31SpecValidator(document).validate()


def form_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    content = doc["paths"][path]["post"]["requestBody"]["content"]
    schema: dict[str, Any] = resolve(doc, content["multipart/form-data"]["schema"]["$ref"])
    return schema


@pytest.mark.parametrize(
    ("path", "fields", "required"),
    [
        (
            "/v1/audio/transcriptions",
            {"file", "model", "language", "prompt", "response_format", "temperature"},
            {"file", "model"},
        ),
        ("/v1/audio/translations", {"file", "model", "prompt", "response_format"}, {"file", "model"}),
        ("/v1/files", {"file", "purpose"}, {"file", "purpose"}),
        ("/v1/videos", {"prompt", "model", "seconds", "size"}, {"prompt"}),
    ],
)
async def test_form_bodies_are_described_as_multipart(
    document: dict[str, Any], path: str, fields: set[str], required: set[str]
) -> None:
    schema = form_schema(document, path)
    assert fields <= set(schema["properties"])
    assert set(schema["required"]) == required
    if "file" in fields:
        assert schema["properties"]["file"]["format"] == "binary"


async def test_array_form_fields_carry_the_brackets_the_route_reads(document: dict[str, Any]) -> None:
    properties = form_schema(document, "/v1/audio/transcriptions")["properties"]
    assert properties["timestamp_granularities[]"]["type"] == "array"
    assert "timestamp_granularities" not in properties


async def test_video_creation_takes_json_or_a_form(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data", "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("path", "types"),
    [
        ("/v1/chat/completions", {"application/json", "text/event-stream"}),
        ("/v1/responses", {"application/json", "text/event-stream"}),
        ("/v1/audio/transcriptions", {"application/json", "text/plain", "text/vtt"}),
        (
            "/v1/audio/speech",
            {"audio/mpeg", "audio/opus", "audio/aac", "audio/flac", "audio/wav", "audio/pcm"},
        ),
    ],
)
async def test_every_body_format_a_route_answers_is_described(
    document: dict[str, Any], path: str, types: set[str]
) -> None:
    assert set(document["paths"][path]["post"]["responses"]["200"]["content"]) == types


async def test_every_operation_describes_other_errors_as_the_envelope(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        schema = op["responses"]["default"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path)


async def test_a_method_the_document_does_not_list_is_405_with_allow(
    client: httpx2.AsyncClient, document: dict[str, Any]
) -> None:
    # Described by omission (OpenAPI has no per-path 405): what the document lists is all a path serves.
    for path, item in document["paths"].items():
        concrete = re.sub(r"{\w+}", "x", path)
        for method in {"get", "post", "put", "patch", "delete"} - set(item):
            response = await client.request(method.upper(), concrete)
            assert response.status_code == 405, (method, path, response.status_code)
            assert response.json()["error"]["code"] == "method_not_allowed"
            listed = {m.upper() for m in item} | ({"HEAD"} if "get" in item else set())
            assert set(response.headers["allow"].split(", ")) == listed, (method, path)


async def test_file_content_is_described_in_the_files_own_media_type(document: dict[str, Any]) -> None:
    # Found by schemathesis: a batch's JSONL output was served under a documented octet-stream.
    # A file keeps the type it was stored with (image/png, video/mp4, application/jsonl, an upload's).
    content = document["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]["200"]["content"]
    assert content == {"*/*": {"schema": {"type": "string", "format": "binary"}}}


async def test_a_body_whose_fields_are_all_optional_is_documented_optional(
    client: httpx2.AsyncClient, document: dict[str, Any], make_user: MakeUser
) -> None:
    # Found by schemathesis: POST /v1/keys with no body made a key while the document said the
    # body was required. An empty body reads as `{}`, so where that is valid the body is optional.
    optional = {
        (method, path)
        for method, path, op in operations(document)
        if "requestBody" in op and not op["requestBody"]["required"]
    }
    assert optional == {
        ("post", "/v1/keys"),
        ("post", "/v1/otlp/traces"),
        ("patch", "/v1/prompts/{registry_id}"),
    }
    user = await make_user()
    created = await client.post("/v1/keys", headers=bearer(user.api_key))
    assert created.status_code == 200, created.text
    assert document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["required"] is True
