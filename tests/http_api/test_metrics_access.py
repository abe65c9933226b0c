"""Who may read /metrics: loopback callers while loopback is trusted, anyone with the admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest

from batchin.config import Settings
from tests.conftest import assert_error, bearer
from tests.text_fixtures import asgi_client, scripted_services

TOKEN = "operator-token-0123456789"


@asynccontextmanager
async def metrics_status(
    settings: Settings, host: str, token: str | bytes | None = None, **overrides: object
) -> AsyncIterator[httpx2.Response]:
    """GET /metrics from `host` (with `token` as the bearer) on a server with these settings."""
    headers: dict[str, str | bytes] = {}
    if isinstance(token, bytes):  # a header that is not ASCII reaches the server as Latin-1
        headers["Authorization"] = b"Bearer " + token
    elif token:
        headers.update(bearer(token))
    async with (
        scripted_services(settings, **overrides) as services,
        asgi_client(services, host=host) as client,
    ):
        yield await client.get("/metrics", headers=headers)


async def test_loopback_is_trusted_by_default(settings: Settings) -> None:
    async with metrics_status(settings, "127.0.0.1") as response:
        assert response.status_code == 200


async def test_a_remote_caller_needs_the_admin_token(settings: Settings) -> None:
    async with metrics_status(settings, "203.0.113.9", admin_token=TOKEN) as anonymous:
        assert_error(anonymous, 401, "unauthorized")
    async with metrics_status(settings, "203.0.113.9", TOKEN, admin_token=TOKEN) as operator:
        assert operator.status_code == 200


@pytest.mark.parametrize(
    "guess", [TOKEN[:-1], TOKEN + "x", TOKEN.upper(), "é".encode("latin-1") + TOKEN.encode()]
)
async def test_a_near_miss_token_is_refused(settings: Settings, guess: str | bytes) -> None:
    async with metrics_status(settings, "203.0.113.9", guess, admin_token=TOKEN) as response:
        assert_error(response, 401, "unauthorized")


async def test_without_an_admin_token_no_bearer_opens_it(settings: Settings) -> None:
    async with metrics_status(settings, "203.0.113.9", "anything") as response:
        assert_error(response, 401, "unauthorized")


async def test_untrusted_loopback_needs_the_token_too(settings: Settings) -> None:
    # A local reverse proxy makes every caller look like loopback.
    untrusted = {"admin_token": TOKEN, "metrics_loopback_trusted": False}
    async with metrics_status(settings, "127.0.0.1", **untrusted) as proxied:
        assert_error(proxied, 401, "unauthorized")
    async with metrics_status(settings, "127.0.0.1", TOKEN, **untrusted) as operator:
        assert operator.status_code == 200


def test_the_environment_turns_loopback_trust_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHIN_METRICS_LOOPBACK_TRUSTED", "false")
    assert Settings.load().metrics_loopback_trusted is False
    monkeypatch.delenv("BATCHIN_METRICS_LOOPBACK_TRUSTED")
    assert Settings.load().metrics_loopback_trusted is True
