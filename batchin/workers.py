"""`batchin serve --workers N`: N API processes on one port, one set of engines.

The supervising process (the one the command started):
- holds the port; each API process listens on it with SO_REUSEPORT (the kernel hands each new
  connection to one of them);
- migrates the store once, before any API process starts;
- owns the model registry: embedded engines are loaded once, in worker processes of its own, and
  served to every API process over a Unix-socket relay (models/engine_relay.py);
- without Redis, creates the one rate-limit table all API processes share (shared_limiter.py);
- restarts an API process that dies — at once after a stable run, else after 1, 2, 4… seconds (at
  most a minute) while it keeps dying young, so a process that cannot start does not spin the
  machine — and on SIGTERM or SIGINT stops them all (each drains its requests and writes what it
  buffered), then its engines.

- on a SQLite file, owns the one group-commit writer: the API processes send it their ledger,
  receipt-log and trace writes by name (store/write_relay.py) and it commits them together, so
  the file has one writer however many processes serve.

What the API processes share through the store itself: the ledger, usage, receipts, batches and
webhooks (SQLite serialises the write transactions that remain per process, batch rows and
webhooks, with `BEGIN IMMEDIATE`; PostgreSQL uses row locks and `SKIP LOCKED` claiming, as for
replicas). Per process: admission queues and the auth cache (revocations still reach every
process through the shared limiter). Priorities hold across processes at the engines they share:
the relay admits the API processes' generations to one model by priority, and a fill generation
gives way to another process's interactive call there too (models/engine_relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from batchin.config import Settings
from batchin.cpus import usable_cpus
from batchin.models.catalog import load_catalog
from batchin.models.engine_relay import EngineRelay, RelayAddress
from batchin.models.registry import ModelRegistry
from batchin.shared_limiter import create_limiter_file
from batchin.store.database import Database
from batchin.store.group_commit import sqlite_file
from batchin.store.migrate import upgrade
from batchin.store.write_relay import WRITER_SOCKET, WriteRelay

__all__ = [
    "RestartBackoff",
    "configure_logging",
    "default_workers",
    "relay_folder",
    "remove_stale_relay_folders",
    "serve_workers",
]

log = logging.getLogger("batchin")

_STOP_SECONDS = 20.0  # an API process's graceful shutdown (10 s for requests) plus its flushes
_WATCH_SECONDS = 1.0  # how often the supervisor looks for API processes that died
_RELAY_PREFIX = "batchin-relay-"


@dataclass
class RestartBackoff:
    """When an API process that died may start again: at once after a death that ended a stable
    run (`stable` seconds or more up), then after `first`, twice that, … up to `longest` seconds
    while each new process dies younger than `stable` (a bad deploy, a port or disk it cannot use)."""

    first: float = 1.0
    longest: float = 60.0
    stable: float = 30.0
    early_deaths: int = 0

    def delay_after(self, lived: float) -> float:
        if lived >= self.stable:
            self.early_deaths = 0
            return 0.0
        self.early_deaths += 1
        return float(min(self.longest, self.first * 2 ** (self.early_deaths - 1)))


def relay_folder(root: Path | None = None) -> Path:
    """A new folder (mode 0700) for the relay's socket, named with this process's pid so that a
    later supervisor can tell when its owner is gone (remove_stale_relay_folders)."""
    base = root or Path(tempfile.gettempdir())
    remove_stale_relay_folders(base)
    return Path(tempfile.mkdtemp(prefix=f"{_RELAY_PREFIX}{os.getpid()}-", dir=base))


def remove_stale_relay_folders(root: Path) -> list[Path]:
    """Remove this user's relay folders whose supervisor is dead (one killed with SIGKILL had no
    chance to); returns them. Folders of live supervisors and of other users are left alone."""
    removed = []
    for folder in root.glob(f"{_RELAY_PREFIX}*-*"):
        owner = folder.name[len(_RELAY_PREFIX) :].split("-", 1)[0]
        try:
            if not owner.isdigit() or folder.stat().st_uid != os.getuid() or _alive(int(owner)):
                continue
        except OSError:  # gone meanwhile
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The HTTP clients log every upstream request at INFO: a line per call on the hot path.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def default_workers() -> int:
    """One API process per CPU this process may run on (a container's limit, not the host's count)."""
    return usable_cpus()


def serve_workers(settings: Settings, workers: int, log_level: str) -> None:
    # Bound, never listening: holds the port (a taken one fails here, at once) without joining the
    # group of listening sockets the kernel spreads connections over.
    reservation = _bind(settings.host, settings.port)
    try:
        asyncio.run(_Supervisor(settings, workers, log_level).run())
    finally:
        reservation.close()


def _bind(host: str, port: int) -> socket.socket:
    """A socket on the shared port. SO_REUSEPORT: each API process listens on a socket of its own
    and the kernel spreads new connections over them by their addresses, so the processes share the
    load even when all connections open at once (one shared accept queue would let whichever
    process woke first take them all)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _Supervisor:
    def __init__(self, settings: Settings, workers: int, log_level: str) -> None:
        self._settings = settings
        self._workers = workers
        self._log_level = log_level
        self._context = multiprocessing.get_context("spawn")
        self._processes: list[BaseProcess | None] = [None] * workers
        self._started_at = [0.0] * workers
        self._backoff = [RestartBackoff() for _ in range(workers)]
        self._restart_at: list[float | None] = [None] * workers  # when a dead one starts again
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        database = Database(self._settings.resolved_database_url, pool_size=1)
        try:
            await upgrade(database)  # once, before N processes could race to do it
        finally:
            await database.dispose()
        store_file = sqlite_file(database)
        settings = self._settings
        registry = ModelRegistry(load_catalog(settings.models), derived_dir=settings.data_dir / "models")
        folder = relay_folder()
        relay: EngineRelay | None = None
        writes: WriteRelay | None = None
        try:
            await registry.start()
            relay = EngineRelay(folder / "relay.sock", registry.runner)
            if store_file is not None:  # one writer for the SQLite file: every API process's writes
                writes = WriteRelay(folder / WRITER_SOCKET, relay.address[1], store_file)
            if not settings.redis_url:
                create_limiter_file(folder)
            for index in range(self._workers):
                self._start(index, relay.address)
            log.info("serving on %s:%d with %d API processes", settings.host, settings.port, self._workers)
            while not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), _WATCH_SECONDS)
                if not self._stopping.is_set():
                    self._restart_dead(relay.address)
        finally:
            await self._stop_all()  # first: API processes write what they buffered as they stop
            if writes is not None:
                await writes.close()
            if relay is not None:
                await relay.close()
            await registry.close()
            shutil.rmtree(folder, ignore_errors=True)

    def _restart_dead(self, relay: RelayAddress) -> None:
        now = time.monotonic()
        for index, process in enumerate(self._processes):
            if process is None or process.is_alive():
                continue
            due = self._restart_at[index]
            if due is None:
                delay = self._backoff[index].delay_after(now - self._started_at[index])
                due = self._restart_at[index] = now + delay
                log.warning(
                    "API process %d exited with %s; starting it again in %.0fs",
                    index,
                    process.exitcode,
                    delay,
                )
            if now >= due:
                self._restart_at[index] = None
                self._start(index, relay)

    def _start(self, index: int, relay: RelayAddress) -> None:
        process = self._context.Process(
            target=_api_process,
            args=(relay, self._log_level, os.getpid()),
            name=f"batchin-api-{index}",
        )
        process.start()
        self._processes[index] = process
        self._started_at[index] = time.monotonic()

    async def _stop_all(self) -> None:
        running = [p for p in self._processes if p is not None and p.is_alive()]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid or 0, signal.SIGTERM)
        for process in running:
            await asyncio.to_thread(process.join, _STOP_SECONDS)
            if process.is_alive():
                log.warning("API process %s did not stop in %.0fs; killing it", process.name, _STOP_SECONDS)
                process.kill()
                await asyncio.to_thread(process.join, 5)


def _api_process(relay: RelayAddress, log_level: str, parent: int) -> None:
    """One API process: the app on its own socket on the shared port, on the supervisor's engines."""
    import uvicorn

    from batchin.app import create_app

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # until the server's own handler (ApiServer) takes over
    _exit_with_parent(parent)
    configure_logging()
    settings = Settings.load()
    config = uvicorn.Config(
        create_app(settings, relay=relay, freeze_heap=True),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = _api_server_class()(config)
    listener = _bind(settings.host, settings.port)
    listener.listen(2048)
    server.run(sockets=[listener])


def _api_server_class() -> Any:
    import uvicorn

    class ApiServer(uvicorn.Server):
        """Ctrl-C reaches the whole process group: the supervisor decides when API processes stop
        (one SIGTERM each), so a SIGINT here never turns their graceful shutdown into a forced one."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig != signal.SIGINT:
                super().handle_exit(sig, frame)

    return ApiServer


def _exit_with_parent(parent: int) -> None:
    """SIGTERM when the supervisor dies, however it dies (Linux), so no API process is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc: Any = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
