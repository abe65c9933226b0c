"""The `batchin` command line, run as a real subprocess on a throwaway data dir (SQLite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from alembic.script import ScriptDirectory

from batchin.app import build_services, create_app
from batchin.config import Settings
from batchin.store.migrate import alembic_config
from tests.conftest import bearer

pytestmark = pytest.mark.slow

_SCRIPT = Path(sys.executable).with_name("batchin")
COMMAND = (
    [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from batchin.cli import main; main()"]
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BATCHIN_")}
    env["BATCHIN_DATA_DIR"] = str(data_dir)
    return subprocess.run([*COMMAND, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def ok(data_dir: Path, *args: str) -> Any:
    """Runs a command that must succeed and print exactly one JSON value on one line."""
    result = run(data_dir, *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def fails(data_dir: Path, *args: str) -> dict[str, Any]:
    """Runs a command that must fail with nothing on stdout and one error envelope on stderr."""
    result = run(data_dir, *args)
    assert result.returncode != 0
    assert result.stdout == ""
    body = json.loads(result.stderr.strip().splitlines()[-1])
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert "Traceback" not in result.stderr
    error: dict[str, Any] = body["error"]
    return error


def create_user(data_dir: Path, email: str = "ada@example.com", credit: int = 10_000) -> dict[str, Any]:
    created: dict[str, Any] = ok(
        data_dir, "users", "create", "--email", email, "--name", "Ada", "--credit-cents", str(credit)
    )
    return created


@asynccontextmanager
async def http_client(data_dir: Path) -> AsyncIterator[httpx2.AsyncClient]:
    """The HTTP API built on the same data dir, started after the commands ran (cold auth cache)."""
    settings = Settings(data_dir=data_dir, database_url=None, redis_url=None)
    services = await build_services(settings)
    try:
        transport = httpx2.ASGITransport(app=create_app(settings, services))
        async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await services.close()


def test_db_upgrade_prints_the_head_revision_and_is_repeatable(data_dir: Path) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert ok(data_dir, "db", "upgrade") == {"revision": head}
    assert ok(data_dir, "db", "upgrade") == {"revision": head}
    assert (data_dir / "batchin.db").is_file()


async def test_users_create_prints_a_key_that_the_api_accepts(data_dir: Path) -> None:
    created = create_user(data_dir, email="ada@example.com", credit=10_000)
    assert {"id", "email", "api_key"} <= set(created)
    assert created["email"] == "ada@example.com"
    assert created["credit_balance_cents"] == 10_000
    assert created["api_key"].startswith("batchin_api_")
    async with http_client(data_dir) as client:
        response = await client.get("/v1/users/me", headers=bearer(created["api_key"]))
    assert response.status_code == 200
    assert response.json() == {
        "id": created["id"],
        "email": "ada@example.com",
        "name": "Ada",
        "credit_balance_cents": 10_000,
        "currency": "USD",
    }


async def test_users_create_with_currency_cny_opens_a_cny_account(data_dir: Path) -> None:
    created = ok(
        data_dir, "users", "create", "--email", "li@example.cn", "--name", "Li", "--credit-cents", "700",
        "--currency", "cny", "--monthly-budget-cents", "500",
    )  # fmt: skip
    assert (created["currency"], created["credit_balance_cents"]) == ("CNY", 700)
    async with http_client(data_dir) as client:
        me = (await client.get("/v1/users/me", headers=bearer(created["api_key"]))).json()
        [key] = (await client.get("/v1/keys", headers=bearer(created["api_key"]))).json()
    assert (me["currency"], me["credit_balance_cents"]) == ("CNY", 700)
    assert (key["currency"], key["monthly_budget_cents"]) == ("CNY", 500)


def test_users_create_with_an_unknown_currency_fails_and_creates_nothing(data_dir: Path) -> None:
    error = fails(data_dir, "users", "create", "--email", "x@example.com", "--name", "X", "--currency", "EUR")
    assert (error["code"], error["param"]) == ("invalid_request", "currency")
    assert ok(data_dir, "users", "list") == []


def test_users_create_with_a_taken_email_fails_with_an_error_envelope(data_dir: Path) -> None:
    create_user(data_dir, email="ada@example.com")
    error = fails(data_dir, "users", "create", "--email", "ada@example.com", "--name", "Other")
    assert (error["code"], error["param"]) == ("invalid_request", "email")
    assert [u["email"] for u in ok(data_dir, "users", "list")] == ["ada@example.com"]


def test_users_credit_adds_to_the_balance(data_dir: Path) -> None:
    created = create_user(data_dir, credit=100)
    by_email = ok(data_dir, "users", "credit", "--user", "ada@example.com", "--cents", "250")
    assert (by_email["id"], by_email["credit_balance_cents"]) == (created["id"], 350)
    by_id = ok(data_dir, "users", "credit", "--user", created["id"], "--cents", "5", "--note", "goodwill")
    assert by_id["credit_balance_cents"] == 355
    assert (
        fails(data_dir, "users", "credit", "--user", "nobody@example.com", "--cents", "5")["code"]
        == "not_found"
    )


def test_users_list_shows_every_user_without_secrets(data_dir: Path) -> None:
    ada = create_user(data_dir, email="ada@example.com", credit=1)
    bob = create_user(data_dir, email="bob@example.com", credit=2)
    result = run(data_dir, "users", "list")
    assert result.returncode == 0, result.stderr
    assert ada["api_key"] not in result.stdout
    listed = json.loads(result.stdout)
    assert [(u["id"], u["email"], u["credit_balance_cents"]) for u in listed] == [
        (ada["id"], "ada@example.com", 1),
        (bob["id"], "bob@example.com", 2),
    ]


async def test_keys_create_list_and_revoke(data_dir: Path) -> None:
    user = create_user(data_dir)
    key = ok(
        data_dir,
        "keys",
        "create",
        "--user",
        user["email"],
        "--name",
        "ci",
        "--rpm",
        "30",
        "--budget-cents",
        "500",
    )
    assert key["key"].startswith("batchin_api_")
    assert (key["name"], key["rate_limit_rpm"], key["monthly_budget_cents"]) == ("ci", 30, 500)

    result = run(data_dir, "keys", "list", "--user", user["id"])
    assert result.returncode == 0, result.stderr
    assert key["key"] not in result.stdout
    assert user["api_key"] not in result.stdout
    assert {k["id"]: k["is_active"] for k in json.loads(result.stdout)} == {
        user["key_id"]: True,
        key["id"]: True,
    }

    assert ok(data_dir, "keys", "revoke", key["id"]) == {"id": key["id"], "revoked": True}
    assert fails(data_dir, "keys", "revoke", key["id"])["code"] == "not_found"
    async with http_client(data_dir) as client:
        refused = await client.get("/v1/users/me", headers=bearer(key["key"]))
        kept = await client.get("/v1/users/me", headers=bearer(user["api_key"]))
    assert refused.status_code == 401
    assert kept.status_code == 200


def test_keys_for_an_unknown_user_fail_with_not_found(data_dir: Path) -> None:
    assert fails(data_dir, "keys", "create", "--user", "nobody@example.com")["code"] == "not_found"


def test_users_demo_creates_a_demo_user_only_once(data_dir: Path) -> None:
    first = ok(data_dir, "users", "demo")
    assert first["created"] is True
    assert first["api_key"].startswith("batchin_api_")
    assert first["credit_balance_cents"] == 10_000
    second = ok(data_dir, "users", "demo")
    assert second["created"] is False
    assert "api_key" not in second
    assert [u["id"] for u in ok(data_dir, "users", "list")] == [first["id"]]


def test_users_demo_creates_nothing_when_users_exist(data_dir: Path) -> None:
    create_user(data_dir)
    assert ok(data_dir, "users", "demo")["created"] is False
    assert [u["email"] for u in ok(data_dir, "users", "list")] == ["ada@example.com"]
