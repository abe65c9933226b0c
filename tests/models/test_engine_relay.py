"""The relay of `serve --workers N` (models/engine_relay.py): API processes' registries attach to
the engines one owning registry hosts, so each model's worker runs once whoever calls it (the rate
limiter they share beside it: tests/test_shared_limiter.py)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import pytest

from batchin.models.engine_relay import EngineRelay
from batchin.models.hosted_text import HostedTextRunner
from batchin.models.registry import HOSTED, ModelRegistry
from tests.models.test_hosted_idle_unload import chat
from tests.text_fixtures import SCRIPTED_ENGINES, scripted_registry

pytestmark = pytest.mark.slow

CATALOG = """
[models.shared]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 64
status = "always_on"
engine_options = { tokens = ["o", "k"] }
pricing = { input_per_1m = 1, output_per_1m = 1 }
"""
HOSTED_SCRIPTED = {"scripted": HOSTED["llama_cpp"]}


@pytest.fixture
async def relay() -> AsyncIterator[tuple[EngineRelay, ModelRegistry]]:
    folder = Path(tempfile.mkdtemp(prefix="relay-test-"))  # a Unix socket path must stay short
    owner = scripted_registry(CATALOG, hosted=HOSTED_SCRIPTED)
    await owner.start()
    served = EngineRelay(folder / "relay.sock", owner.runner)
    yield served, owner
    await served.close()
    await owner.close()
    shutil.rmtree(folder, ignore_errors=True)


def attached(relay: EngineRelay) -> ModelRegistry:
    return ModelRegistry(
        scripted_registry(CATALOG).catalog,
        engines=SCRIPTED_ENGINES,
        hosted=HOSTED_SCRIPTED,
        relay=relay.address,
    )


async def test_api_registries_share_the_owners_engine_worker(
    relay: tuple[EngineRelay, ModelRegistry],
) -> None:
    served, owner = relay
    owned = await owner.runner("shared")
    assert isinstance(owned, HostedTextRunner)
    assert owned.worker is not None
    engine_pid = owned.worker.pid
    api = [attached(served), attached(served)]
    try:
        for registry in api:
            await registry.start()
            runner = await registry.runner("shared")
            assert isinstance(runner, HostedTextRunner)
            assert await chat(runner) == "ok"
            assert runner.worker is not None
            assert runner.worker.pid == engine_pid  # the owner's worker, not one of its own
            assert runner.context_length == 64  # attributes copied from the owner's runner
        assert owned.worker.pid == engine_pid
    finally:
        for registry in api:
            await registry.close()
    # Closing an API registry detaches it; the owner's engine keeps serving.
    assert await chat(owned) == "ok"


async def test_a_peer_without_the_key_is_refused_and_the_relay_keeps_serving(
    relay: tuple[EngineRelay, ModelRegistry],
) -> None:
    served, _ = relay
    path = served.address[0]
    with pytest.raises(AuthenticationError):
        await asyncio.to_thread(Client, path, family="AF_UNIX", authkey=b"not the key")
    registry = attached(served)
    try:
        await registry.start()
        # The accept thread outlived the refused peer (before, nobody accepted: the attach blocked
        # until pytest-timeout ended the test).
        runner = await registry.runner("shared")
        assert await chat(runner) == "ok"
    finally:
        await registry.close()
