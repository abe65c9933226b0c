"""Speech and transcription from remote OpenAI-compatible upstreams: a TTS server (CosyVoice,
Kokoro-FastAPI, …) behind POST {base}/audio/speech, and a Whisper server (vLLM, speaches,
faster-whisper-server, …) behind {base}/audio/transcriptions and /audio/translations.

Speech streams: the upstream's audio bytes, in the format the caller asked for, are handed on as
they arrive (`stream_speech`); closing the stream early drops the upstream connection. Core bills
the audio's length, measured from the bytes once they are all there.

Transcription passes the caller's upload through unchanged as a multipart file (`transcribe_file`)
and asks for `verbose_json`, so every response_format (json, text, srt, vtt, verbose_json) is
rendered here from the upstream's segments, the same as for a local model.

Catalog `engine_options`:
    speech:         voices = ["alloy", …] or { alloy = "upstream-voice", … } (public → upstream
                    name; required), default_voice (default: the first), pcm_sample_rate (what the
                    upstream sends for response_format pcm; default 24000, OpenAI's)
    transcription:  languages = ["en", "de", …] (checked here; unset: the upstream decides),
                    english_only (no translations), response_format ("verbose_json" default;
                    "json" for an upstream without it: the transcript is then one segment)
"""

from __future__ import annotations

import bisect
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from batchin.errors import ServiceUnavailable
from batchin.models.transcription import Segment, TranscribeParams, Transcript, Word
from batchin.models.upstream_client import RemoteConfig, UpstreamClient, remote_config
from batchin.models.upstream_health import describe
from batchin.models.upstream_http import TRANSPORT_ERRORS

__all__ = ["RemoteSpeechRunner", "RemoteTranscriptionRunner"]


def _voice_map(model_id: str, raw: object) -> dict[str, str]:
    if isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
        return {str(v): str(v) for v in raw}
    if isinstance(raw, dict) and raw and all(isinstance(v, str) for v in raw.values()):
        return {str(k): str(v) for k, v in raw.items()}
    raise ValueError(
        f"model {model_id}: engine_options.voices must list voice names or map them to the upstream's"
    )


class RemoteSpeechRunner(UpstreamClient):
    def __init__(
        self, config: RemoteConfig, options: dict[str, object], session: aiohttp.ClientSession | None = None
    ) -> None:
        self._upstream_voices = _voice_map(config.model_id, options.get("voices"))
        self.voices = tuple(self._upstream_voices)
        self.default_voice = str(options.get("default_voice", self.voices[0]))
        if self.default_voice not in self._upstream_voices:
            raise ValueError(
                f"model {config.model_id}: default_voice {self.default_voice!r} is not in voices"
            )
        self.pcm_sample_rate = int(str(options.get("pcm_sample_rate", 24_000)))
        super().__init__(config, session)

    @classmethod
    def from_entry(cls, entry: Any) -> RemoteSpeechRunner:
        return cls(remote_config(entry), dict(entry.engine_options))

    async def stream_speech(
        self, text: str, *, voice: str, speed: float, response_format: str
    ) -> AsyncGenerator[bytes, None]:
        """The audio in `response_format`, chunk by chunk as the upstream sends it. The request is
        sent at the first `anext`, so the upstream's refusals raise there, before any audio."""
        body = {
            "model": self.config.upstream_model,
            "input": text,
            "voice": self._upstream_voices[voice],
            "response_format": response_format,
            "speed": speed,
        }
        connection, upstream = await self.post_json("/audio/speech", body)
        finished = False
        try:
            try:
                while chunk := await connection.read_chunk():
                    yield chunk
            except TRANSPORT_ERRORS as exc:
                self._pool.mark_failed(upstream, f"audio broke off: {describe(exc)}")
                raise ServiceUnavailable(
                    f"The upstream of model {self.config.model_id} broke off the audio."
                ) from exc
            finished = True
        finally:
            # Closed early (the caller went away): drop the connection so the upstream stops.
            if finished:
                connection.release()
            else:
                connection.close()


class RemoteTranscriptionRunner(UpstreamClient):
    def __init__(
        self, config: RemoteConfig, options: dict[str, object], session: aiohttp.ClientSession | None = None
    ) -> None:
        self.english_only = bool(options.get("english_only", False))
        languages = options.get("languages", [])
        if not isinstance(languages, list) or not all(isinstance(code, str) for code in languages):
            raise ValueError(f"model {config.model_id}: engine_options.languages must list language codes")
        # Empty: not checked here, the upstream decides (core reads an empty set that way).
        self.languages = frozenset({"en"} if self.english_only else {code.lower() for code in languages})
        self._format = str(options.get("response_format", "verbose_json"))
        if self._format not in ("verbose_json", "json"):
            raise ValueError(f"model {config.model_id}: engine_options.response_format: verbose_json or json")
        super().__init__(config, session)

    @classmethod
    def from_entry(cls, entry: Any) -> RemoteTranscriptionRunner:
        return cls(remote_config(entry), dict(entry.engine_options))

    async def transcribe_file(
        self, audio: bytes, filename: str, params: TranscribeParams, *, seconds: float
    ) -> Transcript:
        """`audio`: the caller's file as uploaded; `seconds`: its length (for a json-only upstream,
        whose transcript becomes one segment that long)."""
        path = "/audio/transcriptions" if params.task == "transcribe" else "/audio/translations"
        headers = {**self._headers, "Accept": "application/json"}
        response, upstream = await self.post(path, lambda: self._form(audio, filename, params), headers)
        answer = await self.read_json(response, upstream)
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise self.unreadable(upstream, "no transcript text")
        try:
            return _transcript(answer, params, seconds)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.unreadable(upstream, f"segments: {type(exc).__name__}") from exc

    def _form(self, audio: bytes, filename: str, params: TranscribeParams) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("file", audio, filename=filename, content_type="application/octet-stream")
        form.add_field("model", self.config.upstream_model)
        form.add_field("response_format", self._format)
        form.add_field("temperature", str(params.temperature))
        if params.language and params.task == "transcribe":
            form.add_field("language", params.language)
        if params.prompt:
            form.add_field("prompt", params.prompt)
        if self._format == "verbose_json":
            form.add_field("timestamp_granularities[]", "segment")
            if params.word_timestamps:
                form.add_field("timestamp_granularities[]", "word")
        return form


def _transcript(answer: dict[str, Any], params: TranscribeParams, seconds: float) -> Transcript:
    text = str(answer["text"]).strip()
    raw_segments = answer.get("segments")
    if not isinstance(raw_segments, list):  # json only: one segment, the whole audio
        raw_segments = [{"start": 0.0, "end": seconds, "text": text}]
    starts = [float(s["start"]) for s in raw_segments]
    # Words come as one list beside the segments; each goes to the last segment starting before it.
    words: list[list[Word]] = [[] for _ in raw_segments]
    for w in (answer.get("words") or ()) if raw_segments else ():
        word = Word(str(w["word"]), float(w["start"]), float(w["end"]))
        words[max(0, bisect.bisect_right(starts, word.start) - 1)].append(word)
    segments: list[Segment] = []
    for index, s in enumerate(raw_segments):
        start, end = starts[index], float(s["end"])
        segments.append(
            Segment(
                id=int(s.get("id", index)),
                seek=int(s.get("seek", 0)),
                start=start,
                end=end,
                text=str(s["text"]),
                tokens=tuple(int(t) for t in s.get("tokens") or ()),
                temperature=float(s.get("temperature") or 0.0),
                avg_logprob=float(s.get("avg_logprob") or 0.0),
                compression_ratio=float(s.get("compression_ratio") or 0.0),
                no_speech_prob=float(s.get("no_speech_prob") or 0.0),
                words=tuple(words[index]) if params.word_timestamps else (),
            )
        )
    language = answer.get("language") or params.language or ("en" if params.task == "translate" else "")
    return Transcript(text=text, language=str(language), segments=tuple(segments))
