"""The image and video runners the API process holds for diffusers pipelines: each pipeline lives in
its engine worker process (hosted.py), where torch and the GIL it takes between kernels cannot
stall the server's event loop (a thread did: streaming chat TTFT doubled beside a tiny pipeline).

Video progress crosses the pipe as a stream (`render_with_progress`): `("progress", f)` events,
then `("result", mp4)`; a caller that goes away closes the stream, and the worker stops denoising at
its next step.
"""

from __future__ import annotations

from typing import Any

from batchin.models.base import RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.diffusers_pipeline import PipelineOptions, Progress
from batchin.models.hosted import HostedRunner
from batchin.models.images import ImageParams
from batchin.models.tiny_pipelines import RANDOM_WEIGHTS_NOTE
from batchin.models.video import VideoParams

__all__ = ["HostedImageRunner", "HostedVideoRunner"]


class _HostedDiffusers(HostedRunner):
    ATTRIBUTES = ("pipeline_class",)

    def __init__(self, entry: CatalogEntry, target: str) -> None:
        super().__init__(entry, target)
        options = PipelineOptions.of(entry)  # a bad option fails the load here, as in process
        self.random_weights = entry.weights is None and options.builtin is not None
        self.pipeline_class: str | None = None

    def health(self) -> RunnerHealth:
        health = super().health()
        if health.status in ("unavailable", "loading"):
            return health
        reason = RANDOM_WEIGHTS_NOTE if self.random_weights else None
        return RunnerHealth(health.status, reason, {**health.extra, "random_weights": self.random_weights})

    async def _render(self, params: Any, progress: Progress | None) -> Any:
        result: Any = None
        async for kind, value in self._stream("render_with_progress", params):
            if kind == "progress":
                if progress is not None:
                    progress(float(value))
            else:
                result = value
        return result


class HostedImageRunner(_HostedDiffusers):
    async def generate(self, params: ImageParams) -> list[bytes]:
        pngs: list[bytes] = await self._call("generate", params)
        return pngs


class HostedVideoRunner(_HostedDiffusers):
    async def generate(self, params: VideoParams, progress: Progress | None = None) -> bytes:
        mp4: bytes = await self._render(params, progress)
        return mp4
