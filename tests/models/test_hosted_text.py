"""The llama.cpp model through its worker process (the registry's default): the same texts and
counts as the in-process runner, errors that keep their status and parameter, cancellation that
reaches the worker, and priorities where API processes share the worker (`serve --workers`)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from batchin.admission_pool import Priority
from batchin.core.batches.calls import classify
from batchin.errors import InvalidRequest, Preempted
from batchin.models.base import ChatMessage, ChatParams, CompletionParams, SamplingParams, TextDelta
from batchin.models.catalog import load_catalog
from batchin.models.engine_relay import EngineRelay
from batchin.models.hosted_text import HostedTextRunner
from batchin.models.llama_cpp import LlamaCppRunner
from batchin.models.registry import ModelRegistry

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
async def hosted() -> AsyncIterator[HostedTextRunner]:
    registry = ModelRegistry(load_catalog())
    runner = await registry.text_runner(MODEL)
    assert isinstance(runner, HostedTextRunner)
    yield runner
    await registry.close()


@pytest.fixture(scope="module")
async def direct() -> AsyncIterator[LlamaCppRunner]:
    registry = ModelRegistry(load_catalog(), hosted={})
    runner = await registry.text_runner(MODEL)
    assert isinstance(runner, LlamaCppRunner)
    yield runner
    await registry.close()


def _chat(text: str, max_tokens: int = 24) -> ChatParams:
    sampling = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return ChatParams(messages=(ChatMessage("user", text),), sampling=sampling)


async def _collect(
    runner: LlamaCppRunner | HostedTextRunner, params: ChatParams | CompletionParams
) -> list[TextDelta]:
    if isinstance(params, ChatParams):
        prepared = await runner.prepare_chat(params)
    else:
        prepared = await runner.prepare_completion(params)
    return [delta async for delta in runner.generate(prepared)]


async def test_the_engine_runs_in_another_process_at_lower_priority(hosted: HostedTextRunner) -> None:
    worker = hosted.worker
    assert worker is not None
    assert worker.pid != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) > os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert (hosted.context_length, hosted.supports_fim, hosted.max_concurrency) == (2048, False, 1)


async def test_worker_stats_name_the_serving_worker_and_its_resident_memory(hosted: HostedTextRunner) -> None:
    worker = hosted.worker
    assert worker is not None
    stats = hosted.worker_stats()
    assert (stats.model, stats.pid, stats.restarts, stats.state) == (MODEL, worker.pid, 0, "ready")
    assert stats.rss_bytes is not None
    assert stats.rss_bytes > 10 * 1024 * 1024  # the worker holds the model's weights


async def test_chat_texts_and_usage_match_the_in_process_runner(
    hosted: HostedTextRunner, direct: LlamaCppRunner
) -> None:
    params = _chat("What is 2 + 2?")
    served, local = await _collect(hosted, params), await _collect(direct, params)
    assert [d.text for d in served] == [d.text for d in local]
    assert served[-1] == local[-1]


async def test_stop_strings_and_length_match_the_in_process_runner(
    hosted: HostedTextRunner, direct: LlamaCppRunner
) -> None:
    sampling = SamplingParams(max_tokens=16, temperature=0.0, stop=(" 7",))
    params = CompletionParams(prompt="1, 2, 3, 4,", sampling=sampling)
    served, local = await _collect(hosted, params), await _collect(direct, params)
    assert served == local
    assert served[-1].finish_reason == "stop"


async def test_a_context_error_crosses_with_its_parameter(hosted: HostedTextRunner) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await hosted.prepare_chat(_chat("Hi", max_tokens=4000))
    assert caught.value.param == "max_tokens"
    assert "context length of 2048" in caught.value.message


async def test_closing_the_stream_stops_decoding_in_the_worker(hosted: HostedTextRunner) -> None:
    def counting(max_tokens: int) -> CompletionParams:
        return CompletionParams(
            prompt="1, 2, 3, 4,", sampling=SamplingParams(max_tokens=max_tokens, temperature=0.0)
        )

    started = time.perf_counter()
    full = await _collect(hosted, counting(300))
    full_seconds = time.perf_counter() - started
    assert full[-1].finish_reason == "length"  # counting never ends by itself within 300 tokens

    stream = hosted.generate(await hosted.prepare_completion(counting(1500)))
    for _ in range(3):
        await anext(stream)
    await stream.aclose()
    # The worker decodes one request at a time: had the closed stream kept decoding, this call would
    # wait for ~1500 tokens, five times the 300 just measured (a ratio, so a busy machine is fair).
    started = time.perf_counter()
    deltas = await _collect(hosted, _chat("Hi", max_tokens=1))
    assert time.perf_counter() - started < full_seconds / 2
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens == 1


async def test_on_a_shared_engine_a_waiting_interactive_call_preempts_another_processs_fill_call(
    hosted: HostedTextRunner,
) -> None:
    """Two API processes' proxies attached to one engine through the relay: the interactive call
    does not wait for the other's fill generation; the fill call ends with Preempted, which a batch
    task takes as capacity (runs again, no retry used), and the answer is the undisturbed one."""
    folder = Path(tempfile.mkdtemp(prefix="relay-priority-"))  # a Unix socket path must stay short

    async def runner_for(name: str) -> HostedTextRunner:
        return hosted

    relay = EngineRelay(folder / "relay.sock", runner_for)
    processes = [ModelRegistry(load_catalog(), relay=relay.address) for _ in range(2)]
    try:
        fill_side, interactive_side = [await registry.text_runner(MODEL) for registry in processes]
        question = await interactive_side.prepare_chat(_chat("What is 2 + 2?", max_tokens=8))
        undisturbed = [delta async for delta in interactive_side.generate(question)]
        sampling = SamplingParams(max_tokens=1500, temperature=0.0)
        counting = CompletionParams(prompt="1, 2, 3, 4,", sampling=sampling)
        prepared = await fill_side.prepare_completion(counting)
        fill = fill_side.generate(replace(prepared, priority=Priority.FILL, preemptible=True))
        await anext(fill)  # the fill call holds the engine, decoding

        answer = [delta async for delta in interactive_side.generate(replace(question, priority=0))]

        with pytest.raises(Preempted) as caught:
            async for _ in fill:
                pass
        assert [d.text for d in answer] == [d.text for d in undisturbed]
        verdict = classify(caught.value, failures=0, max_retries=3, base_delay=1.0)
        assert (verdict.final, verdict.counts, verdict.status_code) == (False, False, 429)
    finally:
        for registry in processes:
            await registry.close()
        await relay.close()
        shutil.rmtree(folder, ignore_errors=True)
