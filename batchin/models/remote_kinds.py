"""Engine "remote": the runner that serves a catalog entry's kind from OpenAI-compatible upstreams.
Text (chat, completion) → remote.py; each media kind → its own runner, imported only when a
catalog entry uses it. The catalog allows one media kind per remote entry (catalog.REMOTE_KINDS)."""

from __future__ import annotations

from typing import Any

from batchin.models.catalog import TEXT_KINDS
from batchin.models.engine_wire import resolve

__all__ = ["RUNNERS", "build_remote_runner"]

RUNNERS: dict[str, str] = {
    "text": "batchin.models.remote:RemoteRunner",
    "embedding": "batchin.models.remote_embeddings:RemoteEmbeddingRunner",
    "speech": "batchin.models.remote_audio:RemoteSpeechRunner",
    "transcription": "batchin.models.remote_audio:RemoteTranscriptionRunner",
    "image": "batchin.models.remote_images:RemoteImageRunner",
}


def build_remote_runner(entry: Any) -> Any:
    """The registry's builder for engine "remote" (it calls this with the entry)."""
    media = [kind for kind in entry.kind if kind not in TEXT_KINDS]
    target = RUNNERS[media[0] if media else "text"]
    return resolve(target).from_entry(entry)
