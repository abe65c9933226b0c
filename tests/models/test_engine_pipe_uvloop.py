"""The worker pipe under uvloop, the loop uvicorn serves on: uvloop makes a watched descriptor
non-blocking, and a message larger than the pipe's buffer (an image, an uploaded recording) used to
fail half-read, which the API process took for the worker's death (a 503 on every 512x512 image)."""

from __future__ import annotations

import asyncio
import os

import pytest
import uvloop

from batchin.models.catalog import parse_catalog
from batchin.models.hosted import HostedRunner
from batchin.models.registry import ModelRegistry

pytestmark = pytest.mark.slow

CATALOG = """
[models.echo]
kind = ["embedding"]
engine = "echo"
licence = "MIT"
status = "always_on"
pricing = { input_per_1m = 1 }
"""


class HostedEcho(HostedRunner):
    async def echo(self, data: bytes) -> bytes:
        answer: bytes = await self._call("echo", data)
        return answer


async def round_trips() -> list[bool]:
    registry = ModelRegistry(
        parse_catalog(CATALOG, source="test"),
        engines={"echo": "tests.fakes.pipe_echo_runner:EchoRunner"},
        hosted={"echo": "tests.models.test_engine_pipe_uvloop:HostedEcho"},
    )
    await registry.start()
    try:
        runner = await registry.runner("echo")
        assert isinstance(runner, HostedEcho)
        worker = runner.worker
        assert worker is not None
        sent = [os.urandom(size) for size in (10, 70_000, 1_000_000, 8_000_000)]
        answers = await asyncio.gather(*(runner.echo(data) for data in sent))
        assert runner.worker is worker  # no false death along the way
        return [answer == data[::-1] for answer, data in zip(answers, sent, strict=True)]
    finally:
        await registry.close()


def test_large_messages_cross_the_pipe_both_ways_under_uvloop() -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(round_trips()) == [True, True, True, True]
