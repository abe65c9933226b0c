"""Every surface that takes a body refuses an oversized one early, with the 413 envelope: before
reading when Content-Length declares it, at the chunk that crosses the limit when the body comes
chunked without one. Each body here offers 400 MB and counts what the server pulled: it must stop
within a chunk of the limit, so an oversized body is never held (or spooled) whole."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx2
import pytest

from batchin.app import create_app
from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import scripted_services

LIMIT = 64 * 1024
CHUNK = 64 * 1024
OFFERED = 400 * 1024 * 1024
BOUNDARY = "boundedinputs"
_ZEROS = b"0" * CHUNK


def multipart_head(fields: dict[str, str], file_field: str, filename: str) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return "".join(parts).encode()


@dataclass(frozen=True)
class Surface:
    path: str
    content_type: str
    head: bytes  # what precedes the endless filler: a JSON string or a multipart file part opened
    extra_headers: tuple[tuple[str, str], ...] = ()


_MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
SURFACES = {
    "json": Surface("/v1/chat/completions", "application/json", b'{"model": "scripted-chat", "messages": "'),
    "mcp": Surface(
        "/v1/mcp",
        "application/json",
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": {"a": "',
        (("Accept", "application/json, text/event-stream"),),
    ),
    "files": Surface("/v1/files", _MULTIPART, multipart_head({"purpose": "batch"}, "file", "a.jsonl")),
    "transcriptions": Surface(
        "/v1/audio/transcriptions", _MULTIPART, multipart_head({"model": "whisper-tiny.en"}, "file", "a.wav")
    ),
    "videos": Surface(
        "/v1/videos", _MULTIPART, multipart_head({"model": "m", "prompt": "p"}, "input_reference", "a.png")
    ),
    "otlp": Surface("/v1/otlp/traces", "application/x-protobuf", b""),
}


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    limits = {"max_body_bytes": LIMIT, "max_upload_bytes": LIMIT, "file_upload_max_bytes": LIMIT}
    async with scripted_services(settings, otlp_max_body_bytes=LIMIT, **limits) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


def offered(head: bytes) -> tuple[Callable[[], AsyncIterator[bytes]], list[int]]:
    """A 400 MB body (`head`, then filler) and the running count of bytes the server pulled."""
    pulled = [0]

    async def body() -> AsyncIterator[bytes]:
        pulled[0] += len(head)
        yield head
        for _ in range((OFFERED - len(head)) // CHUNK):
            pulled[0] += CHUNK
            yield _ZEROS

    return body, pulled


@pytest.mark.parametrize("surface", sorted(SURFACES))
async def test_a_chunked_body_without_length_is_cut_off_at_the_limit(
    client: httpx2.AsyncClient, user: UserCreated, surface: str
) -> None:
    spec = SURFACES[surface]
    body, pulled = offered(spec.head)
    headers = {**bearer(user.api_key), "Content-Type": spec.content_type, **dict(spec.extra_headers)}

    response = await client.post(spec.path, content=body(), headers=headers)

    assert_error(response, 413, "payload_too_large")
    assert "content-length" not in response.request.headers
    assert response.headers["x-request-id"].startswith("req_")
    assert pulled[0] <= LIMIT + CHUNK + len(spec.head)


@pytest.mark.parametrize("surface", sorted(SURFACES))
async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: httpx2.AsyncClient, user: UserCreated, surface: str
) -> None:
    spec = SURFACES[surface]
    body, pulled = offered(spec.head)
    headers = {
        **bearer(user.api_key),
        "Content-Type": spec.content_type,
        "Content-Length": str(OFFERED),
        **dict(spec.extra_headers),
    }

    response = await client.post(spec.path, content=body(), headers=headers)

    assert_error(response, 413, "payload_too_large")
    assert pulled[0] == 0


async def test_mcp_within_the_limit_still_reaches_the_server(services: Services, user: UserCreated) -> None:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }

    async def chunked() -> AsyncIterator[bytes]:  # in pieces, so the replay of several messages is exercised
        raw = httpx2.Request("POST", "/", json=request).read()
        for start in range(0, len(raw), 16):
            yield raw[start : start + 16]

    app = create_app(services.settings, services)
    transport = httpx2.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with (
        app.router.lifespan_context(app),  # MCP's session manager runs in the app's lifespan
        httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        response = await client.post(
            "/v1/mcp",
            content=chunked(),
            headers={
                **bearer(user.api_key),
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )

    assert response.status_code == 200, response.text
    assert '"serverInfo"' in response.text
