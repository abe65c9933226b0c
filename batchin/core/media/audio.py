"""Speech, transcriptions and translations over the speech and transcription runners.

Both follow the text path's order: resolve the model and validate everything the caller sent
(voice, language) → flow policy → reserve → admission slot → engine → settle, one usage log per
call with unit `audio_seconds` (whole milliseconds, rounded up).

- Transcription knows its price before the engine runs (the decoded input's length), so the
  reservation is exactly the charge. The upload is decoded only after the flow policy and a check
  that the caller can pay at all (a read; the reservation follows the decoding): a caller refused
  with 429 or 402 costs no decoding, whatever the file holds.
- Speech is billed on the audio it produced, which is known only afterwards: the reservation is an
  upper bound from the text length and speed, and the unused part is released at settlement.
Decoding and encoding run in threads; the engines run on their runners' own threads.

Remote engines (models/remote_audio.py): speech from a TTS upstream streams through (`start_speech`
returns a SpeechStream whose producer task owns the paid call, as a text stream's does) and is
billed on the length of the audio delivered, measured from its bytes — for a caller that leaves
early, of what it received. Transcriptions send the caller's file upstream as uploaded, after the
same local decode that prices them and refuses unreadable audio before anything is reserved.

Each call ends with a signed receipt and a stored trace (serving/served_calls.py): speech hashes
the input text and the audio bytes returned; transcriptions and translations hash the uploaded
audio bytes and the transcript text.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from decimal import Decimal
from typing import cast

from batchin.core.billing.metering import ClientGone, MeteredCall, MeteringService
from batchin.core.billing.money import cost_per_unit
from batchin.core.context import CallContext
from batchin.core.media.audio_inputs import Task, language_for, upload_name, voice_for
from batchin.core.serving.admission import Priority
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.generation import BufferedStream
from batchin.core.serving.model_lookup import prices_for, usable_model
from batchin.core.serving.served_calls import ServedCall, ServedCalls
from batchin.errors import InvalidRequest, ServiceUnavailable
from batchin.models.audio_codec import (
    CONTENT_TYPES,
    AudioDecodeError,
    audio_seconds,
    billable_seconds,
    decode_audio,
    encode_pcm16,
)
from batchin.models.catalog import CatalogEntry
from batchin.models.registry import ModelRegistry
from batchin.models.speech import SpeechRunner, StreamsSpeech
from batchin.models.transcription import TranscribeParams, TranscribesFiles, TranscriptionRunner
from batchin.protocol.audio import (
    DurationUsage,
    SpeechRequest,
    TranscriptionRequest,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)

__all__ = ["AudioService", "SpeechResult", "SpeechStream"]

# Upper bound of speech length per input character at speed 1.0, for the reservation. Ordinary
# prose runs ~0.07 s per character; numbers spelled out ("$1,234,567") run longer. The bound is
# only held, never charged; the rare input that speaks longer is charged at most the bound.
_MAX_SECONDS_PER_CHAR = 0.25
_MIN_SPEECH_SECONDS = 2.0
# Longest input transcribed in one call (an hour of 16 kHz float32 is 230 MB in memory).
MAX_AUDIO_SECONDS = 3600.0
# The shortest audio billed (one millisecond): a caller who cannot pay for it is refused undecoded.
_SHORTEST_SECONDS = 0.001


@dataclass(frozen=True, slots=True)
class SpeechResult:
    audio: bytes
    content_type: str
    seconds: float


class SpeechStream(BufferedStream[bytes]):
    """Audio relayed from a remote upstream as it arrives; `seconds` is set once all of it came."""

    def __init__(self, content_type: str, *, buffer_size: int, stall_timeout: float) -> None:
        super().__init__(buffer_size=buffer_size, stall_timeout=stall_timeout)
        self.content_type = content_type
        self.seconds = 0.0

    async def collect(self) -> bytes:
        return b"".join([chunk async for chunk in self])


_SPEECH = "audio.speech"


class AudioService:
    def __init__(
        self,
        registry: ModelRegistry,
        metering: MeteringService,
        flow: FlowPolicy,
        served: ServedCalls,
        *,
        stream_buffer_chunks: int = 64,
        slow_consumer_timeout: float = 30.0,
    ) -> None:
        self._registry = registry
        self._metering = metering
        self._flow = flow
        self._served = served
        self._buffer = stream_buffer_chunks
        self._stall_timeout = slow_consumer_timeout

    # -- speech ------------------------------------------------------------------------------

    async def speech(
        self, ctx: CallContext, request: SpeechRequest, *, priority: Priority = Priority.INTERACTIVE
    ) -> SpeechResult:
        """The whole audio (a remote model's stream collected)."""
        started = await self.start_speech(ctx, request, priority=priority)
        if isinstance(started, SpeechResult):
            return started
        audio = await started.collect()
        return SpeechResult(audio, started.content_type, started.seconds)

    async def start_speech(
        self, ctx: CallContext, request: SpeechRequest, *, priority: Priority = Priority.INTERACTIVE
    ) -> SpeechResult | SpeechStream:
        """A local model's whole audio, or a remote model's stream, returned once the upstream
        has begun sending audio (its refusals raise here, as errors before any byte)."""
        request.refuse_unsupported()
        entry = usable_model(self._registry, request.model, "speech", ctx.principal)
        runner = await self._registry.runner(entry.id)
        voice = voice_for(entry, runner, request.voice)
        if not isinstance(runner, StreamsSpeech):
            return await self._synthesize(ctx, request, entry, cast(SpeechRunner, runner), voice, priority)
        stream = SpeechStream(
            CONTENT_TYPES[request.response_format],
            buffer_size=self._buffer,
            stall_timeout=self._stall_timeout,
        )

        async def relay(started: SpeechStream, opened: asyncio.Future[None]) -> None:
            await self._relay(ctx, request, entry, runner, voice, priority, started, opened)

        await stream.start(relay)
        return stream

    @staticmethod
    def _bound(price: Decimal, request: SpeechRequest) -> int:
        """The reservation: the longest audio this text could plausibly take, at the asked speed."""
        bound = max(_MIN_SPEECH_SECONDS, len(request.input) * _MAX_SECONDS_PER_CHAR) / request.speed
        return cost_per_unit(round(bound, 3), price)

    async def _relay(
        self,
        ctx: CallContext,
        request: SpeechRequest,
        entry: CatalogEntry,
        runner: StreamsSpeech,
        voice: str,
        priority: Priority,
        stream: SpeechStream,
        opened: asyncio.Future[None],
    ) -> None:
        """The producer of a remote speech stream: the whole paid call, relaying chunks as they come."""
        parts: list[bytes] = []
        async with self._served.call(
            ctx, model_id=entry.id, endpoint=_SPEECH, input=request.input.encode("utf-8")
        ) as served:
            pool = await self._flow.admit(ctx, entry)
            async with (
                self._metering.call(
                    ctx,
                    model=entry.id,
                    endpoint=_SPEECH,
                    max_cost_units=self._bound(_price(entry, ctx), request),
                ) as call,
                pool.slot(priority) as queued_seconds,
            ):
                served.admitted(queued_seconds, call)
                call.begin()
                audio = runner.stream_speech(
                    request.input, voice=voice, speed=request.speed, response_format=request.response_format
                )
                try:
                    async with contextlib.aclosing(audio):
                        async for chunk in audio:
                            if not parts:  # the upstream is sending: the response can start
                                ctx.receipt_headers = served.opening_headers
                                stream.open(opened)
                            parts.append(chunk)
                            await stream.push(chunk)
                except (asyncio.CancelledError, ClientGone):
                    # The caller left: it pays for the audio it was sent, if that much can be read.
                    with contextlib.suppress(AudioDecodeError):
                        await self._bill_speech(call, served, parts, request, runner, _price(entry, ctx))
                    raise
                served.engine_done()
                if not parts:
                    raise ServiceUnavailable(f"The upstream of model {entry.id} sent no audio.")
                try:
                    stream.seconds = await self._bill_speech(
                        call, served, parts, request, runner, _price(entry, ctx)
                    )
                except AudioDecodeError:
                    raise ServiceUnavailable(
                        f"The upstream of model {entry.id} sent audio that is not {request.response_format}."
                    ) from None

    @staticmethod
    async def _bill_speech(
        call: MeteredCall,
        served: ServedCall,
        parts: list[bytes],
        request: SpeechRequest,
        runner: StreamsSpeech,
        price: Decimal,
    ) -> float:
        audio = b"".join(parts)
        seconds = await asyncio.to_thread(
            audio_seconds, audio, request.response_format, pcm_sample_rate=runner.pcm_sample_rate
        )
        call.record(cost_units=cost_per_unit(seconds, price), units=seconds, unit="audio_seconds")
        served.produced(audio, units=seconds, unit="audio_seconds")
        return seconds

    async def _synthesize(
        self,
        ctx: CallContext,
        request: SpeechRequest,
        entry: CatalogEntry,
        runner: SpeechRunner,
        voice: str,
        priority: Priority,
    ) -> SpeechResult:
        price = _price(entry, ctx)
        endpoint = _SPEECH
        async with self._served.call(
            ctx, model_id=entry.id, endpoint=endpoint, input=request.input.encode("utf-8")
        ) as served:
            pool = await self._flow.admit(ctx, entry)
            async with self._metering.call(
                ctx, model=entry.id, endpoint=endpoint, max_cost_units=self._bound(price, request)
            ) as call:
                async with pool.slot(priority) as queued_seconds:
                    served.admitted(queued_seconds, call)
                    call.begin()
                    speech = await runner.synthesize(request.input, voice=voice, speed=request.speed)
                    served.engine_done()
                audio = await asyncio.to_thread(
                    encode_pcm16, speech.pcm, speech.sample_rate, request.response_format
                )
                # Recorded once the audio exists: a caller gone before then pays nothing.
                seconds = billable_seconds(speech.samples, speech.sample_rate)
                call.record(cost_units=cost_per_unit(seconds, price), units=seconds, unit="audio_seconds")
            served.produced(audio, units=seconds, unit="audio_seconds")
        return SpeechResult(audio, CONTENT_TYPES[request.response_format], seconds)

    # -- transcriptions and translations -----------------------------------------------------

    async def transcribe(
        self,
        ctx: CallContext,
        request: TranscriptionRequest,
        audio: bytes,
        *,
        task: Task = "transcribe",
        priority: Priority = Priority.INTERACTIVE,
        filename: str | None = None,
    ) -> TranscriptionVerbose:
        """`filename`: the upload's name, handed to a remote upstream with the file (default: one
        named after the audio's container)."""
        request.refuse_unsupported()
        entry = usable_model(self._registry, request.model, "transcription", ctx.principal)
        runner = cast(TranscriptionRunner | TranscribesFiles, await self._registry.runner(entry.id))
        language = language_for(entry, runner, request.language, task)
        params = TranscribeParams(
            task=task,
            language=language,
            prompt=request.prompt,
            temperature=request.temperature,
            word_timestamps=request.word_timestamps,
        )
        price = _price(entry, ctx)
        endpoint = "audio.transcriptions" if task == "transcribe" else "audio.translations"
        async with self._served.call(ctx, model_id=entry.id, endpoint=endpoint, input=audio) as served:
            # Limits and funds before the upload is decoded: a caller who will be refused (429,
            # 402) costs no decoding. The price, hence the reservation, needs the decoded length.
            pool = await self._flow.admit(ctx, entry)
            await self._metering.check_funds(ctx, cost_per_unit(_SHORTEST_SECONDS, price))
            try:
                decoded = await asyncio.to_thread(decode_audio, audio, max_seconds=MAX_AUDIO_SECONDS)
            except AudioDecodeError as exc:
                raise InvalidRequest(f"The audio file could not be read: {exc}.", param="file") from None
            seconds = billable_seconds(len(decoded.samples), decoded.sample_rate)
            cost = cost_per_unit(seconds, price)
            async with (
                self._metering.call(ctx, model=entry.id, endpoint=endpoint, max_cost_units=cost) as call,
                pool.slot(priority) as queued_seconds,
            ):
                served.admitted(queued_seconds, call)
                call.begin()
                if isinstance(runner, TranscribesFiles):
                    name = filename or upload_name(audio)
                    transcript = await runner.transcribe_file(audio, name, params, seconds=seconds)
                else:
                    transcript = await runner.transcribe(decoded.samples, params)
                served.engine_done()
                call.record(cost_units=cost, units=seconds, unit="audio_seconds")
            served.produced(transcript.text.encode("utf-8"), units=seconds, unit="audio_seconds")
        words = [
            TranscriptionWord(word=w.word, start=w.start, end=w.end)
            for s in transcript.segments
            for w in s.words
        ]
        return TranscriptionVerbose(
            task=task,
            language=transcript.language,
            duration=seconds,
            text=transcript.text,
            segments=[
                TranscriptionSegment(
                    id=s.id,
                    seek=s.seek,
                    start=s.start,
                    end=s.end,
                    text=s.text,
                    tokens=list(s.tokens),
                    temperature=s.temperature,
                    avg_logprob=s.avg_logprob,
                    compression_ratio=s.compression_ratio,
                    no_speech_prob=s.no_speech_prob,
                )
                for s in transcript.segments
            ],
            words=words if request.word_timestamps else None,
            usage=DurationUsage(seconds=seconds),
        )

    # -- shared ------------------------------------------------------------------------------


def _price(entry: CatalogEntry, ctx: CallContext) -> Decimal:
    return prices_for(entry, ctx.principal).per_audio_second or Decimal(0)
