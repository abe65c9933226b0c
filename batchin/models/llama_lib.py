"""What every user of llama-cpp-python in this process needs once it is imported (the runner, the
grammar converter): its two /dev/null handles, which it keeps open for its whole life to silence
the C library, are closed at exit, so the interpreter does not warn about them at shutdown."""

from __future__ import annotations

import atexit

__all__ = ["close_devnull_at_exit"]


def _close_devnull_handles() -> None:
    from llama_cpp import _utils

    for handle in (_utils.outnull_file, _utils.errnull_file):
        handle.close()


def close_devnull_at_exit() -> None:
    """Idempotent: call after importing llama_cpp (and again after opening a model: harmless)."""
    atexit.unregister(_close_devnull_handles)
    atexit.register(_close_devnull_handles)
