"""The rate limiter the API processes of `serve --workers N` share without Redis (shared_limiter.py):
one table in a file, each process's own mapping of it. Decisions agree with the in-process limiter
to the microsecond, a key's budget is one across processes hitting it at once, a revocation made
through one is seen by all, and refilled buckets give their slots to new ones."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

import pytest

from batchin.core.billing.limits import InMemoryRateLimiter, KeyRevoked
from batchin.shared_limiter import SharedMemoryRateLimiter, create_limiter_file


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_decisions_match_the_in_process_limiter_across_two_mappings(tmp_path: Path) -> None:
    clock = Clock()
    path = create_limiter_file(tmp_path)
    a, b = SharedMemoryRateLimiter(path, clock), SharedMemoryRateLimiter(path, clock)
    reference = InMemoryRateLimiter(clock)
    try:
        for step in range(40):
            clock.now += 0.7 if step % 5 == 0 else 0.01
            mine = await (a if step % 2 else b).hit("key:k", 6, key_id="k")
            theirs = await reference.hit("key:k", 6, key_id="k")
            assert mine == theirs, step
        # Another bucket is a budget of its own.
        assert (await a.hit("key:other", 1)).allowed
        assert not (await b.hit("key:other", 1)).allowed
    finally:
        await a.close()
        await b.close()


async def test_a_revocation_through_one_mapping_reaches_the_others(tmp_path: Path) -> None:
    path = create_limiter_file(tmp_path)
    a, b = SharedMemoryRateLimiter(path), SharedMemoryRateLimiter(path)
    try:
        assert (await b.hit("key:k1", 10, key_id="k1")).allowed
        assert not await b.is_revoked("k1")
        await a.mark_revoked("k1")
        await a.mark_revoked("k1")  # twice: still one entry, still revoked
        assert await b.is_revoked("k1")
        with pytest.raises(KeyRevoked):
            await b.hit("key:k1", 10, key_id="k1")
        assert (await b.hit("key:k2", 10, key_id="k2")).allowed
    finally:
        await a.close()
        await b.close()


async def test_refilled_buckets_hand_their_slots_to_new_ones(tmp_path: Path) -> None:
    clock = Clock()
    limiter = SharedMemoryRateLimiter(create_limiter_file(tmp_path), clock)
    try:
        # Far more buckets than slots over time, each refilled (a minute later) before the next wave.
        for wave in range(3):
            for index in range(3000):
                assert (await limiter.hit(f"wave{wave}:{index}", 1)).allowed
            clock.now += 61
        assert (await limiter.hit("wave2:0", 1)).allowed  # refilled: allowed again
        assert not (await limiter.hit("wave2:0", 1)).allowed
    finally:
        await limiter.close()


def _hammer(path: str, hits: int, start: float, results: multiprocessing.Queue[int]) -> None:
    async def run() -> int:
        limiter = SharedMemoryRateLimiter(Path(path))
        while time.monotonic() < start:
            await asyncio.sleep(0.001)
        allowed = sum([(await limiter.hit("key:shared", 600)).allowed for _ in range(hits)])
        await limiter.close()
        return allowed

    results.put(asyncio.run(run()))


def test_one_budget_for_processes_hitting_it_at_once(tmp_path: Path) -> None:
    path = create_limiter_file(tmp_path)
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = context.Queue()
    start = time.monotonic() + 3.0  # both spawned and waiting, then both hit at once
    began = time.monotonic()
    workers = [context.Process(target=_hammer, args=(str(path), 5000, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    allowed = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(10)
    elapsed = time.monotonic() - began
    # 600 at once (the burst), plus one per 0.1 s that passed: never a hit more.
    assert 600 <= sum(allowed) <= 600 + int(elapsed * 10) + 1, (allowed, elapsed)
