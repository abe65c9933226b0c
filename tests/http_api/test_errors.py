"""The HTTP surface's one error mapping: every failure leaves as the exact envelope, never a trace,
and every response carries an X-Request-Id."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchin.app import create_app
from batchin.config import Settings
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer

ENVELOPE_KEYS = {"message", "type", "code", "param"}


def envelope(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    """The exact error envelope, as JSON, with a request id."""
    error = assert_error(response, status, code)
    assert set(error) == ENVELOPE_KEYS
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    return error


@pytest.fixture
def small_body_app(settings: Settings, services: Services) -> Starlette:
    limited = settings.model_copy(update={"max_body_bytes": 64})
    return create_app(limited, dataclasses.replace(services, settings=limited))


@pytest.fixture
async def crashing_client(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    """The product app plus one throwaway route that fails with an unexpected exception."""

    async def crash(_request: Request) -> Response:
        raise RuntimeError("secret internal detail /etc/passwd")

    app.router.routes.append(Route("/test-only/crash", crash))
    # The app still re-raises after answering (so servers can log it); the client must not.
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


# --- routing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/users/me/extra", "/v1/keys/a/b"])
async def test_unknown_route_is_a_not_found_envelope(client: httpx2.AsyncClient, path: str) -> None:
    error = envelope(await client.get(path), 404, "not_found")
    assert error["param"] is None
    assert path in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/users/me", {"GET", "HEAD"}),
        ("POST", "/health", {"GET", "HEAD"}),
        ("PATCH", "/v1/keys", {"GET", "HEAD", "POST"}),
        ("DELETE", "/v1/keys", {"GET", "HEAD", "POST"}),
        ("GET", "/v1/keys/0d5f3a52-7a43-4a57-8d4c-3c4b8e1a9f00", {"DELETE"}),
    ],
)
async def test_wrong_method_is_a_method_not_allowed_envelope_naming_every_allowed_method(
    client: httpx2.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    assert envelope(response, 405, "method_not_allowed")["param"] is None
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


# --- request bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"name": "x",}', b"nul", b"\xff\xfe", b'{"name": "x"} trailing'],
    ids=["truncated", "trailing-comma", "bad-literal", "not-utf8", "trailing-data"],
)
async def test_malformed_json_is_invalid_request(
    client: httpx2.AsyncClient, make_user: MakeUser, body: bytes
) -> None:
    user = await make_user()
    headers = {**bearer(user.api_key), "content-type": "application/json"}
    error = envelope(await client.post("/v1/keys", content=body, headers=headers), 400, "invalid_request")
    assert error["param"] is None
    keys = (await client.get("/v1/keys", headers=bearer(user.api_key))).json()
    assert [k["id"] for k in keys] == [user.key_id]


@pytest.mark.parametrize("body", [b"[]", b'[{"name": "x"}]', b'"a string"', b"42", b"null"])
async def test_json_that_is_not_an_object_is_invalid_request(
    client: httpx2.AsyncClient, make_user: MakeUser, body: bytes
) -> None:
    user = await make_user()
    response = await client.post("/v1/keys", content=body, headers=bearer(user.api_key))
    assert "JSON object" in envelope(response, 400, "invalid_request")["message"]


async def test_body_over_the_limit_is_payload_too_large(
    small_body_app: Starlette, make_user: MakeUser
) -> None:
    user = await make_user()
    transport = httpx2.ASGITransport(app=small_body_app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        fits = await client.post("/v1/keys", json={"name": "k" * 30}, headers=bearer(user.api_key))
        assert fits.status_code == 200, fits.text
        too_big = await client.post("/v1/keys", json={"name": "k" * 60}, headers=bearer(user.api_key))
        envelope(too_big, 413, "payload_too_large")
        assert len((await client.get("/v1/keys", headers=bearer(user.api_key))).json()) == 2


async def test_streamed_body_without_a_length_is_cut_off_at_the_limit(
    small_body_app: Starlette, make_user: MakeUser
) -> None:
    user = await make_user()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(100):
            yield b"k" * 10
        yield b'"}'

    transport = httpx2.ASGITransport(app=small_body_app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/v1/keys", content=chunks(), headers=bearer(user.api_key))
        assert "content-length" not in response.request.headers
        envelope(response, 413, "payload_too_large")


# --- unexpected failures ---------------------------------------------------------------------------


async def test_unexpected_exception_is_a_500_envelope_without_details(
    crashing_client: httpx2.AsyncClient,
) -> None:
    response = await crashing_client.get("/test-only/crash")
    error = envelope(response, 500, "internal_error")
    assert error == {
        "message": "Internal server error. Quote the X-Request-Id header when reporting it.",
        "type": "server_error",
        "code": "internal_error",
        "param": None,
    }
    assert "secret internal detail" not in response.text
    assert "RuntimeError" not in response.text


async def test_server_keeps_serving_after_an_unexpected_exception(
    crashing_client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    for _ in range(3):
        assert (await crashing_client.get("/test-only/crash")).status_code == 500
    assert (await crashing_client.get("/health")).json() == {"status": "ok"}
    assert (await crashing_client.get("/v1/users/me", headers=bearer(user.api_key))).json()["id"] == user.id


# --- envelope and request id on everything ---------------------------------------------------------


async def test_every_error_has_exactly_the_envelope_keys(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    auth = bearer(user.api_key)
    cases: list[tuple[httpx2.Response, int, str]] = [
        (await client.get("/v1/users/me"), 401, "unauthorized"),
        (await client.delete("/v1/keys/not-a-uuid", headers=auth), 404, "not_found"),
        (await client.post("/v1/keys", json={"rate_limit_rpm": "abc"}, headers=auth), 400, "invalid_request"),
        (await client.get("/v1/usage/logs?limit=0", headers=auth), 400, "invalid_request"),
        (await client.get("/missing"), 404, "not_found"),
        (await client.put("/v1/keys"), 405, "method_not_allowed"),
    ]
    for response, status, code in cases:
        envelope(response, status, code)


async def test_request_ids_are_on_every_response_and_unique(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    created = (await client.post("/v1/keys", json={}, headers=bearer(user.api_key))).json()
    responses = [
        await client.get("/health"),
        await client.get("/openapi.json"),
        await client.get("/v1/users/me", headers=bearer(user.api_key)),
        await client.delete(f"/v1/keys/{created['id']}", headers=bearer(user.api_key)),
        await client.get("/v1/users/me"),
        await client.get("/missing"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 204, 401, 404]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(i.startswith("req_") and len(i) > 20 for i in ids)
    assert len(set(ids)) == len(ids)
