"""Images from a remote OpenAI-compatible upstream (a diffusers or ComfyUI server, a provider):
POST {base}/images/generations; each image comes back as `b64_json`, or as a `url` that is fetched
at once over the same pooled session. Core stores the bytes as our own file and answers a signed
link (or base64), as for a local model, so the upstream's links never reach the caller.

Catalog `engine_options`:
    response_format   asked of the upstream: "b64_json" (default) or "url"
    max_image_bytes   largest image accepted from the upstream (default 64 MiB)
The catalog's `upstream.timeout_seconds` bounds the wait for the answer: set it above the
upstream's slowest generation (several images at a large size).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import aiohttp

from batchin.models.images import ImageParams
from batchin.models.upstream_client import RemoteConfig, UpstreamClient, remote_config
from batchin.models.upstream_health import Upstream, describe

__all__ = ["RemoteImageRunner"]


class RemoteImageRunner(UpstreamClient):
    pipeline_class: str | None = None
    random_weights = False

    def __init__(
        self, config: RemoteConfig, options: dict[str, object], session: aiohttp.ClientSession | None = None
    ) -> None:
        self._format = str(options.get("response_format", "b64_json"))
        if self._format not in ("b64_json", "url"):
            raise ValueError(f"model {config.model_id}: engine_options.response_format: b64_json or url")
        self._max_bytes = int(str(options.get("max_image_bytes", 64 << 20)))
        super().__init__(config, session)

    @classmethod
    def from_entry(cls, entry: Any) -> RemoteImageRunner:
        return cls(remote_config(entry), dict(entry.engine_options))

    async def generate(self, params: ImageParams) -> list[bytes]:
        body = {
            "model": self.config.upstream_model,
            "prompt": params.prompt,
            "n": params.n,
            "size": f"{params.width}x{params.height}",
            "response_format": self._format,
        }
        response, upstream = await self.post_json("/images/generations", body)
        # Base64 is 4/3 of the bytes; allow for every image in one answer.
        answer = await self.read_json(response, upstream, limit=params.n * self._max_bytes * 4 // 3 + 65536)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != params.n or not all(isinstance(d, dict) for d in data):
            raise self.unreadable(upstream, f"expected {params.n} images")
        return [await self._image(item, upstream) for item in data]

    async def _image(self, item: dict[str, Any], upstream: Upstream) -> bytes:
        encoded, url = item.get("b64_json"), item.get("url")
        if isinstance(encoded, str):
            try:
                image = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise self.unreadable(upstream, "an image is not base64") from None
        elif isinstance(url, str) and url.startswith(("http://", "https://")):
            image = await self._fetch(url, upstream)
        else:
            raise self.unreadable(upstream, "an image has neither b64_json nor an http(s) url")
        if not image or len(image) > self._max_bytes:
            raise self.unreadable(upstream, "an image is empty or too large")
        return image

    async def _fetch(self, url: str, upstream: Upstream) -> bytes:
        """An image the upstream links to (its own file server or a bucket it signed a URL for)."""
        try:
            response = await self._client().get(url, headers={"Accept": "image/*"})
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self.unreadable(upstream, f"image link failed: {describe(exc)}") from exc
        if response.status != 200:
            response.release()
            raise self.unreadable(upstream, f"image link answered HTTP {response.status}")
        return await self.read_bytes(response, upstream, limit=self._max_bytes)
