"""The message protocol between the API process and an engine worker (engine_host.py), over one
multiprocessing `Connection` (pickle). Tuples, not classes, so a token costs one small pickle.

Worker → API, once at start:
    ("ready", {attribute: value})          the runner loaded; the attributes the proxy asked for
    ("failed", error)                      build or load raised (a Python error, not a crash)
API → worker:
    ("call", id, method, args, kwargs)     await runner.method(*args, **kwargs) → result | error
    ("stream", id, method, args, kwargs, admission)
                                           async for x in runner.method(*args, **kwargs) → item… end | error;
                                           `admission`: None, or the call's (priority, preemptible) —
                                           an engine worker serves its one API process in order and
                                           ignores it; the relay of `serve --workers` admits the API
                                           processes' calls to one engine by it (engine_relay.py)
    ("cancel", id)                         stop that call or stream (its generator is closed)
    None                                   close the runner and exit
Worker → API, per call:
    ("result", id, value) · ("item", id, value) · ("end", id) · ("error", id, error)
    ("stopped", id)                        a cancelled call has ended: its engine is free again

A stream preempted at the relay ends with ("error", id, Preempted) (batchin/errors.py).

`error` is a `WireError`: a BatchInError crosses whole (class, message, param, headers), so a 400
naming its parameter stays that 400; anything else arrives as an internal error naming its type.
A worker that dies sends nothing: the API side sees end-of-file on the pipe.
"""

from __future__ import annotations

import importlib
import queue
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any

from batchin.errors import BatchInError, RateLimited

__all__ = ["Admission", "PipeSender", "WireError", "resolve"]

# A call's admission class (batchin/admission_pool.py's Priority as an int) and whether it is preemptible.
Admission = tuple[int, bool]


@dataclass(frozen=True, slots=True)
class WireError:
    cls: str  # "module:QualName" of a BatchInError subclass, or "" for any other exception
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # a RateLimited's own (batch tasks wait it out)

    @classmethod
    def of(cls, exc: BaseException) -> WireError:
        if isinstance(exc, BatchInError):
            kind = type(exc)
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            name = f"{kind.__module__}:{kind.__qualname__}"
            return cls(name, exc.message, exc.param, dict(exc.headers), retry_after)
        return cls("", f"{type(exc).__name__}: {exc}")

    def exception(self) -> BatchInError:
        """The error to raise in the API process (never the worker's traceback)."""
        kind: type[BatchInError] = BatchInError
        if self.cls:
            try:
                found = resolve(self.cls)
            except (ImportError, AttributeError):
                found = None
            if isinstance(found, type) and issubclass(found, BatchInError):
                kind = found
        # Not kind(...): a subclass may take other arguments (RateLimited's retry_after); the
        # headers it derived from them are carried over already.
        error = kind.__new__(kind)
        BatchInError.__init__(error, self.message, param=self.param, headers=self.headers)
        if isinstance(error, RateLimited):
            error.retry_after = self.retry_after or 0.0
        return error


def resolve(target: str) -> Any:
    """`"module:Name"` → the object: how the registry names engines and proxies, and how a worker
    finds the runner it hosts or the function it renders with."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


# A message this small goes out from the event loop at once (a token, a call); a larger one (an
# image, an uploaded recording) through the sender's thread.
_DIRECT_BYTES = 16 * 1024


class PipeSender:
    """Sends on a pipe without blocking the event loop on a large message. Both ends of a pipe may
    write large messages at the same time (a reply while the other side uploads); a blocking write
    on each side's loop would then wait for a read that never comes. Large messages (and any
    message while one is still queued, to keep the order) are written by a thread of their own, so
    the loop keeps reading. `send` raises OSError only for a direct write; a failed threaded write
    is dropped, the reader seeing end-of-file when the other side is gone."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn = conn
        self._name = name
        self._writing = threading.Lock()  # one writer at a time on the pipe
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._queued = 0  # messages handed to the thread and not yet written
        self._counting = threading.Lock()  # `+=` and `-=` from two threads are not atomic
        self._thread: threading.Thread | None = None

    def send(self, message: object) -> None:
        data = bytes(ForkingPickler.dumps(message))
        if len(data) <= _DIRECT_BYTES and self._queued == 0 and self._writing.acquire(blocking=False):
            try:
                self._conn.send_bytes(data)
            finally:
                self._writing.release()
            return
        with self._counting:
            self._queued += 1
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_forever, name=self._name, daemon=True)
            self._thread.start()
        self._queue.put(data)

    def _write_forever(self) -> None:
        while (data := self._queue.get()) is not None:
            with self._writing:
                try:
                    self._conn.send_bytes(data)
                except (OSError, ValueError):  # the other side is gone, or the pipe closed
                    pass
                finally:
                    with self._counting:
                        self._queued -= 1

    def close(self) -> None:
        """Stop the thread after what is queued has been written."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)
