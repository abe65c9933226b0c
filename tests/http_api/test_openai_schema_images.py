"""/v1/images/generations responses, both response formats, validated against OpenAI's published
OpenAPI document (tests/openai_reference.py), on the tiny random diffusers pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.media_fixtures import IMAGE_MODEL, media_registry, media_services
from tests.openai_reference import response_schema, violations

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    return "sqlite"  # response shapes do not depend on the store


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


@pytest.fixture
async def services(settings: Settings, registry: ModelRegistry) -> AsyncIterator[Services]:
    async with media_services(settings, registry, worker=False) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=1_000)


async def generate(client: httpx2.AsyncClient, user: UserCreated, **body: Any) -> dict[str, Any]:
    payload = {"model": IMAGE_MODEL, "prompt": "a red fox", "size": "64x64", **body}
    response = await client.post("/v1/images/generations", json=payload, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize("response_format", ["url", "b64_json"])
async def test_images_match_openais_schema(
    client: httpx2.AsyncClient, user: UserCreated, response_format: str
) -> None:
    body = await generate(client, user, response_format=response_format, n=2, size="1024x1024")
    assert violations(body, response_schema("/images/generations", "post")) == []
    assert [set(image) for image in body["data"]] == [{response_format}] * 2


async def test_size_is_the_one_place_we_leave_openais_schema(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    # OpenAI's schema enumerates the three sizes its models make; we render any WIDTHxHEIGHT and
    # say which (MCP's generate_image reports it too), so other sizes break that enum on purpose.
    odd = await generate(client, user, size="64x64")
    assert violations(odd, response_schema("/images/generations", "post")) == [
        "size: '64x64' is not one of ['1024x1024', '1024x1536', '1536x1024']"
    ]
    named = await generate(client, user, size="1024x1024", response_format="b64_json")
    assert violations(named, response_schema("/images/generations", "post")) == []
