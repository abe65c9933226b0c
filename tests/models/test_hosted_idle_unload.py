"""`idle_unload_seconds`: a hosted model with no call for that long has its worker process closed
(its memory freed) and says so in its status; the next call starts a new worker and is served."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from batchin.models.base import ChatMessage, ChatParams, SamplingParams
from batchin.models.hosted_text import HostedTextRunner
from batchin.models.registry import HOSTED, ModelRegistry
from tests.text_fixtures import eventually, scripted_registry

pytestmark = pytest.mark.slow

CATALOG = """
[models.napper]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
idle_unload_seconds = 0.5
engine_options = { tokens = ["z", "z"], delay = 0.3 }
pricing = { input_per_1m = 1, output_per_1m = 1 }
"""


@pytest.fixture
async def registry() -> AsyncIterator[ModelRegistry]:
    built = scripted_registry(CATALOG, hosted={"scripted": HOSTED["llama_cpp"]})
    await built.start()
    yield built
    await built.close()


async def chat(runner: HostedTextRunner) -> str:
    params = ChatParams((ChatMessage("user", "hi"),), SamplingParams(max_tokens=8))
    prepared = await runner.prepare_chat(params)
    return "".join([delta.text async for delta in runner.generate(prepared)])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_an_idle_model_is_unloaded_and_loads_again_on_the_next_call(registry: ModelRegistry) -> None:
    runner = await registry.runner("napper")
    assert isinstance(runner, HostedTextRunner)
    first = runner.worker
    assert first is not None

    # A call lasting longer than the idle time keeps the worker: only time without calls counts.
    assert await chat(runner) == "zz"
    assert runner.worker is first

    await eventually(lambda: runner.worker_stats().state == "unloaded", timeout=10)
    assert registry.status("napper").extra["loaded"] is False
    assert registry.status("napper").status == "always_on"
    await eventually(lambda: not alive(first.pid), timeout=10)
    assert runner.worker_stats().pid is None

    assert await chat(runner) == "zz"
    second = runner.worker
    assert second is not None
    assert second.pid != first.pid
    assert registry.status("napper").extra["loaded"] is True
    assert runner.unloads == 1
