"""Embeddings from a remote OpenAI-compatible upstream (vLLM, TEI, Infinity, a provider): POST
{base}/embeddings with the whole batch, vectors back in input order.

Token counts: the upstream tokenises, so `count_tokens` gives estimates (remote.estimate_tokens)
that core uses for the reservation only; `embed_with_usage` returns the upstream's reported
`usage.prompt_tokens`, which is what the call is billed (the estimate when the upstream reports
none).

Catalog `engine_options`:
    dimensions         the upstream model's vector size (required: core checks `dimensions`
                       requests against it before anything is reserved, and every answer is checked)
    matryoshka         true when a prefix of the vector is itself an embedding (core shortens)
    max_input_tokens   inputs estimated longer are refused here; unset: the upstream decides
    encoding_format    asked of the upstream: "float" (default, every server) or "base64"
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt

from batchin.models.remote import estimate_tokens
from batchin.models.upstream_client import RemoteConfig, UpstreamClient, remote_config
from batchin.models.upstream_health import Upstream

__all__ = ["RemoteEmbeddingRunner"]

_NO_LIMIT = 2**31 - 1


class RemoteEmbeddingRunner(UpstreamClient):
    def __init__(
        self,
        config: RemoteConfig,
        options: dict[str, object],
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        dimensions = options.get("dimensions")
        if not isinstance(dimensions, int) or dimensions < 1:
            raise ValueError(
                f"model {config.model_id}: a remote embedding model needs engine_options.dimensions"
            )
        encoding = str(options.get("encoding_format", "float"))
        if encoding not in ("float", "base64"):
            raise ValueError(f"model {config.model_id}: engine_options.encoding_format: float or base64")
        super().__init__(config, session)
        self.dimensions = dimensions
        self.matryoshka = bool(options.get("matryoshka", False))
        self.max_input_tokens = int(str(options.get("max_input_tokens", _NO_LIMIT)))
        self._encoding = encoding

    @classmethod
    def from_entry(cls, entry: Any) -> RemoteEmbeddingRunner:
        return cls(remote_config(entry), dict(entry.engine_options))

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return [estimate_tokens(text) for text in texts]

    async def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        vectors, _ = await self.embed_with_usage(texts)
        return vectors

    async def embed_with_usage(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], int | None]:
        body = {"model": self.config.upstream_model, "input": texts, "encoding_format": self._encoding}
        response, upstream = await self.post_json("/embeddings", body)
        answer = await self.read_json(response, upstream)
        return self._vectors(answer, len(texts), upstream), _prompt_tokens(answer)

    def _vectors(self, answer: Any, count: int, upstream: Upstream) -> npt.NDArray[np.float32]:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != count:
            raise self.unreadable(upstream, f"expected {count} embeddings")
        out = np.empty((count, self.dimensions), dtype=np.float32)
        seen = set()
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < count or index in seen:
                raise self.unreadable(upstream, "embedding indexes do not match the inputs")
            seen.add(index)
            vector = _vector(item.get("embedding"))
            if vector is None or vector.shape != (self.dimensions,):
                raise self.unreadable(upstream, f"an embedding is not {self.dimensions} floats")
            out[index] = vector
        return out


def _vector(value: object) -> npt.NDArray[np.float32] | None:
    if isinstance(value, str):  # base64 of float32 little-endian, as OpenAI sends it
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
        return None if len(raw) % 4 else np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if isinstance(value, list):
        try:
            return np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            return None
    return None


def _prompt_tokens(answer: dict[str, Any]) -> int | None:
    usage = answer.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and tokens >= 0 else None
