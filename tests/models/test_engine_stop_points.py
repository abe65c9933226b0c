"""Each embedded engine stops its work at its stop points once the flag is set (stoppable.py): after
the mini-batch, the sentence, the segment or the denoising step under way, never running to the end.
The engines run in this process here (`in_process`), so the test hands the work a flag that sets
itself after a given number of checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from batchin.models.catalog import Catalog, load_catalog
from batchin.models.images import DiffusersImageRunner, ImageParams
from batchin.models.registry import ModelRegistry
from batchin.models.speech import PiperRunner, SpeechAudio
from batchin.models.stoppable import StopFlag, WorkStopped
from batchin.models.transcription import TranscribeParams, WhisperRunner
from tests.audio_fixtures import E5, MINILM, PIPER, SENTENCE, WHISPER_TINY_EN, spoken
from tests.media_fixtures import IMAGE_MODEL

pytestmark = pytest.mark.slow


class StopAfter(StopFlag):
    """A flag that sets itself at its `n`-th check: the caller went away after `n - 1` units."""

    __slots__ = ("checks", "n")

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.checks = n, 0

    def check(self) -> None:
        self.checks += 1
        if self.checks >= self.n:
            self.set()
        super().check()


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[ModelRegistry]:
    default = load_catalog(None)
    entries = []
    for model in (MINILM, E5, PIPER, WHISPER_TINY_EN, IMAGE_MODEL):
        entry = default.get(model)
        assert entry is not None
        entries.append(
            entry.model_copy(update={"engine_options": {**entry.engine_options, "in_process": True}})
        )
    registry = ModelRegistry(Catalog(source="stop-points", entries=tuple(entries)))
    try:
        yield registry
    finally:
        await registry.close()


@pytest.mark.parametrize(("model", "per_check"), [(MINILM, 64), (E5, 32)])
async def test_embeddings_stop_after_the_batch_under_way(
    engines: ModelRegistry, model: str, per_check: int
) -> None:
    runner: Any = await engines.runner(model)
    texts = [f"sentence number {i}" for i in range(per_check * 5)]
    stop = StopAfter(3)
    with pytest.raises(WorkStopped):
        runner._embed(texts, stop)
    assert stop.checks == 3  # two batches embedded, the third never started


async def test_embeddings_in_batches_equal_one_call_over_all_inputs(engines: ModelRegistry) -> None:
    runner: Any = await engines.runner(MINILM)
    texts = [("a longer sentence " * (i % 7)) + str(i) for i in range(150)]
    whole = await runner.embed(texts)
    singles = np.stack([(await runner.embed([t]))[0] for t in texts[:5]])
    np.testing.assert_allclose(whole[:5], singles, atol=1e-5)


async def test_speech_stops_after_the_sentence_under_way(engines: ModelRegistry) -> None:
    runner = await engines.runner(PIPER)
    assert isinstance(runner, PiperRunner)
    text = " ".join(f"This is sentence {i}." for i in range(6))
    stop = StopAfter(2)
    with pytest.raises(WorkStopped):
        runner._synthesize(text, 0, 1.0, stop)
    assert stop.checks == 2  # two sentences spoken, four never synthesised


async def test_transcription_stops_after_the_segment_under_way(engines: ModelRegistry) -> None:
    runner = await engines.runner(WHISPER_TINY_EN)
    assert isinstance(runner, WhisperRunner)
    speech = await spoken(engines, SENTENCE)
    long = SpeechAudio(np.tile(speech.pcm, 12), speech.sample_rate)  # the sentence 12 times: segments
    samples = _whisper_samples(long)
    stop = StopAfter(1)
    with pytest.raises(WorkStopped):
        runner._transcribe(samples, TranscribeParams(task="transcribe"), stop)
    assert stop.checks == 1  # the first segment decoded, the rest never


async def test_an_image_render_stops_at_the_next_denoising_step(engines: ModelRegistry) -> None:
    runner = await engines.runner(IMAGE_MODEL)
    assert isinstance(runner, DiffusersImageRunner)
    steps = runner.options.num_inference_steps
    assert steps is not None
    assert steps > 2
    stop = StopAfter(2)
    with pytest.raises(WorkStopped):
        runner.render(runner._pipeline, runner.options, ImageParams("a tree", 64, 64), lambda _: stop.check())
    assert stop.checks == 2  # two steps denoised, the others never


def _whisper_samples(audio: SpeechAudio) -> Any:
    from batchin.models.audio_codec import decode_audio
    from tests.audio_fixtures import wav_bytes

    return decode_audio(wav_bytes(audio)).samples
