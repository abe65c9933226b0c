"""Watching for the caller's disconnect: one task per request that waits for `http.disconnect`
and then does what the response in progress asked for — cancel the work it waits on
(`until_disconnect`), or end the stream it is sending (streaming.py). A streamed call hands the
same watch from the first to the second, so it pays one watcher task, not one per phase.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

__all__ = ["ClientDisconnected", "DisconnectWatch", "until_disconnect"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The caller went away before the response was ready; its work has been cancelled."""


class DisconnectWatch:
    """The watcher task of one request. `then(action)` sets what a disconnect does from now on
    (None: only remember it, in `gone`); a watch made in a task starts waiting at that task's next
    suspension, so `gone` is False until then. `cancel()` ends it (once the response is over)."""

    __slots__ = ("_action", "gone", "task")

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self._action: Callable[[], None] | None = None
        self.task = asyncio.get_running_loop().create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._action is not None:
            self._action()

    def then(self, action: Callable[[], None] | None) -> None:
        self._action = action

    def cancel(self) -> None:
        self.task.cancel()


async def until_disconnect(
    request: Request, work: Awaitable[T], *, watch: DisconnectWatch | None = None
) -> T:
    """Run `work`; if the client disconnects first, cancel it and raise ClientDisconnected (a route
    may let it go: the error handlers answer it with a bodiless 499).

    Not CancelledError: this task was not cancelled, and the server would log that as a crash of
    the ASGI application on every disconnect.

    `watch`: one made for this request just before this call (so not yet waiting), which outlives
    the work: the caller hands it on (a stream's response) and ends it. Without it a watch is made
    here and ended on return.

    `work` runs in this task and the watcher task cancels this task when the caller leaves: a call
    pays one task and no `asyncio.wait`. Why that cancel always lands inside `work`, so no cancel is
    left pending for the caller's next await (Python 3.11's `uncancel()` would not clear one): the
    watcher runs only while this task is suspended, and between the watch's start and the
    `finally` below this task suspends nowhere but inside `await work`; the cancel is thrown at the
    point where it resumes (if its awaited future was already done, the cancel waits for that
    resumption, still inside `work`). Once `work` has returned, `finally` withdraws the cancel from
    the watch before this task could suspend again, so a watcher whose wait already ended cancels
    nothing when it resumes. tests/http_api/test_until_disconnect.py races the two in both orders."""
    current = asyncio.current_task()
    if current is None:  # not in a task: nothing the watcher could cancel
        return await work
    own = watch is None
    if watch is None:
        watch = DisconnectWatch(request.receive)
    gone = False

    def cancel_work() -> None:
        nonlocal gone
        gone = True
        current.cancel()

    watch.then(cancel_work)
    try:
        result = await work
    except BaseException:
        # Once our watcher has cancelled this task, what `work` ended with (the cancel, or an error
        # while it stopped) means the caller left. A cancel from elsewhere too (server shutdown)
        # stays a cancel.
        if gone and current.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        if own:
            watch.cancel()
        else:
            watch.then(None)
    if gone:  # `work` swallowed the cancel and finished anyway: its answer stands
        current.uncancel()
    return result
