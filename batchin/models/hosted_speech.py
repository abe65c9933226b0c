"""The `SpeechRunner` the API process holds for an embedded speech engine (Piper): audio synthesised
in its worker process (hosted.py)."""

from __future__ import annotations

from typing import Any

from batchin.models.catalog import CatalogEntry
from batchin.models.hosted import HostedRunner
from batchin.models.speech import SpeechAudio

__all__ = ["HostedSpeechRunner"]


class HostedSpeechRunner(HostedRunner):
    ATTRIBUTES = ("voices", "default_voice")

    def __init__(self, entry: CatalogEntry, target: str) -> None:
        super().__init__(entry, target)
        self.voices: tuple[str, ...] = ()
        self.default_voice = ""

    async def synthesize(self, text: str, *, voice: str, speed: float) -> SpeechAudio:
        audio: SpeechAudio = await self._call("synthesize", text, voice=voice, speed=speed)
        return audio

    def _health_extra(self) -> dict[str, Any]:
        return {"voices": list(self.voices)}
