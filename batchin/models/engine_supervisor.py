"""Keeps one engine worker running: starts it, notices its death, restarts it with backoff.

States (what the registry shows for the model):
    starting     the first start                                     → loading
    ready        a worker is serving                                 → the entry's status
    restarting   the worker died; waiting out the backoff or starting → loading
    crash_loop   `crash_loop_crashes` deaths within `crash_loop_window` → unavailable (+ reason);
                 still retried, every `crash_loop_delay` seconds, and ready again on its own
    failed       the first start raised a Python error (bad weights, missing library): the same
                 permanent unavailability as an in-process runner that failed to load
    closed

`restarts` counts deaths followed by a restart attempt (a crash loop's retries included); `pid` is the
serving worker's process id. Both feed /metrics through `ModelRegistry.engine_workers()`.

The backoff arithmetic is `RestartPolicy`, pure, so it is tested without processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from batchin.errors import ServiceUnavailable
from batchin.models.base import EngineUnavailable
from batchin.models.engine_client import EngineClient, EngineStartFailed

__all__ = ["EngineSupervisor", "RestartPolicy", "SupervisorState"]

log = logging.getLogger("batchin.models")

SupervisorState = Literal["starting", "ready", "restarting", "crash_loop", "failed", "closed"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    base_delay: float = 0.5  # after one death; doubles per recent death
    max_delay: float = 30.0
    crash_loop_crashes: int = 3
    crash_loop_window: float = 60.0
    crash_loop_delay: float = 60.0

    def recent(self, crashes: Sequence[float], now: float) -> list[float]:
        return [at for at in crashes if now - at <= self.crash_loop_window]

    def crash_loop(self, crashes: Sequence[float], now: float) -> bool:
        return len(self.recent(crashes, now)) >= self.crash_loop_crashes

    def delay(self, crashes: Sequence[float], now: float) -> float:
        """Seconds to wait before the next start, given the death times so far."""
        if self.crash_loop(crashes, now):
            return self.crash_loop_delay
        count = max(1, len(self.recent(crashes, now)))
        return float(min(self.max_delay, self.base_delay * 2 ** (count - 1)))


class EngineSupervisor:
    def __init__(
        self,
        name: str,
        start: Callable[[], Awaitable[EngineClient]],
        policy: RestartPolicy = RestartPolicy(),
        *,
        clock: Callable[[], float] = time.monotonic,
        restart_wait: float = 60.0,
    ) -> None:
        self._name = name
        self._start = start
        self._policy = policy
        self._clock = clock
        self._restart_wait = restart_wait  # how long a call waits for a restarting worker
        self._crashes: list[float] = []
        self._client: EngineClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.state: SupervisorState = "starting"
        self.reason: str | None = None
        self.restarts = 0

    async def start(self) -> None:
        """Start supervising; return once the first worker is ready, or the model is in a crash
        loop (still retried). A Python error from the first load raises EngineUnavailable."""
        self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"supervise-{self._name}")
        while self.state in ("starting", "restarting"):
            await self._wait_for_change()
        if self.state == "failed":
            raise EngineUnavailable(self.reason or "the engine failed to load")

    @property
    def client_now(self) -> EngineClient | None:
        return self._client

    @property
    def pid(self) -> int | None:
        """The serving worker's process id; None while none serves."""
        client = self._client
        return None if client is None else client.pid

    async def client(self) -> EngineClient:
        """The serving worker; a call arriving during a restart waits for it (bounded)."""
        deadline = self._clock() + self._restart_wait
        while self.state in ("starting", "restarting") and self._clock() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait_for_change(), max(0.0, deadline - self._clock()))
        client = self._client
        if self.state == "ready" and client is not None:
            return client
        detail = self.reason or "its engine is restarting"
        raise ServiceUnavailable(f"model {self._name} is unavailable: {detail}")

    async def _wait_for_change(self) -> None:
        await self._changed.wait()

    def _set(self, state: SupervisorState, reason: str | None) -> None:
        self.state, self.reason = state, reason
        # Wake everyone waiting, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _supervise(self) -> None:
        first = True
        while True:
            try:
                client = await self._start()
            except EngineStartFailed as exc:
                if first and not exc.crashed:
                    self._set("failed", str(exc))
                    return
                how = str(exc)
            except Exception as exc:  # could not even spawn: treat as a death, keep trying
                log.exception("engine %s could not be started", self._name)
                how = f"could not be started: {type(exc).__name__}: {exc}"
            else:
                self._client = client
                self._set("ready", None)
                log.info("engine %s ready (pid %s)", self._name, client.pid)
                how = f"engine process {await asyncio.shield(client.exited)}"
                self._client = None
                await client.close()
            first = False
            await self._died(how)

    async def _died(self, how: str) -> None:
        now = self._clock()
        self._crashes = self._policy.recent([*self._crashes, now], now)
        delay = self._policy.delay(self._crashes, now)
        if self._policy.crash_loop(self._crashes, now):
            reason = (
                f"crash loop: its engine process died {len(self._crashes)} times within"
                f" {self._policy.crash_loop_window:.0f}s (last: {how}); retrying every {delay:.0f}s"
            )
            log.error("model %s: %s", self._name, reason)
            self._set("crash_loop", reason)
        else:
            log.warning("model %s: %s; restarting in %.1fs", self._name, how, delay)
            self._set("restarting", f"restarting: {how}")
        await asyncio.sleep(delay)
        self.restarts += 1  # counted as the next start begins: a death followed by a restart attempt
        if self.state != "crash_loop":
            self._set("restarting", self.reason)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._client = self._client, None
        if client is not None:
            await client.close()
        self._set("closed", "closed")
