"""Watching a multiprocessing Connection from an event loop (the engine workers' pipes, the engine
relay, the store's write relay)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from multiprocessing.connection import Connection


def watch_pipe(loop: asyncio.AbstractEventLoop, conn: Connection, on_readable: Callable[[], None]) -> None:
    """Call `on_readable` when the pipe has data, keeping its descriptor blocking: uvloop (what
    uvicorn runs on) makes a watched descriptor non-blocking, and `Connection.recv()` of a message
    larger than the pipe's buffer (an image, an audio upload, a block of writes) would then fail
    half-read with BlockingIOError, which looks like the peer's death. Readable means a message has
    begun, and its writer sends the rest at once, so a blocking read finishes promptly."""
    loop.add_reader(conn.fileno(), on_readable)
    os.set_blocking(conn.fileno(), True)
