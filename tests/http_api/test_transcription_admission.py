"""A transcription is admitted before its upload is decoded: a caller the limits or the ledger will
refuse gets its 429 or 402 whatever the file holds, and the decoder never runs for it (a spy on the
decoder counts its calls); the same garbage from a caller who may call is the decoder's 400."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

import batchin.core.media.audio as audio_service
from batchin.app import build_services
from batchin.config import RegionLimit, Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from batchin.store.tables import reservations
from tests.audio_fixtures import WHISPER_TINY_EN
from tests.conftest import MakeUser, assert_error, bearer
from tests.db_reset import empty_tables
from tests.text_fixtures import asgi_client, logs_of

pytestmark = pytest.mark.slow

GARBAGE = b"\x00not audio at all\xff" * 64


@pytest.fixture
async def services(settings: Settings, model_registry: ModelRegistry) -> AsyncIterator[Services]:
    """One transcription a minute in the default region (for every caller together)."""
    limit = RegionLimit(region=settings.region, model=WHISPER_TINY_EN, rpm=1)
    built = await build_services(
        settings.model_copy(update={"region_limits": [limit]}), registry=model_registry
    )
    try:
        yield built
    finally:
        await empty_tables(built)
        await built.close()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the uploads the transcription service decoded."""
    calls: list[int] = []
    real = audio_service.decode_audio

    def spy(data: bytes, **options: Any) -> Any:
        calls.append(len(data))
        return real(data, **options)

    monkeypatch.setattr(audio_service, "decode_audio", spy)
    return calls


async def transcribe(client: httpx2.AsyncClient, key: str, audio: bytes = GARBAGE) -> httpx2.Response:
    return await client.post(
        "/v1/audio/transcriptions",
        data={"model": WHISPER_TINY_EN},
        files={"file": ("speech.wav", audio, "application/octet-stream")},
        headers=bearer(key),
    )


async def held(services: Services, user: UserCreated) -> int:
    query = select(func.count()).where(reservations.c.user_id == user.id, reservations.c.status == "held")
    async with services.database.read() as conn:
        return int(await conn.scalar(query) or 0)


async def test_a_caller_without_credit_gets_402_and_nothing_is_decoded(
    services: Services, make_user: MakeUser, decodes: list[int]
) -> None:
    broke = await make_user(credit_cents=0)
    async with asgi_client(services) as client:
        assert_error(await transcribe(client, broke.api_key), 402, "payment_required")
    assert decodes == []
    assert await logs_of(services, broke) == []
    assert await held(services, broke) == 0


async def test_a_key_whose_budget_is_spent_gets_402_and_nothing_is_decoded(
    services: Services, decodes: list[int]
) -> None:
    capped = await services.accounts.create_user(
        "capped@example.com", "Capped", 1_000, monthly_budget_cents=0
    )
    async with asgi_client(services) as client:
        assert_error(await transcribe(client, capped.api_key), 402, "payment_required")
    assert decodes == []


async def test_past_the_region_limit_it_is_429_and_nothing_is_decoded(
    services: Services, make_user: MakeUser, decodes: list[int]
) -> None:
    first, second = await make_user(), await make_user()
    async with asgi_client(services) as client:
        # The limit's one call this minute: admitted, so its garbage is decoded, and refused as such.
        refused = assert_error(await transcribe(client, first.api_key), 400, "invalid_request")
        assert refused["param"] == "file"
        assert decodes == [len(GARBAGE)]
        limited = await transcribe(client, second.api_key)
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert decodes == [len(GARBAGE)]
    assert await logs_of(services, first) == await logs_of(services, second) == []


async def test_past_the_key_limit_it_is_429_and_nothing_is_decoded(
    services: Services, decodes: list[int]
) -> None:
    slow = await services.accounts.create_user("slow@example.com", "Slow", 1_000, rate_limit_rpm=1)
    async with asgi_client(services) as client:
        assert (await client.get("/v1/usage/summary", headers=bearer(slow.api_key))).status_code == 200
        assert_error(await transcribe(client, slow.api_key), 429, "rate_limited")
    assert decodes == []
