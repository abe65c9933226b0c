"""What a resource subscription watches: a batch (batchin://batches/{id}) or a video job
(batchin://videos/{id}) of the caller, as it progresses.

Progress is read from the job's durable row, not pushed from the worker that makes it: the batch
tasks and the video job may run in any server process (several `batchin serve` workers or replicas
share the store), so an in-process signal would miss most of them. Each watch therefore reads the
row's observable state (status and counts; status and progress) every `interval` seconds and
reports a change; it stops polling once the job has ended (one last report) or vanished. A read is
one indexed row (plus a task count for a running batch), so a watch costs about one small query a
second.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Self

from batchin.core.batches.service import BatchService
from batchin.core.media.videos import VideoService
from batchin.core.permissions import require_scope
from batchin.errors import InvalidRequest, NotFound
from batchin.mcp_server.caller import McpCall
from batchin.protocol.accounts import Scope
from batchin.protocol.batches import TERMINAL_STATUSES
from batchin.services import Services

__all__ = ["BATCH_PREFIX", "VIDEO_PREFIX", "State", "Watch", "WatchDeps", "open_watch"]

log = logging.getLogger(__name__)

BATCH_PREFIX = "batchin://batches/"
VIDEO_PREFIX = "batchin://videos/"
_VIDEO_ENDED = ("completed", "failed")

Notify = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class WatchDeps:
    """What the watches read."""

    batches: BatchService
    videos: VideoService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(batches=services.batches, videos=services.videos)


@dataclass(frozen=True, slots=True)
class State:
    observed: tuple[object, ...]
    ended: bool


Read = Callable[[], Awaitable[State]]


@dataclass(slots=True)
class Watch:
    """One subscribed resource of one caller, its state when the subscription began."""

    uri: str
    read: Read
    state: State

    async def run(self, notify: Notify, interval: float) -> None:
        """Report each change of the resource (`notify(uri)`) until it has ended or vanished."""
        while not self.state.ended:
            await asyncio.sleep(interval)
            try:
                now = await self.read()
            except NotFound:  # deleted meanwhile: a read now answers not_found
                await notify(self.uri)
                return
            except Exception:  # a store hiccup (busy, failing over) must not end the subscription
                log.warning("reading %s for a subscription failed; trying again", self.uri, exc_info=True)
                continue
            if now != self.state:
                self.state = now
                await notify(self.uri)


async def open_watch(call: McpCall, uri: str) -> Watch:
    """A watch of `uri` for the caller: needs the scope its resource needs, and the resource must be
    the caller's (another tenant's, like a missing one, is NotFound)."""
    deps = call.views.get(WatchDeps)
    user_id = call.ctx.principal.user_id
    read: Read
    scope: Scope
    if uri.startswith(BATCH_PREFIX):
        batch_id, scope = uri.removeprefix(BATCH_PREFIX), "batches"

        async def read() -> State:
            batch = await deps.batches.progress(user_id, batch_id)
            counts = batch.request_counts
            return State((batch.status, counts.completed, counts.failed), batch.status in TERMINAL_STATUSES)

    elif uri.startswith(VIDEO_PREFIX):
        video_id, scope = uri.removeprefix(VIDEO_PREFIX), "inference"

        async def read() -> State:
            video = await deps.videos.get(user_id, video_id)
            return State((video.status, video.progress), video.status in _VIDEO_ENDED)

    else:
        raise InvalidRequest(
            f"Cannot subscribe to '{uri}': only {BATCH_PREFIX}{{id}} and {VIDEO_PREFIX}{{id}} change.",
            param="uri",
        )
    require_scope(call.ctx.principal, scope)
    return Watch(uri, read, await read())
