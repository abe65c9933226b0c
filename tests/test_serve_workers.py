"""`batchin serve --workers 2` on SQLite, no Redis: both API processes take connections on the one
port; a key's RPM is one budget across them and its revocation reaches both (the supervisor's shared
limiter); every chat call is billed, logged and receipted exactly once; the embedded engine is
loaded once, by the supervisor, and no API process starts one; SIGTERM stops the whole tree."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.live_server import BATCHIN, free_port, wait_healthy
from tests.process_tree import children, connections_held, is_spawned_python, listeners

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"  # the default catalog's always_on model
CREDIT_CENTS = 100
UNITS_PER_CENT = 1_000_000


@dataclass(frozen=True)
class Served:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data: Path
    log: Path


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [str(BATCHIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env["BATCHIN_DATA_DIR"] = str(tmp_path / "data")
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(BATCHIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield Served(url, port, process, env, tmp_path / "data", log)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def fresh(method: str, url: str, **kwargs: Any) -> httpx2.Response:
    """One request on a connection of its own, so the kernel picks the API process anew."""
    with httpx2.Client(timeout=120.0) as client:
        return client.request(method, url, **kwargs)


def test_two_api_processes_share_limits_ledger_and_one_engine(served: Served) -> None:
    # /health answers once the first API process listens; the second may still be starting.
    deadline = time.monotonic() + 120
    while len(api := listeners(served.process.pid, served.port)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(api) == 2, served.log.read_text()
    # The engine worker is the supervisor's child; an API process starts none of its own.
    engines = [p for p in children(served.process.pid) if p not in api and is_spawned_python(p)]
    assert len(engines) == 1
    for pid in api:
        assert not [p for p in children(pid) if is_spawned_python(p)]

    # Both processes take connections: 24 held open at once are spread over both.
    clients = [httpx2.Client(timeout=30.0) for _ in range(24)]
    try:
        assert all(c.get(f"{served.url}/health").status_code == 200 for c in clients)
        held = [connections_held(pid, served.port) for pid in api]
        assert sum(held) == 24, held
        assert min(held) > 0, held
    finally:
        for c in clients:
            c.close()

    user = cli(
        served.env,
        "users",
        "create",
        "--email",
        "w@example.com",
        "--name",
        "W",
        "--credit-cents",
        str(CREDIT_CENTS),
    )
    owner = {"Authorization": f"Bearer {user['api_key']}"}
    limited = cli(served.env, "keys", "create", "--user", user["id"], "--rpm", "10")
    auth = {"Authorization": f"Bearer {limited['key']}"}

    codes = [fresh("GET", f"{served.url}/v1/users/me", headers=auth).status_code for _ in range(20)]
    assert codes == [200] * 10 + [429] * 10

    assert fresh("DELETE", f"{served.url}/v1/keys/{limited['id']}", headers=owner).status_code == 204
    after = [fresh("GET", f"{served.url}/v1/users/me", headers=auth).status_code for _ in range(6)]
    assert after == [401] * 6

    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 2}
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        chats = list(
            pool.map(
                lambda _: fresh("POST", f"{served.url}/v1/chat/completions", headers=owner, json=body),
                range(6),
            )
        )
    assert [r.status_code for r in chats] == [200] * 6, [r.text for r in chats]
    # The calls' ledger, receipt and trace writes went to the supervisor's one SQLite writer
    # (store/write_relay.py): it holds the store's file open, which migrating alone would not leave.
    store = str(served.data / "batchin.db")
    opened = {os.path.realpath(fd) for fd in (Path(f"/proc/{served.process.pid}/fd")).iterdir()}
    assert store in opened or os.path.realpath(store) in opened

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=60) == 0, served.log.read_text()
    assert not children(served.process.pid)

    with sqlite3.connect(served.data / "batchin.db") as db:
        logs, cost = db.execute(
            "SELECT COUNT(*), SUM(cost_units) FROM usage_logs WHERE user_id = ? AND status = 'succeeded'",
            (user["id"],),
        ).fetchone()
        (balance,) = db.execute("SELECT balance_units FROM users WHERE id = ?", (user["id"],)).fetchone()
        (held,) = db.execute(
            "SELECT COUNT(*) FROM reservations WHERE user_id = ? AND status = 'held'", (user["id"],)
        ).fetchone()
        (receipts,) = db.execute("SELECT COUNT(*) FROM vaas_records").fetchone()
    assert logs == 6
    assert cost > 0
    assert CREDIT_CENTS * UNITS_PER_CENT - balance == cost
    assert held == 0
    assert receipts == 6
