"""Random ids from the OS's CSPRNG, read 4 KiB at a time: trace, span and run ids, completion ids,
the UUIDs of audit records and usage logs.

`secrets.token_hex` makes one `getrandom` system call per id, and CPython releases the GIL around
it: on a busy server each id handed the GIL to a SQLite writer thread and waited to get it back,
several times per call. Here one read serves ~200 ids; the bytes are the same kind (os.urandom),
each handed out once. A forked child starts with an empty pool, so it never repeats its parent's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

__all__ = ["time_ordered_hex", "token_hex", "uuid4_text", "uuid7_text", "uuid_text"]

_READ = 4096
_CHUNK = 16  # the most any of our ids takes from the pool (a UUID)


class _Pool:
    """The bytes of one read cut into 16-byte chunks, handed out by a list iterator. `next` on a
    list iterator is one C call, atomic under the GIL, so threads share the pool without a lock
    (a lock and a slice cost more than the id's hex). Two threads that find it empty at once each
    make their own list; no chunk is in two lists, so none is handed out twice."""

    def __init__(self) -> None:
        self._chunks: Iterator[bytes] = iter(())

    def take(self, nbytes: int) -> bytes:
        if nbytes > _CHUNK:
            return os.urandom(nbytes)
        for chunk in self._chunks:  # at most one turn: the next chunk, if any is left
            return chunk[:nbytes]
        fresh = os.urandom(_READ)
        self._chunks = iter([fresh[at : at + _CHUNK] for at in range(_CHUNK, _READ, _CHUNK)])
        return fresh[:nbytes]

    def reset(self) -> None:
        self._chunks = iter(())


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.reset)


def token_hex(nbytes: int) -> str:
    """`nbytes` random bytes as 2 * nbytes lowercase hex digits (as secrets.token_hex)."""
    return _POOL.take(nbytes).hex()


def time_ordered_hex(nbytes: int) -> str:
    """`nbytes` (at least 8) as hex: the current Unix time in milliseconds in the first 6 bytes, the
    rest random. For the keys of rows every call inserts (new trace ids): ids made later sort later,
    so their index inserts land on the index's last pages instead of a random leaf each, which SQLite
    has to read, dirty and write to the WAL again at every commit. Still unguessable and unique: 80
    random bits per millisecond for a 16-byte id."""
    return (_milliseconds() + _POOL.take(nbytes - 6)).hex()


def uuid7_text() -> str:
    """A time-ordered (version 7, RFC 9562) UUID in its text form: 48 bits of Unix milliseconds,
    74 random bits (see time_ordered_hex for why: audit record and usage log ids)."""
    return uuid_text(_milliseconds() + _POOL.take(10), 7)


def _milliseconds() -> bytes:
    """The current Unix time in milliseconds, 6 bytes big-endian (sorting as the time does)."""
    return (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF).to_bytes(6, "big")


def uuid4_text() -> str:
    """A random (version 4) UUID in its text form, as `str(uuid.uuid4())`."""
    return uuid_text(_POOL.take(16), 4)


def uuid_text(raw: bytes, version: int) -> str:
    """The text form of the UUID made of the first 16 bytes of `raw` with the RFC 4122 variant and
    `version` set, as `str(uuid.UUID(bytes=raw[:16], version=version))` without the UUID object
    (also for name-based ids: `raw` a hash)."""
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | (version << 4)
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
