"""Fill-in-the-middle out of the box: `/v1/completions` with `suffix` on the built-in
Qwen2.5-Coder-0.5B-Instruct, whose GGUF is assembled from six packages and verified on first load
(slow: one load per session, through the shared model_registry)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from batchin.models.registry import ModelRegistry
from batchin.models.weights import sha256_file
from tests.conftest import MakeUser, assert_error, bearer

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-coder-0.5b-instruct"
SMOLLM2 = "smollm2-135m-instruct"
PREFIX = "def add(a, b):\n    "
SUFFIX = "\n\nprint(add(2, 3))\n"


async def test_fim_fills_in_a_sensible_middle(client: httpx2.AsyncClient, make_user: MakeUser) -> None:
    user = await make_user()
    body = {"model": QWEN, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 12, "temperature": 0}
    response = await client.post("/v1/completions", json=body, headers=bearer(user.api_key), timeout=240)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["model"] == QWEN
    middle = result["choices"][0]["text"]
    # The body that makes the suffix's call print 5: the first line the model writes.
    assert middle.strip().splitlines()[0].replace(" ", "") in ("returna+b", "returnb+a"), middle
    assert 0 < result["usage"]["completion_tokens"] <= 12


async def test_the_assembled_gguf_is_the_catalogs(model_registry: ModelRegistry) -> None:
    await model_registry.runner(QWEN)  # loaded once for the session (by the test above when run)
    entry = model_registry.entry(QWEN)
    # The session registry's folder for derived files is the default data dir's models/.
    assembled = Path("data") / "models" / QWEN / "model.gguf"
    assert assembled.stat().st_size == 491_400_064
    assert sha256_file(assembled) == entry.engine_options["gguf_sha256"]


async def test_a_suffix_on_a_model_without_fim_names_one_with_it(
    client: httpx2.AsyncClient, make_user: MakeUser
) -> None:
    user = await make_user()
    body = {"model": SMOLLM2, "prompt": PREFIX, "suffix": SUFFIX, "max_tokens": 4}
    response = await client.post("/v1/completions", json=body, headers=bearer(user.api_key), timeout=240)
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == "suffix"
    assert QWEN in error["message"]
