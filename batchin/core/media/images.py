"""Image generation: model → flow policy → reserve (per image) → admission slot → engine in a thread
→ PNGs stored as files, answered as signed links (response_format "url"), or inlined (b64_json)
→ settle.

A remote model's images are stored as the upstream sent them (PNG, JPEG or WebP, named and typed
by their leading bytes); local pipelines make PNGs.

Storing the outputs happens inside the metered call, so a failure to store them is not billed.
Outputs asked for by URL count against the caller's storage quota: a caller with no room left is
refused before anything is reserved or run, and one whose images turn out not to fit is refused
after the run with nothing stored, charged or logged (all or none: files.store_all).
Each call ends with a signed receipt and a stored trace (serving/served_calls.py) over the prompt
and the PNG bytes produced, concatenated in `data` order.
"""

from __future__ import annotations

import base64
import secrets
import time

from batchin.core.billing.metering import MeteringService
from batchin.core.billing.money import cost_per_unit
from batchin.core.context import CallContext
from batchin.core.media.files import FileService, NewFile
from batchin.core.media.links import LinkSigner
from batchin.core.serving.admission import Priority
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.model_lookup import prices_for, usable_model
from batchin.core.serving.served_calls import ServedCalls
from batchin.errors import ServiceUnavailable
from batchin.models.images import ImageParams, ImageRunner
from batchin.models.registry import ModelRegistry
from batchin.protocol.files import IMAGE_OUTPUT
from batchin.protocol.images import ImageData, ImageGenerateRequest, ImagesResponse

__all__ = ["ImageService"]


class ImageService:
    def __init__(
        self,
        registry: ModelRegistry,
        metering: MeteringService,
        flow: FlowPolicy,
        files: FileService,
        links: LinkSigner,
        served: ServedCalls,
    ) -> None:
        self._registry = registry
        self._metering = metering
        self._flow = flow
        self._files = files
        self._links = links
        self._served = served

    async def generate(
        self, ctx: CallContext, request: ImageGenerateRequest, *, base: str | None = None
    ) -> ImagesResponse:
        """`base`: the base URL the caller reached us at, for data[].url (None: the server's own)."""
        entry = usable_model(self._registry, request.model, "image", ctx.principal)
        width, height = request.dimensions
        runner = await self._registry.runner(entry.id)
        if not isinstance(runner, ImageRunner):
            raise ServiceUnavailable(f"Model '{entry.id}' has no image engine.")
        price = prices_for(entry, ctx.principal).per_image or 0
        by_url = request.response_format != "b64_json"
        if by_url:
            await self._files.quota.require_room(ctx.principal.user_id)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        params = ImageParams(prompt=request.prompt, width=width, height=height, n=request.n, seed=seed)
        endpoint = "images.generations"
        async with self._served.call(
            ctx, model_id=entry.id, endpoint=endpoint, input=request.prompt.encode("utf-8")
        ) as served:
            pool = await self._flow.admit(ctx, entry)
            async with (
                self._metering.call(
                    ctx, model=entry.id, endpoint=endpoint, max_cost_units=cost_per_unit(request.n, price)
                ) as call,
                pool.slot(Priority.INTERACTIVE) as queued_seconds,
            ):
                served.admitted(queued_seconds, call)
                call.begin()
                pngs = await runner.generate(params)
                served.engine_done()
                data = await self._stored(ctx, pngs, base) if by_url else _inline(pngs)
                call.record(cost_units=cost_per_unit(len(pngs), price), units=len(pngs), unit="images")
            served.produced(b"".join(pngs), units=len(pngs), unit="images")
        return ImagesResponse(created=int(time.time()), data=data, size=f"{width}x{height}")

    async def _stored(self, ctx: CallContext, images: list[bytes], base: str | None) -> list[ImageData]:
        new = []
        for index, image in enumerate(images):
            extension, content_type = _image_type(image)
            new.append(
                NewFile(image, f"image-{ctx.request_id}-{index}.{extension}", IMAGE_OUTPUT, content_type)
            )
        stored = await self._files.store_all(ctx.principal.user_id, new)
        # Signed links that open without a key (links.py); /v1/files/{id}/content takes the key.
        return [ImageData(url=self._links.url(item.id, base)) for item in stored]


def _inline(images: list[bytes]) -> list[ImageData]:
    return [ImageData(b64_json=base64.b64encode(image).decode("ascii")) for image in images]


def _image_type(image: bytes) -> tuple[str, str]:
    """File extension and content type from an image's leading bytes (PNG unless it says otherwise)."""
    if image[:3] == b"\xff\xd8\xff":
        return "jpg", "image/jpeg"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "webp", "image/webp"
    return "png", "image/png"
