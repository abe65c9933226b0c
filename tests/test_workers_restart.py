"""`batchin serve --workers N`'s supervisor: an API process that keeps dying is started again after
a growing pause (reset once one stays up), and relay folders left by a supervisor that was killed
(SIGKILL: no cleanup ran) are removed by the next one, never those of a live supervisor."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchin.config import Settings
from batchin.workers import RestartBackoff, _Supervisor, relay_folder, remove_stale_relay_folders


def test_restarts_back_off_while_processes_die_young_and_reset_after_a_stable_run() -> None:
    backoff = RestartBackoff(first=1.0, longest=60.0, stable=30.0)
    delays = [backoff.delay_after(lived=0.5) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    # One that stayed up long enough: its death is restarted at once, and the pauses start over.
    assert backoff.delay_after(lived=45.0) == 0.0
    assert backoff.delay_after(lived=2.0) == 1.0
    assert backoff.delay_after(lived=2.0) == 2.0


def dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_stale_relay_folders_of_dead_supervisors_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f"batchin-relay-{dead_pid()}-abc123"
    live = tmp_path / f"batchin-relay-{os.getpid()}-def456"
    legacy = tmp_path / "batchin-relay-xyz789"  # an older supervisor's: no pid to check
    unrelated = tmp_path / "other-99999999-folder"
    for folder in (stale, live, legacy, unrelated):
        folder.mkdir()
    (stale / "relay.sock").write_text("")

    assert remove_stale_relay_folders(tmp_path) == [stale]
    assert not stale.exists()
    assert live.exists()
    assert legacy.exists()
    assert unrelated.exists()


def test_a_new_relay_folder_is_private_named_by_its_owner_and_clears_stale_ones(tmp_path: Path) -> None:
    stale = tmp_path / f"batchin-relay-{dead_pid()}-abc123"
    stale.mkdir()
    folder = relay_folder(tmp_path)
    assert folder.parent == tmp_path
    assert folder.name.startswith(f"batchin-relay-{os.getpid()}-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not stale.exists()
    # Its own folder is not stale while it lives.
    assert remove_stale_relay_folders(tmp_path) == []


def test_the_supervisor_waits_out_the_pause_before_starting_a_dead_process_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHIN_DATA_DIR", str(tmp_path))
    supervisor = _Supervisor(Settings.load(), 1, "warning")
    dying = multiprocessing.get_context("spawn").Process(target=sys.exit, args=(3,))
    dying.start()
    dying.join(30)
    started: list[int] = []
    monkeypatch.setattr(supervisor, "_start", lambda index, relay: started.append(index))
    supervisor._processes[0] = dying
    supervisor._started_at[0] = time.monotonic() - 0.5  # it died young: a second's pause first

    supervisor._restart_dead(("unused", b""))
    due = supervisor._restart_at[0]
    assert started == []
    assert due is not None
    assert 0.5 < due - time.monotonic() <= 1.0
    supervisor._restart_dead(("unused", b""))  # watched again within the pause: still waiting
    assert started == []
    assert supervisor._restart_at[0] == due

    supervisor._restart_at[0] = time.monotonic() - 0.01  # the pause is over
    supervisor._restart_dead(("unused", b""))
    assert started == [0]
    assert supervisor._restart_at[0] is None
