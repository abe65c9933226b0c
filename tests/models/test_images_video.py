"""The diffusers runners: tiny random pipelines are deterministic; a pipeline saved with
save_pretrained loads through the catalog's weights path like a real one (FLUX, SD-Turbo, Wan);
PNGs come out at exactly the requested size, MP4s as H.264 of exactly the requested seconds."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image

from batchin.models.catalog import parse_catalog
from batchin.models.hosted_diffusers import HostedImageRunner, HostedVideoRunner
from batchin.models.images import DiffusersImageRunner, ImageParams
from batchin.models.registry import ModelRegistry
from batchin.models.tiny_pipelines import RANDOM_WEIGHTS_NOTE, tiny_image_pipeline, tiny_video_pipeline
from batchin.models.video import VideoParams
from tests.media_fixtures import IMAGE_MODEL, VIDEO_MODEL, decode_mp4, media_registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
async def registry() -> ModelRegistry:
    return await media_registry()


async def image_runner(registry: ModelRegistry, model: str = IMAGE_MODEL) -> HostedImageRunner:
    runner = await registry.runner(model)
    assert isinstance(runner, HostedImageRunner)
    return runner


async def video_runner(registry: ModelRegistry, model: str = VIDEO_MODEL) -> HostedVideoRunner:
    runner = await registry.runner(model)
    assert isinstance(runner, HostedVideoRunner)
    return runner


def pixels(png: bytes) -> tuple[tuple[int, int], bytes]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size, image.tobytes()


def test_the_same_seed_builds_the_same_weights() -> None:
    first, second, other = tiny_image_pipeline(0), tiny_image_pipeline(0), tiny_image_pipeline(1)
    a, b, c = (p.unet.state_dict() for p in (first, second, other))
    assert all(a[name].equal(b[name]) for name in a)
    assert not all(a[name].equal(c[name]) for name in a)


async def test_png_of_exactly_the_requested_size(registry: ModelRegistry) -> None:
    runner = await image_runner(registry)
    pngs = await runner.generate(ImageParams("a tree", width=200, height=120, n=2, seed=3))
    assert [pixels(png)[0] for png in pngs] == [(200, 120), (200, 120)]


async def test_images_are_deterministic_per_seed(registry: ModelRegistry) -> None:
    runner = await image_runner(registry)
    one, two, three = await asyncio.gather(
        runner.generate(ImageParams("a tree", 64, 64, seed=5)),
        runner.generate(ImageParams("a tree", 64, 64, seed=5)),
        runner.generate(ImageParams("a tree", 64, 64, seed=6)),
    )
    assert pixels(one[0]) == pixels(two[0])
    assert pixels(one[0]) != pixels(three[0])


async def test_the_builtin_runner_says_its_weights_are_random(registry: ModelRegistry) -> None:
    runner = await image_runner(registry)
    health = runner.health()
    assert (health.reason, health.extra["random_weights"]) == (RANDOM_WEIGHTS_NOTE, True)


async def test_video_is_h264_of_the_requested_seconds_with_progress(registry: ModelRegistry) -> None:
    runner = await video_runner(registry)
    progress: list[float] = []
    mp4 = await runner.generate(VideoParams("waves", width=96, height=64, seconds=3, seed=1), progress.append)
    assert mp4[4:8] == b"ftyp"
    assert decode_mp4(mp4) == {"codec": "h264", "width": 96, "height": 64, "frames": 24, "duration": 3.0}
    assert progress == [0.25, 0.5, 0.75, 1.0]  # one report per denoising step (4)


def saved_catalog(folder: Path, kind: str, engine: str, price: str, options: str = "") -> str:
    return f"""
[models.saved]
kind = "{kind}"
engine = "{engine}"
licence = "test"
engine_options = {{ num_inference_steps = 2, guidance_scale = 1.0{options} }}
weights = {{ path = "{folder}" }}
pricing = {{ {price} = 0.01 }}
"""


async def test_a_saved_image_pipeline_loads_from_the_weights_path(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    folder = tmp_path / "sd-like"
    await asyncio.to_thread(tiny_image_pipeline(0).save_pretrained, folder)
    catalog = saved_catalog(folder, "image", "diffusers_image", "per_image", ", native_size = [64, 64]")
    loaded = ModelRegistry(parse_catalog(catalog, source="test"))
    try:
        runner = await image_runner(loaded, "saved")
        assert runner.random_weights is False
        assert runner.health().reason is None
        assert runner.pipeline_class == "StableDiffusionPipeline"
        pngs = await runner.generate(ImageParams("a tree", 300, 100, seed=2))
        assert pixels(pngs[0])[0] == (300, 100)
        # The same weights drawn the same way as the builtin pipeline give the same pixels.
        builtin = DiffusersImageRunner(
            (await image_runner(registry)).entry.model_copy(
                update={
                    "engine_options": {
                        "builtin": "tiny-random",
                        "num_inference_steps": 2,
                        "guidance_scale": 1.0,
                        "native_size": [64, 64],
                    }
                }
            )
        )
        await builtin.load(None)
        try:
            again = await builtin.generate(ImageParams("a tree", 300, 100, seed=2))
        finally:
            await builtin.close()
        assert pixels(again[0]) == pixels(pngs[0])
    finally:
        await loaded.close()


async def test_a_saved_video_pipeline_loads_from_the_weights_path(tmp_path: Path) -> None:
    folder = tmp_path / "t2v-like"
    await asyncio.to_thread(tiny_video_pipeline(0).save_pretrained, folder)
    catalog = saved_catalog(
        folder,
        "video",
        "diffusers_video",
        "per_video_second",
        ", native_size = [32, 32], num_frames = 4, fps = 4",
    )
    loaded = ModelRegistry(parse_catalog(catalog, source="test"))
    try:
        runner = await video_runner(loaded, "saved")
        assert runner.pipeline_class == "TextToVideoSDPipeline"
        mp4 = await runner.generate(VideoParams("waves", 64, 64, seconds=2, seed=0))
        assert decode_mp4(mp4) == {"codec": "h264", "width": 64, "height": 64, "frames": 8, "duration": 2.0}
    finally:
        await loaded.close()


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ('{ builtin = "tiny-random", device = "cuda" }', "no CUDA GPU"),
        ('{ builtin = "tiny-random", steps = 3 }', "engine_options.steps"),
        ("{}", "no weights configured"),
    ],
)
async def test_a_model_that_cannot_load_is_unavailable_with_its_reason(options: str, reason: str) -> None:
    catalog = f"""
[models.broken]
kind = "image"
engine = "diffusers_image"
licence = "test"
engine_options = {options}
pricing = {{ per_image = 0.01 }}
"""
    broken = ModelRegistry(parse_catalog(catalog, source="test"))
    try:
        with pytest.raises(Exception, match="unavailable"):
            await broken.runner("broken")
        health = broken.status("broken")
        assert health.status == "unavailable"
        assert reason in (health.reason or "")
    finally:
        await broken.close()
