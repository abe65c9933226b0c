"""Text-to-video on diffusers (Wan, TextToVideoSD from configured weights; the tiny random
TextToVideoSD pipeline built in code by default), encoded to H.264 MP4 by the static ffmpeg that
ships inside the `imageio-ffmpeg` wheel.

Catalog entry (engine "diffusers_video"):

    [models.wan-2.2]
    kind = ["video"]
    engine = "diffusers_video"
    weights = { path = "/var/lib/batchin/models/Wan2.2-TI2V-5B-Diffusers" }
    engine_options = { num_frames = 81, fps = 16, num_inference_steps = 30, device = "cuda",
                       dtype = "bfloat16", size_multiple = 16, max_side = 1280 }

The pipeline draws `num_frames` frames once; the encoder spreads them over the requested seconds
at `fps` and scales them to the requested size, so the MP4 lasts exactly that long at that size.
Denoising and encoding run in the engine's worker process (hosted_diffusers.py), ffmpeg in another.
"""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from batchin.models.diffusers_pipeline import PipelineOptions, Progress, denoise_kwargs
from batchin.models.images import DiffusersRunner

__all__ = ["DiffusersVideoRunner", "VideoParams", "VideoRunner", "encode_mp4"]


@dataclass(frozen=True, slots=True)
class VideoParams:
    prompt: str
    width: int
    height: int
    seconds: int
    seed: int = 0


@runtime_checkable
class VideoRunner(Protocol):
    """What the video worker needs of a video model (in process, or hosted_diffusers.py's proxy)."""

    pipeline_class: str | None
    random_weights: bool

    async def generate(self, params: VideoParams, progress: Progress | None = None) -> bytes: ...


class DiffusersVideoRunner(DiffusersRunner):
    """Runner for kind "video": `await generate(params, progress)` → MP4 (H.264) bytes."""

    @staticmethod
    def render(pipeline: Any, options: PipelineOptions, params: Any, progress: Progress) -> Any:
        return render_video(pipeline, options, params, progress)

    async def generate(self, params: VideoParams, progress: Progress | None = None) -> bytes:
        mp4: bytes = await self._render(params, progress)
        return mp4


def render_video(pipeline: Any, options: PipelineOptions, params: VideoParams, progress: Progress) -> bytes:
    """On the render thread: draw the frames, then encode them."""
    import numpy as np
    import torch

    width, height = options.draw_size(params.width, params.height)
    with torch.inference_mode():
        generator = torch.Generator(device="cpu").manual_seed(params.seed)
        output = pipeline(
            prompt=params.prompt,
            width=width,
            height=height,
            num_frames=options.num_frames,
            generator=generator,
            output_type="np",
            **denoise_kwargs(pipeline, options, progress),
        )
    frames = np.asarray(output.frames[0])  # (frames, h, w, 3) floats in [0, 1]
    frames = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    return encode_mp4(frames, params.width, params.height, params.seconds, options.fps)


def encode_mp4(frames: Any, width: int, height: int, seconds: int, fps: int) -> bytes:
    """H.264 (yuv420p, faststart) MP4 of exactly `seconds` at `fps`, scaled to widthxheight.

    The drawn frames enter ffmpeg at len(frames)/seconds frames per second; ffmpeg repeats them to
    the output rate and scales them, so only the small native frames cross the pipe."""
    imageio_ffmpeg: Any = importlib.import_module("imageio_ffmpeg")

    count, native_h, native_w = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    rate = Fraction(count, seconds)
    with tempfile.TemporaryDirectory(prefix="batchin-video-") as folder:
        path = Path(folder) / "video.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path),
            (native_w, native_h),
            fps=float(rate),
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=1,
            input_params=["-framerate", f"{rate.numerator}/{rate.denominator}"],
            output_params=[
                "-vf",
                f"scale={width}:{height}:flags=bicubic",
                "-r",
                str(fps),
                "-t",
                str(seconds),
                "-preset",
                "veryfast",
                "-movflags",
                "+faststart",
            ],
        )
        writer.send(None)
        for frame in frames:
            writer.send(frame.tobytes())
        writer.close()
        return path.read_bytes()
