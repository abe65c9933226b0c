"""The ExLlamaV2 adapter against a fake dynamic generator (no GPU); the real engine only on CUDA."""

from __future__ import annotations

import asyncio
import importlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from batchin.errors import InvalidRequest
from batchin.models.base import ChatMessage, ChatParams, CompletionParams, SamplingParams, TextDelta
from batchin.models.catalog import CatalogEntry, parse_catalog
from batchin.models.exllamav2 import ExLlamaV2Parts, ExLlamaV2Runner, finish_reason, job_arguments

EOS = 2
ENTRY = """
[models.exl]
kind = ["chat", "completion"]
engine = "exllamav2"
licence = "Apache-2.0"
context_length = 64
max_concurrency = 4
[models.exl.weights]
path = "/models/exl"
[models.exl.pricing]
input_per_1m = 0.1
output_per_1m = 0.2
"""
FIM = '[models.exl.fim]\nprefix = "<P>"\nsuffix = "<S>"\nmiddle = "<M>"\n'


class FakeIds:
    def __init__(self, text: str) -> None:
        self.text = text
        self.shape = (1, len(text))


class FakeTokenizer:
    eos_token_id = EOS

    def encode(self, text: str, add_bos: bool, encode_special_tokens: bool) -> FakeIds:
        return FakeIds(("^" if add_bos else "") + text)


class FakeSettings:
    temperature = 0.8
    top_k = 50
    top_p = 0.8
    min_p = 0.0
    token_repetition_penalty = 1.025


class FakeJob:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.identifier = kwargs["identifier"]
        self.produced = 0


class FakeGenerator:
    """Each iterate() streams one word per active job; `script` ends a job with a stop token."""

    def __init__(self, words: list[str], stop_after: int | None = None) -> None:
        self.words = words
        self.stop_after = stop_after
        self.active: list[FakeJob] = []
        self.cancelled: list[FakeJob] = []
        self.iterations = 0

    def enqueue(self, job: FakeJob) -> int:
        self.active.append(job)
        return len(self.active)

    def cancel(self, job: FakeJob) -> None:
        if job in self.active:
            self.active.remove(job)
            self.cancelled.append(job)

    def num_remaining_jobs(self) -> int:
        return len(self.active)

    def iterate(self) -> list[dict[str, Any]]:
        time.sleep(0.005)  # a forward pass takes time; lets a cancellation arrive mid-job
        self.iterations += 1
        results = []
        for job in list(self.active):
            word = self.words[job.produced % len(self.words)]
            job.produced += 1
            result: dict[str, Any] = {
                "job": job,
                "stage": "streaming",
                "identifier": job.identifier,
                "eos": False,
            }
            if self.stop_after is not None and job.produced > self.stop_after:
                result.update(eos=True, eos_reason="stop_token", new_tokens=job.produced, text="")
            elif job.produced >= job.kwargs["max_new_tokens"]:
                result.update(eos=True, eos_reason="max_new_tokens", new_tokens=job.produced, text=word)
            else:
                result["text"] = word
            if result["eos"]:
                self.active.remove(job)
            results.append(result)
        return results


def _entry(extra: str = "") -> CatalogEntry:
    return parse_catalog(ENTRY + extra, source="t").entries[0]


async def _runner(generator: FakeGenerator, extra: str = "") -> ExLlamaV2Runner:
    parts = ExLlamaV2Parts(
        generator=generator,
        tokenizer=FakeTokenizer(),
        job_class=FakeJob,
        settings_class=FakeSettings,
        chat_template="{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]",
    )
    runner = ExLlamaV2Runner(_entry(extra), parts=parts)
    await runner.load(None)
    return runner


def _completion(prompt: str = "hello", **sampling: Any) -> CompletionParams:
    return CompletionParams(prompt=prompt, sampling=SamplingParams(**{"max_tokens": 5, **sampling}))


async def _collect(stream: AsyncIterator[TextDelta]) -> list[TextDelta]:
    return [delta async for delta in stream]


def test_greedy_sampling_keeps_only_the_top_token() -> None:
    args = job_arguments(
        SamplingParams(max_tokens=9, temperature=0.0), settings_class=FakeSettings, stop_token_ids=()
    )
    settings = args["gen_settings"]
    assert (settings.top_k, settings.temperature, settings.top_p) == (1, 1.0, 1.0)
    assert settings.token_repetition_penalty == 1.0
    assert args["max_new_tokens"] == 9


def test_sampling_params_map_to_job_arguments() -> None:
    sampling = SamplingParams(max_tokens=20, temperature=0.7, top_p=0.9, stop=("\n\n", "END"), seed=42)
    args = job_arguments(sampling, settings_class=FakeSettings, stop_token_ids=(EOS, 7))
    settings = args["gen_settings"]
    assert (settings.temperature, settings.top_p, settings.top_k, settings.min_p) == (0.7, 0.9, 0, 0.0)
    assert args["seed"] == 42
    assert args["stop_conditions"] == [EOS, 7, "\n\n", "END"]
    assert args["decode_special_tokens"] is False


def test_eos_reasons_map_to_finish_reasons() -> None:
    assert finish_reason({"eos_reason": "max_new_tokens"}) == "length"
    assert finish_reason({"eos_reason": "stop_token"}) == "stop"
    assert finish_reason({"eos_reason": "stop_string"}) == "stop"
    assert finish_reason({"eos_reason": "end_filter"}) == "stop"


async def test_stream_ends_with_length_and_the_generators_token_count() -> None:
    runner = await _runner(FakeGenerator(["a", "b", "c"]))
    prepared = await runner.prepare_completion(_completion(max_tokens=4))
    deltas = await _collect(runner.generate(prepared))
    assert [d.text for d in deltas] == ["a", "b", "c", "a"]
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.prompt_tokens, deltas[-1].usage.completion_tokens) == (6, 4)
    await runner.close()


async def test_stop_token_finishes_with_stop() -> None:
    runner = await _runner(FakeGenerator(["x"], stop_after=2))
    deltas = await _collect(runner.generate(await runner.prepare_completion(_completion(max_tokens=10))))
    assert "".join(d.text for d in deltas) == "xx"
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens == 3
    await runner.close()


async def test_job_is_built_from_the_prepared_prompt() -> None:
    generator = FakeGenerator(["a"])
    runner = await _runner(generator)
    params = ChatParams(
        messages=(ChatMessage("user", "hi"),), sampling=SamplingParams(max_tokens=2, stop=("Z",))
    )
    prepared = await runner.prepare_chat(params)
    assert prepared.payload.text == "[user]hi[assistant]"
    await _collect(runner.generate(prepared))
    assert generator.iterations >= 2
    await runner.close()


async def test_closing_the_stream_cancels_the_job() -> None:
    generator = FakeGenerator(["w"])
    runner = await _runner(generator)
    stream = runner.generate(await runner.prepare_completion(_completion(max_tokens=50)))
    first = await anext(stream)  # type: ignore[arg-type]
    assert first.text == "w"
    await stream.aclose()
    for _ in range(100):
        if generator.cancelled:
            break
        await asyncio.sleep(0.01)
    assert len(generator.cancelled) == 1
    assert generator.active == []
    assert runner.health().extra["active"] == 0
    await runner.close()


async def test_concurrent_requests_share_the_generator() -> None:
    generator = FakeGenerator(["a", "b"])
    runner = await _runner(generator)
    prepared = [await runner.prepare_completion(_completion(max_tokens=n)) for n in (3, 5)]
    results = await asyncio.gather(*(_collect(runner.generate(p)) for p in prepared))
    assert [r[-1].usage.completion_tokens for r in results if r[-1].usage] == [3, 5]
    assert generator.iterations < 8 + 4  # interleaved, not one after the other
    await runner.close()


async def test_suffix_without_fim_tokens_is_refused() -> None:
    runner = await _runner(FakeGenerator(["a"]))
    with pytest.raises(InvalidRequest, match="model exl has no fill-in-the-middle support") as caught:
        await runner.prepare_completion(
            CompletionParams(prompt="a", suffix="b", sampling=SamplingParams(max_tokens=1))
        )
    assert caught.value.param == "suffix"
    await runner.close()


async def test_fim_prompt_uses_the_catalog_tokens() -> None:
    runner = await _runner(FakeGenerator(["a"]), FIM)
    assert runner.supports_fim
    prepared = await runner.prepare_completion(
        CompletionParams(prompt="def f(", suffix="):", sampling=SamplingParams(max_tokens=1))
    )
    assert prepared.payload.text == "^<P>def f(<S>):<M>"
    await runner.close()


async def test_context_overflow_is_refused() -> None:
    runner = await _runner(FakeGenerator(["a"]))
    with pytest.raises(InvalidRequest) as caught:
        await runner.prepare_completion(_completion(max_tokens=60))
    assert caught.value.param == "max_tokens"
    await runner.close()


async def test_without_exllamav2_the_load_fails_with_engine_unavailable() -> None:
    from batchin.models.base import EngineUnavailable

    runner = ExLlamaV2Runner(_entry())
    try:
        importlib.import_module("exllamav2")
    except (ImportError, OSError):
        with pytest.raises(EngineUnavailable, match="exllamav2 cannot be imported"):
            await runner.load(Path("/nonexistent"))
    else:
        pytest.skip("exllamav2 is importable here")


def _cuda() -> bool:
    try:
        torch = importlib.import_module("torch")
        if not torch.cuda.is_available():
            return False
        importlib.import_module("exllamav2")
    except (ImportError, OSError):
        return False
    return True


def _gpu_skip_reason() -> str | None:
    if not _cuda():
        return "needs a CUDA GPU with torch and exllamav2 importable"
    if not os.environ.get("BATCHIN_TEST_EXL2_MODEL_DIR"):
        return "set BATCHIN_TEST_EXL2_MODEL_DIR to an ExLlamaV2-loadable model folder"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_skip_reason() is not None, reason=_gpu_skip_reason() or "")
async def test_real_engine_generates_greedily() -> None:
    folder = os.environ["BATCHIN_TEST_EXL2_MODEL_DIR"]
    entry = parse_catalog(ENTRY.replace("/models/exl", folder).replace("64", "2048"), source="t").entries[0]
    runner = ExLlamaV2Runner(entry)
    await runner.load(Path(folder))
    params = ChatParams(
        messages=(ChatMessage("user", "What is 2 + 2?"),),
        sampling=SamplingParams(max_tokens=16, temperature=0),
    )
    first = await _collect(runner.generate(await runner.prepare_chat(params)))
    second = await _collect(runner.generate(await runner.prepare_chat(params)))
    assert "".join(d.text for d in first) == "".join(d.text for d in second)
    assert first[-1].usage is not None
    assert first[-1].finish_reason in ("stop", "length")
    await runner.close()


async def test_close_fails_requests_in_flight_with_service_unavailable() -> None:
    from batchin.errors import ServiceUnavailable

    runner = await _runner(FakeGenerator(["w"]))
    stream = runner.generate(await runner.prepare_completion(_completion(max_tokens=60 - 6)))
    await anext(stream)  # type: ignore[arg-type]
    await runner.close()
    with pytest.raises(ServiceUnavailable, match="model exl was shut down"):
        async for _ in stream:  # type: ignore[attr-defined]
            pass
    assert runner.health().status == "unavailable"
