"""Admission control per model (and per lane) in this API process: one AdmissionPool (bounded
concurrency, a bounded queue, priorities, fill preemption: batchin/admission_pool.py) per
(lane, model), made from the model's limits on first use."""

from __future__ import annotations

from batchin.admission_pool import AdmissionPool, Priority, was_preempted
from batchin.errors import Preempted

__all__ = ["AdmissionController", "AdmissionPool", "Preempted", "Priority", "was_preempted"]


class AdmissionController:
    """One pool per (lane, model), created from the model's limits on first use."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], AdmissionPool] = {}

    def pool(self, model: str, *, lane: str, max_concurrency: int, queue_size: int) -> AdmissionPool:
        key = (lane, model)
        pool = self._pools.get(key)
        if pool is None:
            label = model if lane == "shared" else f"{model}@{lane}"
            pool = self._pools[key] = AdmissionPool(label, max_concurrency, queue_size)
        return pool

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {
            f"{lane}/{model}": {
                "running": p.running,
                "queued": p.queued,
                "max_concurrency": p.max_concurrency,
            }
            for (lane, model), p in self._pools.items()
        }
