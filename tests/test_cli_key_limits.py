"""`batchin users create --rate-limit-rpm R --monthly-budget-cents B` and `batchin keys create
--scope S --model M --region G` (issue 13), as real subprocesses on a throwaway data dir (SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchin.protocol.accounts import ALL_SCOPES
from tests.conftest import bearer
from tests.test_cli import fails, http_client, ok

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def create(data_dir: Path, *extra: str) -> dict[str, object]:
    created: dict[str, object] = ok(
        data_dir,
        "users",
        "create",
        "--email",
        "ada@example.com",
        "--name",
        "Ada",
        "--credit-cents",
        "100",
        *extra,
    )
    return created


async def test_users_create_sets_the_first_keys_limits(data_dir: Path) -> None:
    created = create(data_dir, "--rate-limit-rpm", "7", "--monthly-budget-cents", "500")
    assert {"id", "email", "api_key"} <= set(created)
    [key] = ok(data_dir, "keys", "list", "--user", "ada@example.com")
    assert (key["rate_limit_rpm"], key["monthly_budget_cents"]) == (7, 500)
    assert (key["scopes"], key["models"]) == (list(ALL_SCOPES), [])
    async with http_client(data_dir) as client:
        response = await client.get("/v1/keys", headers=bearer(str(created["api_key"])))
    assert response.headers["x-ratelimit-limit"] == "7"


def test_users_create_without_limits_uses_the_configured_defaults(data_dir: Path) -> None:
    create(data_dir)
    [key] = ok(data_dir, "keys", "list", "--user", "ada@example.com")
    assert (key["rate_limit_rpm"], key["monthly_budget_cents"]) == (600, None)


def test_users_create_refuses_a_zero_rpm_and_creates_no_user(data_dir: Path) -> None:
    error = fails(
        data_dir, "users", "create", "--email", "ada@example.com", "--name", "Ada", "--rate-limit-rpm", "0"
    )
    assert (error["code"], error["param"]) == ("invalid_request", "rate_limit_rpm")
    assert ok(data_dir, "users", "list") == []


def test_keys_create_sets_scopes_and_models(data_dir: Path) -> None:
    create(data_dir)
    key = ok(data_dir, "keys", "create", "--user", "ada@example.com", "--scope", "inference", "--model", "m1")
    assert (key["scopes"], key["models"]) == (["inference"], ["m1"])
    error = fails(data_dir, "keys", "create", "--user", "ada@example.com", "--scope", "root")
    assert (error["code"], error["param"]) == ("invalid_request", "scopes.0")


def test_keys_create_binds_regions(data_dir: Path) -> None:
    create(data_dir)
    key = ok(data_dir, "keys", "create", "--user", "ada@example.com", "--region", "global")
    assert key["regions"] == ["global"]
    error = fails(data_dir, "keys", "create", "--user", "ada@example.com", "--region", "mars")
    assert (error["code"], error["param"]) == ("invalid_request", "regions")
