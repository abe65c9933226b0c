"""X-Forwarded-* applied by the app (`batchin serve` turns uvicorn's middleware off): the client and
scheme a trusted proxy forwards for, as uvicorn's ProxyHeadersMiddleware gives them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest

from batchin.app import create_app
from batchin.config import Settings
from batchin.http_api.forwarded import ForwardedHeaders
from tests.conftest import assert_error
from tests.text_fixtures import scripted_services


@pytest.fixture(autouse=True)
def uvicorns_default_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


@asynccontextmanager
async def client_from(settings: Settings, peer: str) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the app as `batchin serve` builds it, connecting from `peer`."""
    async with scripted_services(settings) as services:
        app = create_app(services.settings, services, proxy_headers=True)
        transport = httpx2.ASGITransport(app=app, client=(peer, 5555))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_a_trusted_proxy_is_seen_as_the_client_it_forwards_for(settings: Settings) -> None:
    # /metrics opens to loopback callers only: forwarded for a remote caller, it stays shut.
    async with client_from(settings, "127.0.0.1") as client:
        assert (await client.get("/metrics")).status_code == 200
        forwarded = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
        assert_error(forwarded, 401, "unauthorized")


async def test_an_untrusted_peer_cannot_claim_another_address(settings: Settings) -> None:
    async with client_from(settings, "203.0.113.9") as client:
        spoofed = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
        assert_error(spoofed, 401, "unauthorized")


def http_scope(peer: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "scheme": "http", "client": (peer, 5555), "headers": headers}


async def nothing(*_: object) -> None:
    return None


async def test_client_and_scheme_are_rewritten_as_uvicorn_does() -> None:
    scope = http_scope(
        "127.0.0.1",
        [(b"x-forwarded-for", b"198.51.100.7, 127.0.0.1"), (b"x-forwarded-proto", b"https")],
    )
    await ForwardedHeaders.as_uvicorn_would().apply(scope, nothing, nothing)
    assert scope["client"] == ("198.51.100.7", 0)
    assert scope["scheme"] == "https"


async def test_applied_twice_it_gives_the_same_client() -> None:
    forwarded = ForwardedHeaders("127.0.0.1,10.0.0.0/8")
    scope = http_scope("127.0.0.1", [(b"x-forwarded-for", b"198.51.100.7, 10.1.2.3")])
    await forwarded.apply(scope, nothing, nothing)
    once = scope["client"]
    await forwarded.apply(scope, nothing, nothing)
    assert once == scope["client"] == ("198.51.100.7", 0)


async def test_the_app_built_without_it_leaves_the_client_alone(settings: Settings) -> None:
    async with scripted_services(settings) as services:
        transport = httpx2.ASGITransport(app=create_app(services.settings, services), client=("127.0.0.1", 1))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            response = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
            assert response.status_code == 200
