"""Building blocks for batch tests: services over scripted models with a running batch worker,
and helpers to submit, wait and read back what a batch cost."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

from sqlalchemy import select

from batchin.config import Settings
from batchin.core.billing.metering import scale_cost
from batchin.core.context import CallContext
from batchin.protocol.accounts import UserCreated
from batchin.protocol.batches import TERMINAL_STATUSES, Batch, BatchCreateRequest
from batchin.services import Services
from batchin.store.tables import batch_tasks, usage_logs
from tests.text_fixtures import context_for, cost_units, scripted_services

CHAT = "batch-chat"  # one call at a time, 4 tokens: "Hello, world!"
WIDE = "batch-wide"  # eight at a time
FAULTY = "batch-faulty"  # fails before its first token, every time
DISCOUNTED = "batch-discounted"  # its catalog entry sets batch_discount = 0.2

BATCH_CATALOG = """
[models.batch-chat]
kind = ["chat", "completion"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
max_concurrency = 1
queue_size = 4
engine_options = { tokens = ["Hello", ",", " world", "!"] }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.batch-wide]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
max_concurrency = 8
queue_size = 8
engine_options = { tokens = ["Hello", ",", " world", "!"], delay = 0.001 }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.batch-faulty]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
engine_options = { tokens = ["a", "b"], fail_after = 0 }
pricing = { input_per_1m = 1.5, output_per_1m = 3 }

[models.batch-discounted]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
engine_options = { tokens = ["Hello", ",", " world", "!"] }
pricing = { input_per_1m = 1.5, output_per_1m = 3, batch_discount = 0.2 }
"""

TEXT = "Hello, world!"
# One prompt word is one token; the reply is 4 tokens. At the default batch price (half):
PROMPT = "say hello"
TASK_COST = scale_cost(cost_units(2, 4), Fraction(1, 2))

FAST = {
    "batch_poll_seconds": 0.02,
    "batch_retry_base_seconds": 0.01,
    "batch_claim_chunk": 16,
}


@contextlib.asynccontextmanager
async def batch_services(
    settings: Settings, *, start: bool = True, **overrides: Any
) -> AsyncIterator[Services]:
    """Scripted services with the batch worker running (unless `start=False`)."""
    async with scripted_services(settings, catalog=BATCH_CATALOG, **{**FAST, **overrides}) as services:
        if start:
            await services.batches.start()
        try:
            yield services
        finally:
            await services.batches.stop()  # before scripted_services empties the tables


def chat_task(custom_id: str, model: str = CHAT, content: str = PROMPT, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "model": model,
        "request_body": {"messages": [{"role": "user", "content": content}], **body},
    }


def jsonl_line(custom_id: str, model: str = CHAT, content: str = PROMPT, **fields: Any) -> dict[str, Any]:
    line = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    }
    line.update(fields)
    return line


async def submit(services: Services, user: UserCreated, tasks: list[dict[str, Any]], **fields: Any) -> Batch:
    ctx = await context_for(services, user)
    return await services.batches.submit(ctx, BatchCreateRequest.model_validate({"tasks": tasks, **fields}))


async def caller(services: Services, user: UserCreated) -> CallContext:
    return await context_for(services, user)


async def wait_for(
    services: Services,
    user: UserCreated,
    batch_id: str,
    statuses: frozenset[str] = TERMINAL_STATUSES,
    timeout: float = 30,
) -> Batch:
    """Poll until the batch reaches one of `statuses`; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        batch = await services.batches.get(user.id, batch_id)
        if batch.status in statuses:
            return batch
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(
                f"batch {batch_id} still {batch.status} after {timeout}s: {batch.request_counts}"
            )
        await asyncio.sleep(0.02)


async def task_rows(services: Services, batch_id: str) -> list[Any]:
    async with services.database.read() as conn:
        query = select(batch_tasks).where(batch_tasks.c.batch_id == batch_id).order_by(batch_tasks.c.line)
        return list((await conn.execute(query)).all())


async def usage_of(services: Services, user: UserCreated) -> list[Any]:
    async with services.database.read() as conn:
        query = select(usage_logs).where(usage_logs.c.user_id == user.id)
        return list((await conn.execute(query)).all())


def new_email() -> str:
    return f"{uuid.uuid4().hex[:12]}@example.com"
