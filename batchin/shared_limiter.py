"""The rate limiter every API process of `batchin serve --workers N` shares when no Redis is set: one
table in a file the supervisor creates in its private relay folder, mapped into each API process.

A key's RPM is one budget across the N processes, and a key revoked through one process is refused
by all of them on their next request, as the Redis limiter does across replicas — with no round trip
to another process on the hot path: a hit is an exclusive `flock` on the file, a few reads and one
write in the mapping, and the unlock (microseconds; the event loop waits that long at most).

The table: GCRA state (the same integer-microsecond arithmetic as InMemoryRateLimiter, limits.py),
one slot per bucket found by open addressing on the bucket name's 16-byte BLAKE2 digest, within a
window of `_PROBE` slots. A slot whose TAT has passed holds a fully refilled bucket — the same as no
bucket — so a new bucket may take it over without changing any decision; only when a whole window
is live does the new bucket take the slot that refills soonest (the in-memory limiter drops idle
buckets the same way once it holds 100,000). Times are CLOCK_MONOTONIC, one clock for every process
on the machine. Revoked keys: a second open-addressed set of digests.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

from batchin.core.billing.limits import MICROS_PER_SECOND, KeyRevoked, RateDecision, gcra
from batchin.models.engine_relay import RelayAddress

__all__ = ["LIMITER_FILE", "SharedMemoryRateLimiter", "create_limiter_file", "limiter_of"]

log = logging.getLogger("batchin")

LIMITER_FILE = "limiter"  # its name in the supervisor's relay folder
_BUCKETS = 1 << 17  # slots for buckets (3 MiB)
_REVOKED = 1 << 14  # slots for revoked keys (256 KiB)
_PROBE = 64
_SLOT = struct.Struct("<16sq")  # bucket digest, TAT in microseconds
_EMPTY = bytes(16)
_REVOKED_AT = _BUCKETS * _SLOT.size
_SIZE = _REVOKED_AT + _REVOKED * 16


def create_limiter_file(folder: Path) -> Path:
    """The supervisor's part: an empty table (mode 0600) for its API processes to open."""
    path = folder / LIMITER_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, _SIZE)  # reads as zeros: every slot empty
    finally:
        os.close(fd)
    return path


def _digest(name: str) -> bytes:
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


class SharedMemoryRateLimiter:
    """An API process's view of the supervisor's table: the RateLimiter protocol."""

    def __init__(self, path: Path, clock: Callable[[], float] | None = None) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._map = mmap.mmap(self._fd, _SIZE)
        self._clock: Callable[[], float] = clock or time.monotonic

    async def hit(self, bucket: str, limit_per_minute: int, *, key_id: str | None = None) -> RateDecision:
        digest = _digest(bucket)
        revoked = None if key_id is None else _digest(key_id)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if revoked is not None and self._find_revoked(revoked)[0]:
                raise KeyRevoked(key_id or "")
            now = round(self._clock() * MICROS_PER_SECOND)
            slot, tat = self._find_bucket(digest, now)
            decision, new_tat = gcra(tat, now, limit_per_minute)
            if decision.allowed:
                _SLOT.pack_into(self._map, slot * _SLOT.size, digest, new_tat)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return decision

    def _find_bucket(self, digest: bytes, now: int) -> tuple[int, int | None]:
        """The bucket's slot and TAT (None: no live state), or the slot a new bucket takes."""
        start = int.from_bytes(digest[:8], "little") % _BUCKETS
        free: int | None = None
        soonest, soonest_tat = start, None
        for step in range(_PROBE):
            slot = (start + step) % _BUCKETS
            found, tat = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if found == digest:
                return slot, tat
            if found == _EMPTY:  # the chain ends here: the bucket is not in the table
                return (slot if free is None else free), None
            if free is None and tat <= now:
                free = slot  # a refilled bucket: the same as none, free to take over
            if soonest_tat is None or tat < soonest_tat:
                soonest, soonest_tat = slot, tat
        if free is None:
            log.warning("shared rate limiter: %d live buckets in one window; dropping the oldest", _PROBE)
        return (soonest if free is None else free), None

    def _find_revoked(self, digest: bytes) -> tuple[bool, int | None]:
        """(revoked, the slot to record it in) for a key's digest."""
        start = int.from_bytes(digest[:8], "little") % _REVOKED
        for step in range(_PROBE):
            offset = _REVOKED_AT + ((start + step) % _REVOKED) * 16
            found = self._map[offset : offset + 16]
            if found == digest:
                return True, None
            if found == _EMPTY:
                return False, offset
        return False, None

    async def mark_revoked(self, key_id: str) -> None:
        digest = _digest(key_id)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            revoked, offset = self._find_revoked(digest)
            if not revoked and offset is not None:
                self._map[offset : offset + 16] = digest
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        if not revoked and offset is None:  # the other processes learn it when their caches expire
            log.warning("shared rate limiter: no room to share a revocation; other processes see it late")

    async def is_revoked(self, key_id: str) -> bool:
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            return self._find_revoked(_digest(key_id))[0]
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def close(self) -> None:
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1


def limiter_of(relay: RelayAddress) -> SharedMemoryRateLimiter:
    """An API process's limiter: the table beside its supervisor's relay socket."""
    return SharedMemoryRateLimiter(Path(relay[0]).parent / LIMITER_FILE)
