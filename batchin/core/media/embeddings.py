"""Embeddings over any EmbeddingRunner.

One path: resolve the model → validate inputs and `dimensions` → count tokens exactly (the model's
tokenizer, whole batch in one call) → flow policy → reserve the exact cost → admission slot → one
engine call for the whole batch → settle (one usage log, unit `tokens`) → signed receipt and trace
(serving/served_calls.py). The cost is known before the engine runs, so the reservation is exactly
what is charged.

A remote model (ReportsEmbeddingUsage) tokenises upstream: its counts are estimates, so the
reservation holds them with headroom, and the call is billed the tokens the upstream reports.

The receipt hashes the inputs as a JSON array of strings and the output as the vectors the caller
gets (after `dimensions`), float32 little-endian, row after row: the concatenated base64 rows
decode to exactly those bytes.
"""

from __future__ import annotations

import asyncio
import base64
from typing import TYPE_CHECKING, cast

import numpy as np
import orjson

from batchin.core.billing.metering import MeteringService
from batchin.core.billing.money import cost_per_million
from batchin.core.context import CallContext, Principal
from batchin.core.serving.admission import Priority
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.model_lookup import prices_for, usable_model
from batchin.core.serving.served_calls import ServedCalls
from batchin.errors import InvalidRequest
from batchin.models.catalog import CatalogEntry
from batchin.models.embeddings import EmbeddingRunner, ReportsEmbeddingUsage
from batchin.models.registry import ModelRegistry
from batchin.protocol.embeddings import (
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingUsage,
)

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["EmbeddingsService", "shape_vectors"]

# Estimated counts (a remote model's) are reserved with the same headroom as a remote text prompt.
_ESTIMATE_HEADROOM = 1.5


class EmbeddingsService:
    def __init__(
        self, registry: ModelRegistry, metering: MeteringService, flow: FlowPolicy, served: ServedCalls
    ) -> None:
        self._registry = registry
        self._metering = metering
        self._flow = flow
        self._served = served

    async def create(
        self, ctx: CallContext, request: EmbeddingRequest, *, priority: Priority = Priority.INTERACTIVE
    ) -> CreateEmbeddingResponse:
        texts = request.texts()
        entry, runner = await self._model(request.model, ctx.principal)
        _check_dimensions(entry, runner, request.dimensions)
        counts = await runner.count_tokens(texts)
        for index, count in enumerate(counts):
            if count > runner.max_input_tokens:
                raise InvalidRequest(
                    f"'input[{index}]' is {count} tokens; model '{entry.id}' accepts at most "
                    f"{runner.max_input_tokens} tokens per input.",
                    param="input",
                )
        tokens = sum(counts)
        price = prices_for(entry, ctx.principal).input_per_1m or 0
        reported = isinstance(runner, ReportsEmbeddingUsage)
        held = int(tokens * _ESTIMATE_HEADROOM) + 16 if reported else tokens
        async with self._served.call(
            ctx, model_id=entry.id, endpoint="embeddings", input=orjson.dumps(texts)
        ) as served:
            pool = await self._flow.admit(ctx, entry)
            async with (
                self._metering.call(
                    ctx, model=entry.id, endpoint="embeddings", max_cost_units=cost_per_million(held, price)
                ) as call,
                pool.slot(priority) as queued_seconds,
            ):
                served.admitted(queued_seconds, call)
                call.begin()
                if isinstance(runner, ReportsEmbeddingUsage):
                    vectors, upstream_tokens = await runner.embed_with_usage(texts)
                    tokens = tokens if upstream_tokens is None else upstream_tokens
                else:
                    vectors = await runner.embed(texts)
                served.engine_done()
                cost = cost_per_million(tokens, price)
                call.record(cost_units=cost, input_tokens=tokens, units=tokens, unit="tokens")
            data, raw = await asyncio.to_thread(_shaped, vectors, request.dimensions, request.encoding_format)
            served.produced(raw, input_tokens=tokens, units=tokens, unit="tokens")
        return CreateEmbeddingResponse.model_construct(
            data=[Embedding.model_construct(index=i, embedding=v) for i, v in enumerate(data)],
            model=entry.id,
            usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def _model(self, model_id: str, principal: Principal) -> tuple[CatalogEntry, EmbeddingRunner]:
        entry = usable_model(self._registry, model_id, "embedding", principal)
        return entry, cast(EmbeddingRunner, await self._registry.runner(model_id))


def _check_dimensions(entry: CatalogEntry, runner: EmbeddingRunner, dimensions: int | None) -> None:
    if dimensions is None or dimensions == runner.dimensions:
        return
    if not runner.matryoshka:
        raise InvalidRequest(
            f"Model '{entry.id}' only returns {runner.dimensions}-dimensional embeddings; "
            "'dimensions' can only be set for models trained to be shortened.",
            param="dimensions",
        )
    if dimensions > runner.dimensions:
        raise InvalidRequest(
            f"'dimensions' must be at most {runner.dimensions} for model '{entry.id}'.", param="dimensions"
        )


def shape_vectors(
    vectors: npt.NDArray[np.float32], dimensions: int | None, encoding_format: str
) -> list[list[float] | str]:
    """Shorten (Matryoshka: keep a prefix, renormalise to unit length) and encode each vector."""
    return _shaped(vectors, dimensions, encoding_format)[0]


def _shaped(
    vectors: npt.NDArray[np.float32], dimensions: int | None, encoding_format: str
) -> tuple[list[list[float] | str], bytes]:
    """The encoded vectors and their float32 little-endian bytes (what the receipt hashes)."""
    if dimensions is not None and dimensions < vectors.shape[1]:
        short = vectors[:, :dimensions]
        norms = np.linalg.norm(short, axis=1, keepdims=True)
        vectors = (short / np.where(norms == 0, 1, norms)).astype(np.float32)
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    if encoding_format == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows], rows.tobytes()
    return cast(list[list[float] | str], rows.tolist()), rows.tobytes()
