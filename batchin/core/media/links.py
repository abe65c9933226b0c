"""Signed media links: a generated image or video opens in a browser (`<img>`, `<video>`) without
an API key, for a limited time.

    {base}/v1/media/{media_id}?expires={unix seconds}&signature={base64url HMAC-SHA256}

`media_id` is an image's file id (`file-…`) or a video job's id (`video_…`: the link exists from
`queued`, before the video's file does, and survives the job being re-run after a crash).
The signature is HMAC-SHA256 over "{media_id}\\n{expires}" under a server key kept in a file (mode
0600, created on first start, like the audit and webhook keys), so only this server mints links and
nobody can stretch one's expiry or point it at another file. Whoever holds a link can fetch that one
file until it expires, and nothing else; the key-authenticated /v1/files/{id}/content stays.
Rotating the key (delete the file, restart) revokes every link given out.

`base` is the server as the caller reached it (http_api/origin.py decides, so a forged Host never
lands in a link), else `Settings.own_base_url`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from batchin.core.secret_file import load_or_create_hex_key
from batchin.errors import PermissionDenied

__all__ = ["MEDIA_PATH", "LinkSigner", "load_or_create_link_key", "media_id_of"]


MEDIA_PATH = "/v1/media"
_KEY_BYTES = 32
_LINK = re.compile(r"/v1/media/([A-Za-z0-9_-]+)\?")
_EXPIRES = re.compile(r"^[0-9]{1,12}$")


def load_or_create_link_key(path: Path) -> bytes:
    """The HMAC key in `path` (hex), created with mode 0600 when the file does not exist."""
    return load_or_create_hex_key(path, _KEY_BYTES, exact=False)


def media_id_of(url: str) -> str | None:
    """The media id a link made by `LinkSigner.url` names (None for any other URL)."""
    match = _LINK.search(url)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class LinkSigner:
    key: bytes = field(repr=False)
    ttl_seconds: int
    fallback_base: str  # Settings.own_base_url: for links made with no request (MCP, workers)

    def url(self, media_id: str, base: str | None = None, *, now: float | None = None) -> str:
        expires = int(time.time() if now is None else now) + self.ttl_seconds
        query = urlencode({"expires": expires, "signature": self._sign(media_id, str(expires))})
        return f"{(base or self.fallback_base).rstrip('/')}{MEDIA_PATH}/{media_id}?{query}"

    def check(
        self, media_id: str, expires: str | None, signature: str | None, *, now: float | None = None
    ) -> int:
        """The link's expiry (unix seconds) when it is genuine and unexpired; PermissionDenied
        otherwise. The signature is checked first, so only a genuine link learns it expired."""
        if not expires or not signature or not _EXPIRES.match(expires):
            raise PermissionDenied("This media link is incomplete: it needs 'expires' and 'signature'.")
        expected = self._sign(media_id, expires).encode("ascii")
        if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            raise PermissionDenied("This media link's signature is not valid.", param="signature")
        deadline = int(expires)
        if deadline <= (time.time() if now is None else now):
            raise PermissionDenied(
                "This media link has expired. Fetch the image or video from the API again for a fresh "
                "link, or download it with your key from /v1/files/{id}/content.",
                param="expires",
            )
        return deadline

    def _sign(self, media_id: str, expires: str) -> str:
        digest = hmac.new(self.key, f"{media_id}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
