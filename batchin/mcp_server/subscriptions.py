"""Resource subscriptions: a caller subscribed to one of its batches (batchin://batches/{id}) or
video jobs (batchin://videos/{id}) gets `notifications/resources/updated` for that URI each time
the job's status, counts or progress change (resources/watches.py), and reads the resource again.

Both protocol eras are served:
- 2026-07-28: `subscriptions/listen` with `resourceSubscriptions`. The stream is the listen
  request's own response, so it works over stateless Streamable HTTP and stdio alike. It is
  acknowledged with exactly the URIs requested (list-changed kinds are never sent, so never
  acknowledged) and stays open until the client closes it; each watch stops polling once its job
  has ended.
- up to 2025-11-25: `resources/subscribe` / `resources/unsubscribe` on a session that has a standing
  channel to the client (stdio). Its watches live with the connection: unsubscribe or the
  connection's end cancels them. On stateless HTTP there is no such channel, and the request is
  refused with a pointer to `subscriptions/listen`.

Every subscription is checked like a read of its resource: a valid key, the resource's scope
(`batches` for a batch, `inference` for a video, as over HTTP) and the caller's own job; a refusal
is a JSON-RPC error whose message starts with the API's error code (`not_found: ...`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, ResourceUpdated, event_to_notification
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionFilter,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsAcknowledgedNotificationParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from batchin.errors import BatchInError, RateLimited
from batchin.mcp_server.errors import error_payload
from batchin.mcp_server.middleware import identify_caller
from batchin.mcp_server.runtime import McpRuntime
from batchin.resources.watches import Watch, open_watch

__all__ = ["MAX_WATCHES", "WATCH_TASK_PREFIX", "ResourceSubscriptions"]

# Resources one user may have watched at a time in one server process, over all its streams and
# sessions: it bounds the rows polled for one user (about this many small reads a second).
MAX_WATCHES = 100
WATCH_TASK_PREFIX = "batchin-watch "  # each watch's task is named so, then the URI
_WATCHES_KEY = "batchin.subscriptions"


class ResourceSubscriptions:
    """The three request handlers, over one runtime. `interval`: seconds between reads of a row."""

    def __init__(self, runtime: McpRuntime, interval: float) -> None:
        self._runtime = runtime
        self._interval = interval
        self._held: Counter[str] = Counter()  # watches running per user

    async def _watches(self, uris: list[str]) -> tuple[str, list[Watch]]:
        """The caller's user id and a watch of each URI, counted against MAX_WATCHES (give them
        back with `_release`)."""
        try:
            call = await identify_caller(self._runtime, admit=True)
            user_id = call.ctx.principal.user_id
            wanted = list(dict.fromkeys(uris))
            if self._held[user_id] + len(wanted) > MAX_WATCHES:
                raise RateLimited(
                    f"At most {MAX_WATCHES} resources watched at a time; close a subscription first.",
                    retry_after=self._interval,
                )
            watches = [await open_watch(call, uri) for uri in wanted]
        except BatchInError as exc:
            raise MCPError(INVALID_PARAMS, f"{exc.code}: {exc.message}", error_payload(exc)) from None
        self._held[user_id] += len(watches)
        return user_id, watches

    def _release(self, user_id: str, count: int) -> None:
        self._held[user_id] -= count
        if self._held[user_id] <= 0:
            del self._held[user_id]

    # -- 2026-07-28 ------------------------------------------------------------------------------

    async def listen(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(INVALID_REQUEST, "subscriptions/listen requires a request id")
        user_id, watches = await self._watches(list(params.notifications.resource_subscriptions or ()))
        try:
            await self._stream(ctx, subscription_id, watches)
        finally:
            self._release(user_id, len(watches))
        # Not reached: the stream ends only by the client leaving, which cancels this handler.
        return SubscriptionsListenResult(_meta={SUBSCRIPTION_ID_META_KEY: subscription_id})

    async def _stream(
        self, ctx: ServerRequestContext[Any, Any], subscription_id: Any, watches: list[Watch]
    ) -> None:
        """Acknowledge, then report each watch's changes until the client leaves (cancelled)."""
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        honored = SubscriptionFilter(resource_subscriptions=[w.uri for w in watches] or None)
        await ctx.session.send_notification(
            SubscriptionsAcknowledgedNotification(
                params=SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
            ),
            related_request_id=subscription_id,
        )

        async def notify(uri: str) -> None:
            notification = event_to_notification(ResourceUpdated(uri=uri), meta)
            await ctx.session.send_notification(notification, related_request_id=subscription_id)

        async with anyio.create_task_group() as group:
            for watch in watches:
                group.start_soon(watch.run, notify, self._interval, name=_task_name(watch.uri))
            await anyio.sleep_forever()  # open until the client leaves (this handler is then cancelled)

    # -- up to 2025-11-25 ------------------------------------------------------------------------

    async def subscribe(
        self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        connection = ctx.session._connection  # the SDK keeps the connection private to the session
        if not connection.has_standalone_channel:
            raise MCPError(
                INVALID_REQUEST,
                "resources/subscribe needs a session with a channel to the client (stdio); over "
                "stateless HTTP, use subscriptions/listen (protocol 2026-07-28).",
            )
        running = _running(connection)
        if params.uri in running:
            return EmptyResult()
        user_id, [watch] = await self._watches([params.uri])

        async def watched() -> None:
            try:
                await watch.run(connection.send_resource_updated, self._interval)
            finally:
                if running.get(watch.uri) is task:
                    del running[watch.uri]

        task = asyncio.get_running_loop().create_task(watched(), name=_task_name(watch.uri))
        task.add_done_callback(lambda _: self._release(user_id, 1))  # also when cancelled unstarted
        running[watch.uri] = task
        return EmptyResult()

    async def unsubscribe(
        self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        task = _running(ctx.session._connection).pop(params.uri, None)
        if task is not None:
            task.cancel()
        return EmptyResult()


def _task_name(uri: str) -> str:
    return f"{WATCH_TASK_PREFIX}{uri}"


def _running(connection: Any) -> dict[str, asyncio.Task[None]]:
    """The connection's watches by URI, cancelled when the connection closes."""
    running: dict[str, asyncio.Task[None]] | None = connection.state.get(_WATCHES_KEY)
    if running is None:
        running = connection.state[_WATCHES_KEY] = {}
        connection.exit_stack.push_async_callback(_cancel_all, running)
    return running


async def _cancel_all(running: dict[str, asyncio.Task[None]]) -> None:
    tasks = list(running.values())
    running.clear()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
