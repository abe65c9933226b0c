"""The message protocol between the API process and an engine worker (engine_host.py), over one
multiprocessing `Connection` (pickle). Tuples, not classes, so a token costs one small pickle.

Worker → API, once at start:
    ("ready", {attribute: value})          the runner loaded; the attributes the proxy asked for
    ("failed", error)                      build or load raised (a Python error, not a crash)
API → worker:
    ("call", id, method, args, kwargs)     await runner.method(*args, **kwargs) → result | error
    ("stream", id, method, args, kwargs)   async for x in runner.method(*args, **kwargs) → item… end | error
    ("cancel", id)                         stop that call or stream (its generator is closed)
    None                                   close the runner and exit
Worker → API, per call:
    ("result", id, value) · ("item", id, value) · ("end", id) · ("error", id, error)

`error` is a `WireError`: a BatchInError crosses whole (class, message, param, headers), so a 400
naming its parameter stays that 400; anything else arrives as an internal error naming its type.
A worker that dies sends nothing: the API side sees end-of-file on the pipe.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from batchin.errors import BatchInError

__all__ = ["WireError", "resolve"]


@dataclass(frozen=True, slots=True)
class WireError:
    cls: str  # "module:QualName" of a BatchInError subclass, or "" for any other exception
    message: str
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException) -> WireError:
        if isinstance(exc, BatchInError):
            kind = type(exc)
            return cls(f"{kind.__module__}:{kind.__qualname__}", exc.message, exc.param, dict(exc.headers))
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
        return error


def resolve(target: str) -> Any:
    """`"module:Name"` → the object: how the registry names engines and proxies, and how a worker
    finds the runner it hosts or the function it renders with."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
