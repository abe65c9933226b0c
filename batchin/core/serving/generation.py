"""A started generation (text deltas, or a remote upstream's audio bytes): the engine feeds a
bounded buffer from its own task, the caller reads from it. This is what isolates slow consumers:
the engine never waits on a reader until the buffer (`stream_buffer_chunks` items) is full, and a
reader that stays stalled past `slow_consumer_timeout_seconds` is dropped — its generation stops
and it pays for what was made.

The producer task owns the whole paid call (reserve → admission slot → engine → settle), so a
disconnect (the reader cancels it), an engine error and a normal end all close the call exactly once.
What the call records once it is over (metrics, trace, prompt sample: its epilogue) runs after the
reader has its end, and where the reader asks for it, after its answer is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Self, TypeVar

from batchin.core.billing.metering import ClientGone
from batchin.core.serving.admission import Preempted, was_preempted
from batchin.errors import ServiceUnavailable
from batchin.models.base import TextDelta, ToolCallDelta
from batchin.models.tool_calls import assembled_calls

log = logging.getLogger("batchin.inference")


class SlowConsumer(ClientGone):
    """The reader stalled past the timeout with its buffer full."""


_END = object()
T = TypeVar("T")


@dataclass(slots=True)
class GenerationStats:
    prompt_tokens: int
    completion_tokens: int = 0
    queued_seconds: float = 0.0
    admitted_at: float = 0.0
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str | None = None
    text_parts: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallDelta] = field(default_factory=list)

    def output_text(self) -> str:
        """What the call produced, as its audit record and the prompt registry keep it: the text,
        then any tool calls as one JSON line."""
        text = "".join(self.text_parts)
        if not self.tool_calls:
            return text
        calls = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in assembled_calls(self.tool_calls)
        ]
        line = json.dumps({"tool_calls": calls}, ensure_ascii=False)
        return f"{text}\n{line}" if text else line

    @property
    def ttft_seconds(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.admitted_at

    @property
    def decode_seconds(self) -> float | None:
        if self.first_token_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.first_token_at


class BufferedStream(Generic[T]):
    """A producer task feeding a bounded buffer that one reader drains (text deltas, audio bytes).

    `start(produce)` runs `produce(stream, opened)` in its own task and returns once the producer
    has called `open(opened)` (admitted, or its engine answering), or raises its refusal, so that a
    refusal is still an ordinary error response. Reading ends with the producer's end or error;
    a reader that stops early (`aclose`, or closing its iterator) cancels the producer."""

    def __init__(self, *, buffer_size: int, stall_timeout: float) -> None:
        # A deque and at most one waiter on each side (one producer, one reader), not an
        # asyncio.Queue: per item that is an append and a pop instead of about a dozen calls.
        self._items: deque[T] = deque()
        self._capacity = max(1, buffer_size)
        self._reader: asyncio.Future[None] | None = None  # the reader, waiting for an item or the end
        self._room: asyncio.Future[None] | None = None  # the producer, waiting for space
        self._stall_timeout = stall_timeout
        self._task: asyncio.Task[None] | None = None
        self._final: object = None  # _END or the producer's exception, once it is done
        self._stopping = False
        self._epilogue: Callable[[], None] | None = None  # see `set_epilogue`
        self._epilogue_held = False  # the reader runs it after its answer (`hold_epilogue`)

    async def start(self, produce: Callable[[Self, asyncio.Future[None]], Awaitable[None]]) -> None:
        """Run `produce` in its own task; returns once it has opened (or raises its refusal)."""
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[None] = loop.create_future()
        self._task = loop.create_task(self._run(produce, opened))
        try:
            # Not shielded: a cancel of this task cancels `opened` itself, which only the producer
            # completes, always after checking `done()`; the producer is then stopped here.
            await opened
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def _run(
        self,
        produce: Callable[[Self, asyncio.Future[None]], Awaitable[None]],
        opened: asyncio.Future[None],
    ) -> None:
        try:
            await produce(self, opened)
        except asyncio.CancelledError:
            if not opened.done():
                opened.cancel()
            # A reader still waiting (the cancellation came from elsewhere: shutdown, or its fill
            # slot taken by a call of higher priority) must not hang.
            if was_preempted(self._task):
                self._offer(Preempted())
            else:
                self._offer(ServiceUnavailable("The generation was stopped before it finished."))
            raise
        except Exception as exc:
            if not opened.done():
                opened.set_exception(exc)
            else:
                self._offer(exc)
        else:
            self.open(opened)  # a producer that ended without opening: its reader gets the end
            self._offer(_END)
        finally:
            if self._epilogue is not None:
                # Queued after the reader's wake-up, so a reader runs it first (see `aclose`): this
                # is for a call that no reader ends (refused before it opened, a reader gone).
                asyncio.get_running_loop().call_soon(self.run_epilogue)

    def set_epilogue(self, epilogue: Callable[[], None]) -> None:
        """Producer side, as it ends: what the call records once it is over (metrics, trace), run
        once after the reader has its end instead of before it: when the reading ends (`aclose`),
        after the reader's answer is sent where it holds it (`hold_epilogue`), or on the loop's next
        turn where nobody reads."""
        self._epilogue = epilogue

    def hold_epilogue(self) -> None:
        """Reader side: ending the reading leaves the epilogue to the reader, who runs it
        (`run_epilogue`) once its answer is out; if it never gets there, the loop does."""
        self._epilogue_held = True

    def run_epilogue(self) -> None:
        epilogue, self._epilogue = self._epilogue, None
        if epilogue is None:
            return
        try:
            epilogue()
        except Exception:  # the call's answer stands; what failed is only its record
            log.exception("recording a finished generation failed")

    @staticmethod
    def open(opened: asyncio.Future[None]) -> None:
        """Producer side: the call is under way; `start` returns to the reader."""
        if not opened.done():
            opened.set_result(None)

    def push_nowait(self, item: T) -> bool:
        """Producer side: hand one item to the reader if the buffer has room (True), without a
        coroutine per item; False: nothing was handed, `push` waits for room."""
        if len(self._items) >= self._capacity:
            return False
        self._items.append(item)
        self._wake_reader()
        return True

    async def push(self, item: T) -> None:
        """Producer side: hand one item to the reader, dropping a reader stalled past the timeout."""
        if len(self._items) >= self._capacity:
            deadline = asyncio.get_running_loop().time() + self._stall_timeout
            while len(self._items) >= self._capacity:
                left = deadline - asyncio.get_running_loop().time()
                room = self._room = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(room, max(0.0, left))
                except TimeoutError:
                    raise SlowConsumer(f"reader stalled for over {self._stall_timeout:.1f}s") from None
                finally:
                    self._room = None
        self._items.append(item)
        self._wake_reader()

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _offer(self, final: object) -> None:
        # The end (or an error) is kept beside the buffer, so it never displaces an item.
        self._final = final
        self._wake_reader()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._read()

    async def _read(self) -> AsyncIterator[T]:
        items = self._items
        try:
            while True:
                if items:
                    item = items.popleft()
                    room = self._room
                    if room is not None and not room.done():
                        room.set_result(None)
                    yield item
                    continue
                if self._final is not None:
                    break
                reader = self._reader = asyncio.get_running_loop().create_future()
                try:
                    await reader
                finally:
                    self._reader = None
            if isinstance(self._final, BaseException):
                raise self._final
        finally:
            await self.aclose()

    def batches(self) -> AsyncIterator[list[T]]:
        """As iterating, but everything buffered at each wake in one list: a reader that writes
        what it reads (an SSE stream) sends the items that arrived together in one write, and
        passes through its own layers once per wake rather than once per item. A batch counts
        against the buffer until the reader asks for the next one, so a reader never holds more
        than the buffer's size (a slow one is dropped as above)."""
        return self._read_batches()

    async def _read_batches(self) -> AsyncIterator[list[T]]:
        items = self._items
        try:
            while True:
                if items:
                    batch = list(items)
                    yield batch
                    if len(items) == len(batch):
                        items.clear()
                    else:  # the producer added more meanwhile: they stay for the next batch
                        for _ in batch:
                            items.popleft()
                    room = self._room
                    if room is not None and not room.done():
                        room.set_result(None)
                    continue
                if self._final is not None:
                    break
                reader = self._reader = asyncio.get_running_loop().create_future()
                try:
                    await reader
                finally:
                    self._reader = None
            if isinstance(self._final, BaseException):
                raise self._final
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop the producer (if still running) and wait until its call is settled; then its
        epilogue, unless the reader holds it (`hold_epilogue`)."""
        task = self._task
        if task is not None and not task.done():
            if not self._stopping:
                # Once: a reader's close and its response's close may both come here, and a second
                # cancel would interrupt the producer while it settles what was made.
                self._stopping = True
                task.cancel()
            await asyncio.wait({task})
        if not self._epilogue_held:
            self.run_epilogue()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task})
        if not self._epilogue_held:
            self.run_epilogue()


class TextGeneration(BufferedStream[TextDelta]):
    def __init__(self, *, buffer_size: int, stall_timeout: float, prompt_tokens: int) -> None:
        super().__init__(buffer_size=buffer_size, stall_timeout=stall_timeout)
        self.stats = GenerationStats(prompt_tokens=prompt_tokens)

    def admitted(self, admitted: asyncio.Future[None], queued_seconds: float) -> None:
        self.stats.queued_seconds = queued_seconds
        self.stats.admitted_at = time.monotonic()
        self.open(admitted)

    def _stamp(self, item: TextDelta) -> None:
        if self.stats.first_token_at is None and (item.text or item.tool_calls):
            self.stats.first_token_at = time.monotonic()

    def push_nowait(self, item: TextDelta) -> bool:
        # BufferedStream.push_nowait with the stamp, inline: this runs once per token.
        if self.stats.first_token_at is None and (item.text or item.tool_calls):
            self.stats.first_token_at = time.monotonic()
        items = self._items
        if len(items) >= self._capacity:
            return False
        items.append(item)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        return True

    async def push(self, item: TextDelta) -> None:
        self._stamp(item)
        await super().push(item)
