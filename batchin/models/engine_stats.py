"""What /metrics shows of each engine worker process: a plain snapshot, taken at scrape time.

`EngineWorkerStats` is what `ModelRegistry.engine_workers()` returns, one per model whose engine runs
in a supervised worker (engine_supervisor.py); `rss_bytes` reads the worker's resident memory from
/proc (Linux), None where there is no worker or no /proc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["EngineWorkerStats", "rss_bytes"]

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class EngineWorkerStats:
    model: str
    pid: int | None  # None while no worker serves (restarting, crash loop, closed)
    restarts: int  # worker deaths followed by a restart attempt, since the model loaded
    state: str  # the supervisor's state (SupervisorState)
    rss_bytes: int | None  # the worker's resident memory now; None when there is no worker

    @property
    def up(self) -> bool:
        return self.pid is not None


def rss_bytes(pid: int, proc: Path = _PROC) -> int | None:
    """Resident set size of process `pid` in bytes (VmRSS), or None when it cannot be read (the
    process is gone, or there is no /proc)."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            return int(value) * 1024 if unit == "kB" else int(value)
    return None  # a zombie has no VmRSS line
