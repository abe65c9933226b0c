"""What a caller sent to the audio endpoints, checked against the model (audio.py): the voice
asked for, the language a transcription is in (and whether the model can translate), and the file
name a remote transcription upstream is given for the uploaded bytes."""

from __future__ import annotations

from typing import Literal

from batchin.errors import InvalidRequest
from batchin.models.catalog import CatalogEntry
from batchin.models.speech import SpeechRunner, StreamsSpeech
from batchin.models.transcription import TranscribesFiles, TranscriptionRunner

__all__ = ["Task", "language_for", "upload_name", "voice_for"]

Task = Literal["transcribe", "translate"]


def voice_for(entry: CatalogEntry, runner: SpeechRunner | StreamsSpeech, requested: str | None) -> str:
    if requested is None or not requested.strip():
        return runner.default_voice
    wanted = requested.strip().lower()
    for voice in runner.voices:
        if voice.lower() == wanted:
            return voice
    raise InvalidRequest(
        f"Voice '{requested}' is not available for model '{entry.id}'; valid voices: "
        f"{', '.join(runner.voices)}.",
        param="voice",
    )


def language_for(
    entry: CatalogEntry, runner: TranscriptionRunner | TranscribesFiles, requested: str | None, task: Task
) -> str | None:
    if task == "translate" and runner.english_only:
        raise InvalidRequest(
            f"Model '{entry.id}' is English-only and cannot translate; use a multilingual model.",
            param="model",
        )
    if requested is None or not requested.strip():
        return None
    language = requested.strip().lower()
    if runner.languages and language not in runner.languages:  # empty: the remote upstream checks
        if runner.english_only:
            message = f"Model '{entry.id}' is English-only; 'language' must be 'en'."
        else:
            message = f"Unknown language '{requested}'; send an ISO-639-1 code such as 'en', 'de' or 'zh'."
        raise InvalidRequest(message, param="language")
    return language


# Leading bytes of the containers callers send → the file name a remote upstream is given (servers
# that pick a decoder by extension need one that matches).
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"RIFF", 0, "audio.wav"),
    (b"fLaC", 0, "audio.flac"),
    (b"OggS", 0, "audio.ogg"),
    (b"ID3", 0, "audio.mp3"),
    (b"\x1a\x45\xdf\xa3", 0, "audio.webm"),
    (b"ftyp", 4, "audio.m4a"),
)


def upload_name(audio: bytes) -> str:
    for magic, offset, name in _SIGNATURES:
        if audio[offset : offset + len(magic)] == magic:
            return name
    if audio[:1] == b"\xff" and audio[1:2] and audio[1] & 0xE0 == 0xE0:  # an MPEG audio frame sync
        return "audio.mp3"
    return "audio"
