"""The llama.cpp runner against the real SmolLM2 GGUF, loaded once per session through the registry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from batchin.errors import InvalidRequest
from batchin.models.base import ChatMessage, ChatParams, CompletionParams, SamplingParams, TextDelta
from batchin.models.catalog import load_catalog
from batchin.models.llama_cpp import LlamaCppRunner
from batchin.models.registry import ModelRegistry
from tests.text_fixtures import eventually

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
async def registry() -> AsyncIterator[ModelRegistry]:
    # In process (no HOSTED map): these tests look inside the runner; test_hosted_text.py checks the
    # same model through its worker process.
    built = ModelRegistry(load_catalog(), hosted={})
    await built.start()
    yield built
    await built.close()


@pytest.fixture(scope="session")
async def runner(registry: ModelRegistry) -> LlamaCppRunner:
    found = await registry.text_runner(MODEL)
    assert isinstance(found, LlamaCppRunner)
    return found


def _chat(text: str, **sampling: object) -> ChatParams:
    params = {"max_tokens": 24, "temperature": 0.0, **sampling}
    return ChatParams(messages=(ChatMessage("user", text),), sampling=SamplingParams(**params))  # type: ignore[arg-type]


async def _collect(runner: LlamaCppRunner, params: ChatParams | CompletionParams) -> list[TextDelta]:
    if isinstance(params, ChatParams):
        prepared = await runner.prepare_chat(params)
    else:
        prepared = await runner.prepare_completion(params)
    return [delta async for delta in runner.generate(prepared)]


def _text(deltas: list[TextDelta]) -> str:
    return "".join(delta.text for delta in deltas)


async def test_always_on_model_is_loaded_at_start(registry: ModelRegistry, runner: LlamaCppRunner) -> None:
    health = registry.status(MODEL)
    assert health.status == "always_on"
    assert health.extra["loaded"] is True
    assert runner.context_length == 2048
    assert runner.supports_fim is False


async def test_chat_template_is_the_models_own_and_counts_are_exact(runner: LlamaCppRunner) -> None:
    params = _chat("Name a colour of the sky.")
    prepared = await runner.prepare_chat(params)
    template = runner._template
    llama = runner._llama
    assert template is not None
    assert llama is not None
    rendered = template.render(params.messages)
    assert "<|im_start|>user\nName a colour of the sky.<|im_end|>" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    expected = llama.tokenize(rendered.encode(), add_bos=False, special=True)
    assert prepared.prompt_tokens == len(expected)
    assert prepared.payload.ids == tuple(expected)
    assert expected.count(1) == 3  # <|im_start|> parsed as one special token: system, user, assistant


async def test_greedy_decoding_is_deterministic(runner: LlamaCppRunner) -> None:
    first = await _collect(runner, _chat("What is 2 + 2?"))
    second = await _collect(runner, _chat("What is 2 + 2?"))
    assert _text(first) == _text(second)
    assert _text(first)
    assert first[-1].usage == second[-1].usage


async def test_same_seed_same_sample(runner: LlamaCppRunner) -> None:
    first = await _collect(runner, _chat("Tell me a story.", temperature=1.0, seed=7, max_tokens=12))
    second = await _collect(runner, _chat("Tell me a story.", temperature=1.0, seed=7, max_tokens=12))
    assert _text(first) == _text(second)


async def test_max_tokens_ends_with_length_and_exact_usage(runner: LlamaCppRunner) -> None:
    params = CompletionParams(
        prompt="Once upon a time", sampling=SamplingParams(max_tokens=7, temperature=0.0)
    )
    deltas = await _collect(runner, params)
    last = deltas[-1]
    assert last.finish_reason == "length"
    assert last.usage is not None
    assert last.usage.completion_tokens == 7
    llama = runner._llama
    assert llama is not None
    assert last.usage.prompt_tokens == len(llama.tokenize(b"Once upon a time", add_bos=True, special=True))
    assert all(delta.finish_reason is None for delta in deltas[:-1])


async def test_end_of_generation_token_finishes_with_stop(runner: LlamaCppRunner) -> None:
    deltas = await _collect(runner, _chat("Say hello.", max_tokens=200))
    assert deltas[-1].finish_reason == "stop"
    assert "<|im_end|>" not in _text(deltas)
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens < 200


async def test_stop_string_ends_generation_and_is_not_emitted(runner: LlamaCppRunner) -> None:
    prompt = CompletionParams(prompt="1, 2, 3, 4,", sampling=SamplingParams(max_tokens=24, temperature=0.0))
    free = _text(await _collect(runner, prompt))
    assert len(free) > 6
    stop = free[3:6]
    cut = free.index(stop)
    stopped = CompletionParams(
        prompt="1, 2, 3, 4,", sampling=SamplingParams(max_tokens=24, temperature=0.0, stop=(stop,))
    )
    deltas = await _collect(runner, stopped)
    assert _text(deltas) == free[:cut]
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens < 24


async def test_closing_the_stream_stops_the_decode_thread_promptly(runner: LlamaCppRunner) -> None:
    params = CompletionParams(
        prompt="Write a long essay.", sampling=SamplingParams(max_tokens=1500, temperature=1.0)
    )
    stream = runner.generate(await runner.prepare_completion(params))
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    started = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - started < 2.0
    assert runner._engine_lock.acquire(blocking=False)
    runner._engine_lock.release()
    deltas = await _collect(runner, _chat("Hi", max_tokens=3))
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens <= 3


async def test_a_cancel_stops_the_prompt_mid_evaluation_and_the_next_requests_are_unchanged(
    runner: LlamaCppRunner,
) -> None:
    """A preempted fill call gives the model back during its prompt's evaluation (llama.cpp's abort
    callback), not after it; what comes next is exactly what an undisturbed run gives, with
    `prompt_cache` too (nothing of the aborted prompt is reused)."""
    llama, decoder = runner._llama, runner._decoder
    assert llama is not None
    assert decoder is not None
    question = _chat("What is 2 + 2?", max_tokens=8)
    long_prompt = "word " * 1500  # ~1,500 tokens: seconds of prompt evaluation here
    head = CompletionParams(prompt=long_prompt[:400], sampling=SamplingParams(max_tokens=8, temperature=0.0))
    whole = CompletionParams(prompt=long_prompt, sampling=SamplingParams(max_tokens=4, temperature=0.0))
    # Without the cache, any next request; with it, one whose prompt the aborted one starts with.
    cases = ((False, question), (True, head))
    undisturbed = [_text(await _collect(runner, after)) for _, after in cases]
    try:
        for (prompt_cache, after), expected in zip(cases, undisturbed, strict=True):
            decoder._prompt_cache = prompt_cache
            stream = runner.generate(await runner.prepare_completion(whole))
            first = asyncio.ensure_future(anext(stream))
            await eventually(runner._engine_lock.locked)  # the decode thread is in the prompt
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)  # returns once the thread let go
            # Reset by the abort: a prompt evaluated to its end would have left its ~1,500 tokens.
            assert llama.n_tokens == 0
            assert _text(await _collect(runner, after)) == expected
    finally:
        decoder._prompt_cache = False


async def test_suffix_is_refused_without_fim_tokens(runner: LlamaCppRunner) -> None:
    params = CompletionParams(prompt="def f(", suffix="):\n", sampling=SamplingParams(max_tokens=8))
    with pytest.raises(InvalidRequest, match=f"model {MODEL} has no fill-in-the-middle support") as caught:
        await runner.prepare_completion(params)
    assert caught.value.param == "suffix"


async def test_max_tokens_beyond_the_context_is_refused(runner: LlamaCppRunner) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await runner.prepare_chat(_chat("Hi", max_tokens=2048))
    assert caught.value.param == "max_tokens"


async def test_prompt_beyond_the_context_is_refused(runner: LlamaCppRunner) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await runner.prepare_chat(_chat("word " * 3000, max_tokens=1))
    assert caught.value.param == "messages"
