"""Building blocks for text-inference tests: services over a catalog of scripted runners (the real
inference path, ledger and store; no model), an in-process client, and small helpers.

A test module declares its own `services` fixture from `scripted_services(settings, ...)`, which
overrides the conftest one, so conftest's `app`, `client` and `make_user` run on scripted models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx2

from batchin.app import build_services, create_app
from batchin.config import Settings
from batchin.core.billing.money import UNITS_PER_CENT
from batchin.core.context import CallContext
from batchin.models.catalog import parse_catalog
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.protocol.usage import UsageLog
from batchin.services import Services
from tests.db_reset import empty_tables
from tests.fakes.scripted_runner import ScriptedRunner

SCRIPTED_ENGINES = {"scripted": "tests.fakes.scripted_runner:ScriptedRunner"}

# Prices chosen so that a token is an exact number of ledger units: 150 in, 300 out.
INPUT_UNITS_PER_TOKEN = 150
OUTPUT_UNITS_PER_TOKEN = 300

CATALOG = """
[models.scripted-chat]
kind = ["chat", "completion"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
max_concurrency = 1
queue_size = 1
engine_options = { tokens = ["Hello", ",", " world", "!"], delay = 0.002 }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.scripted-faulty]
kind = ["chat", "completion"]
engine = "scripted"
licence = "MIT"
context_length = 64
engine_options = { tokens = ["a", "b", "c", "d"], fail_after = 2 }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.scripted-long]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 4096
engine_options = { tokens = LONG_TOKENS, delay = 0.02 }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.scripted-broken]
kind = ["chat", "completion"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
engine_options = { load_error = "no GPU on this machine" }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }
""".replace("LONG_TOKENS", json.dumps([" t"] * 30))


def cost_units(prompt_tokens: int, completion_tokens: int) -> int:
    return prompt_tokens * INPUT_UNITS_PER_TOKEN + completion_tokens * OUTPUT_UNITS_PER_TOKEN


def scripted_registry(
    catalog: str = CATALOG,
    *,
    engines: Mapping[str, str] = SCRIPTED_ENGINES,
    hosted: Mapping[str, str] | None = None,
    cny_per_usd: Decimal | None = None,
) -> ModelRegistry:
    """`hosted`: engines to run in worker processes (the registry's HOSTED map; none by default);
    `cny_per_usd`: what the app's loader would apply (Settings.cny_per_usd)."""
    parsed = parse_catalog(catalog, source="test", cny_per_usd=cny_per_usd)
    return ModelRegistry(parsed, engines=engines, hosted=hosted or {})


@contextlib.asynccontextmanager
async def scripted_services(
    settings: Settings,
    *,
    catalog: str = CATALOG,
    engines: Mapping[str, str] = SCRIPTED_ENGINES,
    hosted: Mapping[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[Services]:
    """Services on `settings` (with `overrides`) whose registry serves `catalog` by scripted runners."""
    registry = scripted_registry(
        catalog, engines=engines, hosted=hosted, cny_per_usd=overrides.get("cny_per_usd")
    )
    await registry.start()
    built = await build_services(settings.model_copy(update=overrides), registry=registry)
    try:
        yield built
    finally:
        await empty_tables(built)
        await built.close()
        await registry.close()


@contextlib.asynccontextmanager
async def asgi_client(services: Services, *, host: str = "203.0.113.9") -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(services.settings, services)
    transport = httpx2.ASGITransport(app=app, client=(host, 5555))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def runner_of(services: Services, model: str) -> ScriptedRunner:
    runner = await services.registry.runner(model)
    assert isinstance(runner, ScriptedRunner)
    return runner


async def context_for(services: Services, user: UserCreated, **fields: Any) -> CallContext:
    principal = await services.auth.authenticate(user.api_key)
    return CallContext(principal=principal, request_id=f"req_{uuid.uuid4().hex}", **fields)


async def logs_of(services: Services, user: UserCreated) -> list[UsageLog]:
    return await services.usage.list_logs(user.id, limit=500)


async def balance_units(services: Services, user: UserCreated) -> int:
    cents = (await services.accounts.get_user(user.id)).credit_balance_cents
    return int(Decimal(str(cents)) * UNITS_PER_CENT)


async def eventually(condition: Callable[[], bool], *, timeout: float = 5.0) -> None:
    """Wait until `condition()` holds (polling the event loop), or fail."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def sse_data(body: str) -> list[str]:
    """The `data:` payloads of an event stream, in order."""
    return [line[5:].strip() for line in body.splitlines() if line.startswith("data:")]


def sse_json(body: str) -> list[dict[str, Any]]:
    """The JSON events of a stream (everything before `[DONE]`)."""
    data = sse_data(body)
    assert data[-1] == "[DONE]", data
    return [json.loads(item) for item in data[:-1]]
