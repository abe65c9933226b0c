"""The `TranscriptionRunner` the API process holds for an embedded speech-to-text engine
(faster-whisper): decoding in its worker process (hosted.py), so neither its CPU threads nor the GIL
it takes between them slow the API process's event loop."""

from __future__ import annotations

from typing import TYPE_CHECKING

from batchin.models.catalog import CatalogEntry
from batchin.models.hosted import HostedRunner
from batchin.models.transcription import TranscribeParams, Transcript

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["HostedTranscriptionRunner"]


class HostedTranscriptionRunner(HostedRunner):
    ATTRIBUTES = ("english_only", "languages")

    def __init__(self, entry: CatalogEntry, target: str) -> None:
        super().__init__(entry, target)
        self.english_only = bool(entry.engine_options.get("english_only", False))
        self.languages: frozenset[str] = frozenset()

    async def transcribe(self, samples: npt.NDArray[np.float32], params: TranscribeParams) -> Transcript:
        transcript: Transcript = await self._call("transcribe", samples, params)
        return transcript
