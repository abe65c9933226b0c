"""What a signed media link opens (the link's shape and signature: links.py): an image's file, or
a video job's MP4 once the job is completed."""

from __future__ import annotations

from dataclasses import dataclass

from batchin.core.media.files import FileContent, FileService
from batchin.core.media.links import LinkSigner
from batchin.core.media.videos import VideoService

__all__ = ["LinkedMedia", "OpenedMedia"]


@dataclass(frozen=True, slots=True)
class OpenedMedia:
    content: FileContent
    expires: int  # the link's expiry, unix seconds: how long a browser may cache what it got


class LinkedMedia:
    def __init__(self, signer: LinkSigner, files: FileService, videos: VideoService) -> None:
        self._signer = signer
        self._files = files
        self._videos = videos

    async def open(self, media_id: str, expires: str | None, signature: str | None) -> OpenedMedia:
        """The content a genuine, unexpired link names. The signature is checked before any lookup,
        so a forged link learns nothing about which ids exist (403 either way)."""
        deadline = self._signer.check(media_id, expires, signature)
        if media_id.startswith("video_"):
            content = await self._videos.linked_output(media_id)
        else:
            content = await self._files.linked_content(media_id)
        return OpenedMedia(content, deadline)
