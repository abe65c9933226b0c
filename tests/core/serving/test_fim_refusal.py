"""`suffix` on a model without fill-in-the-middle is a 400 that names the models that take it (those
the caller's key may call), so a caller learns where to send it instead."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from batchin.config import Settings
from batchin.errors import InvalidRequest
from batchin.protocol.text import CompletionRequest
from batchin.services import Services
from tests.conftest import MakeUser
from tests.text_fixtures import context_for, scripted_services

CATALOG = """
[models.plain]
kind = ["chat", "completion"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.coder]
kind = ["completion"]
engine = "scripted"
licence = "MIT"
context_length = 64
engine_options = { fim = true }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }
fim = { prefix = "<pre>", suffix = "<suf>", middle = "<mid>" }
"""
REQUEST = CompletionRequest(model="plain", prompt="def f(", suffix="):\n", max_tokens=4)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings, catalog=CATALOG) as built:
        yield built


async def refusal(services: Services, make_user: MakeUser) -> InvalidRequest:
    ctx = await context_for(services, await make_user())
    with pytest.raises(InvalidRequest) as caught:
        await services.inference.start_completion(ctx, REQUEST)
    assert caught.value.param == "suffix"
    return caught.value


async def test_the_refusal_names_a_model_with_fim(services: Services, make_user: MakeUser) -> None:
    error = await refusal(services, make_user)
    assert "Model 'plain' has no fill-in-the-middle support" in str(error)
    assert "use a model with it: coder" in str(error)
