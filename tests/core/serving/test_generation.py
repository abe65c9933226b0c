"""Buffered generations: a stalled reader is dropped without holding up anyone else, and a reader that
is slow but within the timeout gets every token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from batchin.config import Settings
from batchin.core.serving.generation import SlowConsumer, TextGeneration
from batchin.models.base import TextDelta
from batchin.protocol.text import ChatCompletionRequest
from batchin.services import Services
from tests.conftest import MakeUser
from tests.text_fixtures import context_for, cost_units, logs_of, runner_of, scripted_services

TOKENS = [f" w{i}" for i in range(20)]

CATALOG = f"""
[models.stalled]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 256
engine_options = {{ tokens = {json.dumps(TOKENS)}, delay = 0.005 }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}

[models.fast]
kind = ["chat"]
engine = "scripted"
licence = "MIT"
context_length = 256
engine_options = {{ tokens = {json.dumps(TOKENS)}, delay = 0.002 }}
pricing = {{ input_per_1m = 1.5, output_per_1m = 3 }}
"""

BUFFER = 2
STALL_TIMEOUT = 0.5


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(
        settings,
        catalog=CATALOG,
        stream_buffer_chunks=BUFFER,
        slow_consumer_timeout_seconds=STALL_TIMEOUT,
    ) as built:
        yield built


def chat(model: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(model=model, messages=[{"role": "user", "content": "count to twenty"}])


async def test_a_stalled_reader_is_dropped_and_pays_for_what_was_made(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    started = await services.inference.start_chat(await context_for(services, user), chat("stalled"))
    reader = aiter(started.generation)
    assert (await anext(reader)).text == " w0"
    await asyncio.wait_for(started.generation.wait(), timeout=5)  # the reader stalls from here on

    runner = await runner_of(services, "stalled")
    [call] = runner.calls
    assert call.outcome == "cancelled"
    # one read, BUFFER buffered, and the one that found the buffer full
    assert call.produced == 1 + BUFFER + 1
    [log] = await logs_of(services, user)
    assert log.status == "cancelled"
    assert (log.input_tokens, log.output_tokens) == (3, call.produced)
    assert log.cost_micro_cents == cost_units(3, call.produced)
    await reader.aclose()  # type: ignore[attr-defined]


async def test_a_dropped_reader_gets_the_buffered_tokens_then_slow_consumer(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    started = await services.inference.start_chat(await context_for(services, user), chat("stalled"))
    reader = aiter(started.generation)
    await anext(reader)
    await asyncio.wait_for(started.generation.wait(), timeout=5)
    rest: list[str] = []

    async def drain() -> None:
        async for delta in reader:
            rest.append(delta.text)

    with pytest.raises(SlowConsumer):
        await drain()
    assert rest == TOKENS[1 : 1 + BUFFER]


async def test_a_stalled_reader_does_not_hold_up_a_reader_of_another_model(
    services: Services, make_user: MakeUser
) -> None:
    stalled_user, fast_user = await make_user(), await make_user()
    stalled = await services.inference.start_chat(await context_for(services, stalled_user), chat("stalled"))
    stalled_reader = aiter(stalled.generation)
    await anext(stalled_reader)

    fast = await services.inference.start_chat(await context_for(services, fast_user), chat("fast"))
    received = [delta.text async for delta in fast.generation if delta.text]

    assert received == TOKENS
    assert fast.generation.stats.finish_reason == "stop"
    assert not (await runner_of(services, "stalled")).calls[0].ended.is_set()  # still stalled meanwhile
    [log] = await logs_of(services, fast_user)
    assert (log.status, log.output_tokens) == ("succeeded", len(TOKENS))
    await asyncio.wait_for(stalled.generation.wait(), timeout=5)
    await stalled_reader.aclose()  # type: ignore[attr-defined]


async def test_a_slow_reader_within_the_timeout_gets_every_token_in_order(
    services: Services, make_user: MakeUser
) -> None:
    user = await make_user()
    started = await services.inference.start_chat(await context_for(services, user), chat("fast"))
    received: list[str] = []
    async for delta in started.generation:
        if delta.text:
            received.append(delta.text)
        await asyncio.sleep(0.01)  # slower than the engine, well within the stall timeout
    assert received == TOKENS
    [log] = await logs_of(services, user)
    assert (log.status, log.output_tokens) == ("succeeded", len(TOKENS))


async def test_the_end_never_displaces_a_buffered_delta() -> None:
    generation = TextGeneration(buffer_size=1, stall_timeout=5, prompt_tokens=0)

    async def produce(gen: TextGeneration, admitted: asyncio.Future[None]) -> None:
        gen.admitted(admitted, 0.0)
        await gen.push(TextDelta("a"))
        await gen.push(TextDelta("b", finish_reason="stop"))  # waits until the reader took "a"

    await generation.start(produce)
    reader = aiter(generation)
    first = await anext(reader)
    await generation.wait()  # the producer has ended with "b" filling the buffer
    rest = [delta async for delta in reader]
    assert [first, *rest] == [TextDelta("a"), TextDelta("b", finish_reason="stop")]


async def test_push_nowait_hands_over_only_while_there_is_room() -> None:
    generation = TextGeneration(buffer_size=1, stall_timeout=5, prompt_tokens=0)
    handed: list[bool] = []

    async def produce(gen: TextGeneration, admitted: asyncio.Future[None]) -> None:
        gen.admitted(admitted, 0.0)
        handed.append(gen.push_nowait(TextDelta("a")))
        handed.append(gen.push_nowait(TextDelta("b")))  # full: not taken
        await gen.push(TextDelta("b"))  # waits until the reader took "a"

    await generation.start(produce)
    assert [delta.text async for delta in generation] == ["a", "b"]
    assert handed == [True, False]
    assert generation.stats.first_token_at is not None  # stamped on the first token handed over


async def test_batches_hand_over_what_was_buffered_together_and_count_until_the_next() -> None:
    generation = TextGeneration(buffer_size=2, stall_timeout=5, prompt_tokens=0)
    held = asyncio.Event()
    handed: list[bool] = []

    async def produce(gen: TextGeneration, admitted: asyncio.Future[None]) -> None:
        gen.admitted(admitted, 0.0)
        handed.extend([gen.push_nowait(TextDelta("a")), gen.push_nowait(TextDelta("b"))])
        await held.wait()
        handed.append(gen.push_nowait(TextDelta("c")))  # the held batch still fills the buffer
        await gen.push(TextDelta("c"))  # room once the reader comes back for more

    await generation.start(produce)
    reader = generation.batches()
    first = await anext(reader)
    held.set()
    await asyncio.sleep(0)  # the producer tries while the reader holds its batch
    rest = [batch async for batch in reader]
    assert [[delta.text for delta in batch] for batch in [first, *rest]] == [["a", "b"], ["c"]]
    assert handed == [True, True, False]


async def _ended_with_epilogue(ran: list[str]) -> TextGeneration:
    generation = TextGeneration(buffer_size=2, stall_timeout=5, prompt_tokens=0)

    async def produce(gen: TextGeneration, admitted: asyncio.Future[None]) -> None:
        gen.admitted(admitted, 0.0)
        await gen.push(TextDelta("a", finish_reason="stop"))
        gen.set_epilogue(lambda: ran.append("epilogue"))

    await generation.start(produce)
    return generation


async def test_the_epilogue_runs_once_when_the_reading_ends() -> None:
    ran: list[str] = []
    generation = await _ended_with_epilogue(ran)
    texts = []
    async for delta in generation:
        texts.append(delta.text)
        assert ran == []  # the reader has the output before the call's records are made
    assert (texts, ran) == (["a"], ["epilogue"])
    await asyncio.sleep(0)  # the loop's turn for an epilogue nobody ran: nothing left to run
    await generation.aclose()
    assert ran == ["epilogue"]


async def test_a_held_epilogue_is_the_readers_to_run_after_its_answer() -> None:
    ran: list[str] = []
    generation = await _ended_with_epilogue(ran)
    generation.hold_epilogue()
    assert [delta.text async for delta in generation] == ["a"]
    await generation.aclose()
    assert ran == []  # the reading has ended: the answer is the reader's to send first
    generation.run_epilogue()
    generation.run_epilogue()
    assert ran == ["epilogue"]


async def test_an_epilogue_no_reader_runs_runs_on_the_loop() -> None:
    ran: list[str] = []
    generation = TextGeneration(buffer_size=2, stall_timeout=5, prompt_tokens=0)

    async def refused(gen: TextGeneration, admitted: asyncio.Future[None]) -> None:
        gen.set_epilogue(lambda: ran.append("epilogue"))
        raise SlowConsumer("refused before it opened")  # any refusal: the caller gets it

    with pytest.raises(SlowConsumer):
        await generation.start(refused)
    await asyncio.sleep(0)
    assert ran == ["epilogue"]
