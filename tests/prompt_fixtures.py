"""Building blocks for prompt-registry tests: services over scripted runners (the real inference
path, store and ledger, no model) and a chat call through core."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from batchin.app import build_services
from batchin.config import Settings
from batchin.core.context import CallContext
from batchin.core.serving import text_serving
from batchin.models.catalog import parse_catalog
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.protocol.prompts import PromptRegistryUpdateRequest
from batchin.protocol.text import ChatCompletionRequest
from batchin.services import Services
from tests.db_reset import empty_tables

ENGINES = {
    "scripted": "tests.fakes.scripted_runner:ScriptedRunner",
    "echo": "tests.fakes.echo_runner:EchoRunner",
}

# A token costs 150 units in, 300 out (as in text_fixtures), so costs are exact.
CATALOG = """
[models.scripted-chat]
kind = ["chat", "completion"]
engine = "scripted"
licence = "MIT"
context_length = 256
status = "always_on"
max_concurrency = 1
queue_size = 8
engine_options = { tokens = ["Hello", ",", " world", "!"] }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.echo-chat]
kind = ["chat"]
engine = "echo"
licence = "MIT"
context_length = 256
status = "always_on"
max_concurrency = 1
queue_size = 8
pricing = { input_per_1m = 1.5, output_per_1m = 3 }
"""

# Tests that want a verdict on quality alone: latency noise never decides promotion.
GENEROUS_BOUNDS: dict[str, Any] = {"prompt_promotion_max_latency_increase": 1000.0}


@contextlib.asynccontextmanager
async def prompt_services(settings: Settings, **overrides: Any) -> AsyncIterator[Services]:
    registry = ModelRegistry(parse_catalog(CATALOG, source="test"), engines=ENGINES)
    await registry.start()
    built = await build_services(settings.model_copy(update=overrides), registry=registry)
    try:
        yield built
    finally:
        await empty_tables(built)
        await built.close()
        await registry.close()


async def context_for(services: Services, user: UserCreated, prompt_version: str = "default") -> CallContext:
    principal = await services.auth.authenticate(user.api_key)
    return CallContext(
        principal=principal, request_id=f"req_{uuid.uuid4().hex}", prompt_version=prompt_version
    )


async def chat(
    services: Services,
    user: UserCreated,
    system: str | None,
    question: str = "Hi",
    *,
    model: str = "scripted-chat",
    header: str = "default",
    **fields: Any,
) -> tuple[str, CallContext]:
    """One chat call through core (as the HTTP route makes it); returns its text and context."""
    ctx = await context_for(services, user, header)
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": question}
    ]
    body = ChatCompletionRequest.model_validate(
        {"model": model, "messages": messages, "max_tokens": 8, "temperature": 0, **fields}
    )
    started = await services.inference.start_chat(ctx, body)
    try:
        completion = await text_serving.chat_completion(started)
    finally:
        await started.generation.aclose()
    return completion.choices[0].message.content or "", ctx


async def opt_in(services: Services, user: UserCreated, registry_id: str, enabled: bool = True) -> None:
    """Turn the registry's experiments on (or off), as PATCH /v1/prompts/{registry_id} does."""
    ctx = await context_for(services, user)
    request = PromptRegistryUpdateRequest(experiments_enabled=enabled)
    await services.prompts.update_registry(ctx, registry_id, request)
