"""/v1/images and /v1/images/generations through the official openai SDK and plain HTTP, on the tiny
random diffusers pipeline: exact PNG sizes, both response formats, stored outputs, billing, refusals."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import httpx2
import pytest
from PIL import Image

from batchin.config import Settings
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.media_fixtures import (
    IMAGE_MODEL,
    IMAGE_UNITS,
    VIDEO_MODEL,
    media_registry,
    media_services,
    sdk_client,
)
from tests.served_receipts import assert_served_receipt
from tests.text_fixtures import balance_units, logs_of

pytestmark = pytest.mark.slow


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


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


async def test_sdk_b64_json_gives_pngs_of_the_exact_size(services: Services, user: UserCreated) -> None:
    async with sdk_client(services, user.api_key) as client:
        result = await client.images.generate(
            model=IMAGE_MODEL, prompt="a red fox", size="320x200", n=2, response_format="b64_json"
        )
    assert len(result.data) == 2
    for image in result.data:
        assert image.url is None
        assert image.b64_json is not None
        assert png_size(base64.b64decode(image.b64_json)) == (320, 200)


async def test_sdk_url_is_a_signed_link_and_the_file_stays_its_owners(
    services: Services, client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser
) -> None:
    async with sdk_client(services, user.api_key) as sdk:
        result = await sdk.images.generate(model=IMAGE_MODEL, prompt="a lighthouse", size="256x256")
    assert len(result.data) == 1
    url = result.data[0].url
    assert url is not None
    assert url.startswith("http://testserver/v1/media/file-")
    linked = await client.get(url.removeprefix("http://testserver"))  # no key: the link is enough
    assert linked.status_code == 200
    assert linked.headers["content-type"] == "image/png"
    assert png_size(linked.content) == (256, 256)
    file_id = url.split("/v1/media/", 1)[1].split("?", 1)[0]
    path = f"/v1/files/{file_id}/content"  # the file itself: its owner's key, nobody else's
    owned = await client.get(path, headers=bearer(user.api_key))
    assert (owned.status_code, owned.content) == (200, linked.content)
    other = await make_user()
    assert_error(await client.get(path, headers=bearer(other.api_key)), 404, "not_found")


async def test_seed_json_form_on_v1_images(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": IMAGE_MODEL, "prompt": "A futuristic city at sunrise", "size": "1024x1024"}
    response = await client.post("/v1/images", json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    payload = response.json()
    assert isinstance(payload["created"], int)
    assert [set(k for k, v in item.items() if v is not None) for item in payload["data"]] == [{"url"}]
    assert response.headers["traceparent"].startswith("00-")
    assert response.headers["x-batchin-run-id"]
    assert response.headers["x-request-id"]


async def test_a_generation_gets_a_served_receipt_and_a_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = {"model": IMAGE_MODEL, "prompt": "a lighthouse", "size": "64x64", "n": 2}
    response = await client.post(
        "/v1/images", json={**body, "response_format": "b64_json"}, headers=bearer(user.api_key)
    )
    pngs = b"".join(base64.b64decode(item["b64_json"]) for item in response.json()["data"])
    payload = await assert_served_receipt(
        client, response, user.api_key, input_bytes=b"a lighthouse", output_bytes=pngs
    )
    assert (payload["model_id"], payload["unit"], payload["units_milli"]) == (IMAGE_MODEL, "images", 2000)


async def test_same_seed_same_image(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {
        "model": IMAGE_MODEL,
        "prompt": "a cat",
        "size": "64x64",
        "seed": 7,
        "response_format": "b64_json",
    }
    first = await client.post("/v1/images/generations", json=body, headers=bearer(user.api_key))
    second = await client.post("/v1/images/generations", json=body, headers=bearer(user.api_key))
    other = await client.post(
        "/v1/images/generations", json={**body, "seed": 8}, headers=bearer(user.api_key)
    )
    assert first.json()["data"] == second.json()["data"]
    assert first.json()["data"] != other.json()["data"]


async def test_billed_per_image_with_one_usage_log(
    services: Services, client: httpx2.AsyncClient, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    body = {
        "model": IMAGE_MODEL,
        "prompt": "three boats",
        "size": "64x64",
        "n": 3,
        "response_format": "b64_json",
    }
    response = await client.post("/v1/images/generations", json=body, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    assert before - await balance_units(services, user) == 3 * IMAGE_UNITS
    logs = await logs_of(services, user)
    assert len(logs) == 1
    assert (logs[0].model, logs[0].endpoint, logs[0].status) == (
        IMAGE_MODEL,
        "images.generations",
        "succeeded",
    )


@pytest.mark.parametrize(
    ("change", "status", "code", "param"),
    [
        ({"size": "big"}, 400, "invalid_request", "size"),
        ({"size": "4096x4096"}, 400, "invalid_request", "size"),
        ({"n": 9}, 400, "invalid_request", "n"),
        ({"n": 0}, 400, "invalid_request", "n"),
        ({"prompt": ""}, 400, "invalid_request", "prompt"),
        ({"response_format": "jpeg"}, 400, "invalid_request", "response_format"),
        ({"model": "no-such-model"}, 404, "not_found", "model"),
        ({"model": VIDEO_MODEL}, 400, "invalid_request", "model"),
    ],
)
async def test_bad_input_is_refused_and_not_billed(
    services: Services,
    client: httpx2.AsyncClient,
    user: UserCreated,
    change: dict[str, object],
    status: int,
    code: str,
    param: str,
) -> None:
    before = await balance_units(services, user)
    body = {"model": IMAGE_MODEL, "prompt": "a cat", "size": "64x64", **change}
    response = await client.post("/v1/images/generations", json=body, headers=bearer(user.api_key))
    assert assert_error(response, status, code)["param"] == param
    assert await balance_units(services, user) == before
    assert await logs_of(services, user) == []


async def test_no_credit_is_402_and_nothing_generated(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    poor = await make_user(credit_cents=0)
    body = {"model": IMAGE_MODEL, "prompt": "a cat", "size": "64x64"}
    response = await client.post("/v1/images/generations", json=body, headers=bearer(poor.api_key))
    assert_error(response, 402, "payment_required")


async def test_models_list_says_the_weights_are_random(client: httpx2.AsyncClient) -> None:
    cards = {card["id"]: card for card in (await client.get("/v1/models")).json()["data"]}
    for model in (IMAGE_MODEL, VIDEO_MODEL):
        card = cards[model]
        assert card["description"].startswith("RANDOM WEIGHTS — not a real model")
        assert card["licence"].startswith("random weights — not a real model")
    assert cards[IMAGE_MODEL]["pricing"]["per_image"] == 0.001
    assert cards[IMAGE_MODEL]["kind"] == ["image"]
