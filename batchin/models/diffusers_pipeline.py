"""Building a diffusers pipeline from a catalog entry: the engine options a diffusers runner
understands, loading (configured weights or the tiny random pipelines of `tiny_pipelines.py`) and
the denoising arguments. Runs inside the engine's worker process (hosted_diffusers.py), never in the
API process.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchin.models.base import EngineUnavailable
from batchin.models.catalog import CatalogEntry
from batchin.models.tiny_pipelines import tiny_image_pipeline, tiny_video_pipeline

__all__ = ["PipelineOptions", "Progress", "denoise_kwargs", "load_pipeline"]

Progress = Callable[[float], None]  # fraction of denoising steps done, 0..1

_HOSTING_OPTIONS = frozenset({"supervisor", "in_process"})

_BUILDERS: dict[str, Callable[[int], Any]] = {
    "tiny-random": tiny_image_pipeline,
    "tiny-random-video": tiny_video_pipeline,
}


class PipelineOptions(BaseModel):
    """The engine_options a diffusers runner understands (anything else is a load error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    builtin: Literal["tiny-random", "tiny-random-video"] | None = None
    build_seed: int = 0
    num_inference_steps: int | None = Field(default=None, ge=1, le=500)
    guidance_scale: float | None = Field(default=None, ge=0)
    native_size: tuple[int, int] | None = Field(default=None, description="always draw at this size")
    size_multiple: int = Field(default=8, ge=1)
    max_side: int = Field(default=1024, ge=16)
    device: str = "cpu"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads in the engine process"
    )
    nice: int = Field(default=10, ge=0, le=19, description="CPU priority drop of the engine's process")
    # Video only: frames the pipeline draws per clip and the frame rate of the encoded MP4.
    num_frames: int = Field(default=8, ge=1, le=512)
    fps: int = Field(default=8, ge=1, le=60)

    @classmethod
    def of(cls, entry: CatalogEntry) -> PipelineOptions:
        # The worker process's own options (models/hosted.py) are not the pipeline's.
        options = {k: v for k, v in entry.engine_options.items() if k not in _HOSTING_OPTIONS}
        try:
            return cls.model_validate(options)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise EngineUnavailable(f"engine_options.{where}: {first['msg']}") from None

    def draw_size(self, width: int, height: int) -> tuple[int, int]:
        """The size the pipeline draws at for a requested size (resized to exact afterwards)."""
        if self.native_size is not None:
            return self.native_size
        scale = min(1.0, self.max_side / max(width, height))
        step = self.size_multiple

        def fit(side: int) -> int:
            return max(step, int(side * scale) // step * step)

        return fit(width), fit(height)


def load_pipeline(entry: CatalogEntry, options: PipelineOptions, weights: Path | None) -> Any:
    """Blocking: the configured pipeline from `weights` (a save_pretrained directory), or the builtin
    tiny one when no weights are configured."""
    try:
        torch: Any = importlib.import_module("torch")
        diffusers: Any = importlib.import_module("diffusers")
        diffusers_logging: Any = importlib.import_module("diffusers.utils.logging")
        transformers_logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError as exc:  # pragma: no cover - the pinned stack has them
        raise EngineUnavailable(f"diffusers is not installed: {exc}") from exc
    # Loading bars and deprecation chatter would flood the server log on every load.
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    if options.device.startswith("cuda") and not torch.cuda.is_available():
        raise EngineUnavailable(f"device {options.device!r} asked for, but this machine has no CUDA GPU")
    if weights is not None:
        pipeline = diffusers.DiffusionPipeline.from_pretrained(
            str(weights), dtype=getattr(torch, options.dtype), local_files_only=True
        )
    elif options.builtin is not None:
        pipeline = _BUILDERS[options.builtin](options.build_seed)
    else:
        raise EngineUnavailable(f"model {entry.id}: no weights configured and no builtin pipeline chosen")
    pipeline = pipeline.to(options.device)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def denoise_kwargs(pipeline: Any, options: PipelineOptions, progress: Progress | None) -> dict[str, Any]:
    """Steps, guidance and a progress hook in whichever callback style the pipeline offers."""
    kwargs: dict[str, Any] = {}
    steps = options.num_inference_steps
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    if options.guidance_scale is not None:
        kwargs["guidance_scale"] = options.guidance_scale
    if progress is None:
        return kwargs
    total = steps or 50
    parameters = inspect.signature(pipeline.__call__).parameters
    if "callback_on_step_end" in parameters:

        def on_step_end(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            progress(min(1.0, (step + 1) / total))
            return tensors

        kwargs["callback_on_step_end"] = on_step_end
    elif "callback" in parameters:  # older pipelines (TextToVideoSD)
        kwargs["callback"] = lambda step, _t, _latents: progress(min(1.0, (step + 1) / total))
        kwargs["callback_steps"] = 1
    return kwargs
