"""Reading an engine worker's resident memory from /proc."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from batchin.models.engine_stats import EngineWorkerStats, rss_bytes


def test_vmrss_is_read_in_bytes(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text("Name:\tpython\nVmPeak:\t 900 kB\nVmRSS:\t 2048 kB\n")
    assert rss_bytes(42, proc=tmp_path) == 2048 * 1024


def test_a_process_that_is_gone_has_no_rss(tmp_path: Path) -> None:
    assert rss_bytes(42, proc=tmp_path) is None


def test_a_zombie_without_vmrss_has_no_rss(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text("Name:\tpython\nState:\tZ (zombie)\n")
    assert rss_bytes(42, proc=tmp_path) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_this_process_has_a_resident_memory() -> None:
    rss = rss_bytes(os.getpid())
    assert rss is not None
    assert rss > 1024 * 1024


def test_a_worker_is_up_while_it_has_a_pid() -> None:
    assert EngineWorkerStats("m", pid=7, restarts=0, state="ready", rss_bytes=1).up
    assert not EngineWorkerStats("m", pid=None, restarts=1, state="restarting", rss_bytes=None).up
