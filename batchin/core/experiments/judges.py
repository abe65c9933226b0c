"""Judges: how alike a candidate's replayed output is to the baseline's, and whether that passes.

- `deterministic_replay`: pass on an exact match, or a match after normalising (case folded,
  whitespace collapsed, surrounding punctuation dropped). Replays run greedily with a fixed seed,
  so an equivalent prompt gives the same text. The similarity of a mismatch is difflib's ratio of
  the normalised texts, so the regression's average still says how far apart they were.
- `embedding_similarity`: the cosine of the two outputs' embeddings (one embeddings call, billed
  like any call, at `fill` priority); pass at or above `prompt_similarity_threshold`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from batchin.core.context import CallContext
from batchin.core.media.embeddings import EmbeddingsService
from batchin.core.serving.admission import Priority
from batchin.protocol.embeddings import EmbeddingRequest

__all__ = ["DeterministicReplayJudge", "EmbeddingSimilarityJudge", "Judge", "Verdict", "normalise"]

# Embedding models take a few hundred tokens per input; longer outputs are compared by their opening.
_MAX_EMBEDDED_CHARS = 1000
_SPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = ".,;:!?\"'`()[]{}-\u2013\u2014\u2026"  # ASCII, en and em dashes, ellipsis


@dataclass(frozen=True, slots=True)
class Verdict:
    similarity: float
    passed: bool


class Judge(Protocol):
    name: str

    async def score(self, ctx: CallContext, baseline: str, candidate: str) -> Verdict: ...


def normalise(text: str) -> str:
    return _SPACE.sub(" ", text.casefold()).strip().strip(_EDGE_PUNCTUATION).strip()


class DeterministicReplayJudge:
    name = "deterministic_replay"

    async def score(self, ctx: CallContext, baseline: str, candidate: str) -> Verdict:
        if baseline == candidate:
            return Verdict(1.0, True)
        a, b = normalise(baseline), normalise(candidate)
        if a == b:
            return Verdict(1.0, True)
        return Verdict(round(difflib.SequenceMatcher(None, a, b).ratio(), 4), False)


class EmbeddingSimilarityJudge:
    name = "embedding_similarity"

    def __init__(self, embeddings: EmbeddingsService, model: str, threshold: float) -> None:
        self._embeddings = embeddings
        self._model = model
        self._threshold = threshold

    async def score(self, ctx: CallContext, baseline: str, candidate: str) -> Verdict:
        if baseline == candidate:  # identical texts: cosine 1 without paying for the call
            return Verdict(1.0, True)
        if not baseline.strip() or not candidate.strip():
            return Verdict(0.0, False)  # one said nothing, the other did
        request = EmbeddingRequest(
            model=self._model,
            input=[baseline[:_MAX_EMBEDDED_CHARS], candidate[:_MAX_EMBEDDED_CHARS]],
            encoding_format="float",
        )
        response = await self._embeddings.create(ctx, request, priority=Priority.FILL)
        first, second = (item.embedding for item in response.data)
        if isinstance(first, str) or isinstance(second, str):  # pragma: no cover - asked for floats
            raise TypeError("embeddings came back base64-encoded")
        similarity = round(max(-1.0, min(1.0, cosine(first, second))), 4)
        return Verdict(similarity, similarity >= self._threshold)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0
