"""The browser driver leaves no Chromium behind: close() ends the browser's whole process group,
and so does the watchdog when the process that started it is killed without a chance to clean up
(the orphaned headless renderers of interrupted runs used to spin at 66 % CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.console.chromium import CHROMIUM, Browser

pytestmark = pytest.mark.slow

_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): this test needs a real browser")


def browser_processes(group: int, profile: Path) -> list[int]:
    """The processes still running of the browser's group, or naming its profile (the crash
    handler runs in a session of its own). A killed one waiting to be reaped (a zombie) is not."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command's closing parenthesis: state, ppid, pgrp, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] not in ("Z", "X") and (int(fields[2]) == group or str(profile) in command):
            found.append(int(entry.name))
    return found


def wait_gone(group: int, profile: Path, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := browser_processes(group, profile)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_close_ends_the_whole_group(tmp_path: Path) -> None:
    browser = Browser(tmp_path / "profile")
    browser.goto("data:text/html,<h1>hello</h1>")
    assert browser.text("h1") == "hello"
    group = browser._process.pid
    assert os.getpgid(group) == group  # its own group, not the test runner's
    assert len(browser_processes(group, tmp_path)) > 1  # the browser and its helpers
    browser.close()
    assert wait_gone(group, tmp_path, timeout=2) == []


def test_a_killed_parent_takes_its_browser_along(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from tests.console.chromium import Browser\n"
        "browser = Browser(Path(sys.argv[1]))\n"
        "print(browser._process.pid, flush=True)\n"
        "sys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "profile")],
        cwd=_ROOT,
        env={**os.environ, "PYTHONPATH": str(_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        try:
            assert parent.stdout is not None
            group = int(parent.stdout.readline())
            assert browser_processes(group, tmp_path)
        finally:
            parent.kill()  # SIGKILL: no finaliser, no atexit
            parent.wait(timeout=20)
    assert wait_gone(group, tmp_path) == []
