"""Shared fixtures: a fresh store per test on SQLite, and on PostgreSQL when
BATCHIN_TEST_POSTGRES_URL names a server (`.ci/run` starts one); the real ASGI app through httpx2."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy.engine import make_url
from starlette.applications import Starlette

from batchin.app import build_services, create_app
from batchin.config import Settings
from batchin.models.catalog import load_catalog
from batchin.models.registry import ModelRegistry
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.db_reset import empty_tables

POSTGRES_URL = os.environ.get("BATCHIN_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("BATCHIN_TEST_REDIS_URL")

BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


def pytest_configure(config: pytest.Config) -> None:
    _keep_to_a_share_of_the_cpus()


def _keep_to_a_share_of_the_cpus() -> None:
    """Under pytest-xdist (`make test` runs two test processes) each test process, and everything it
    starts (servers, engine processes, browsers: they inherit the mask), keeps to its own share of
    the CPUs. Engines size their thread pools to the CPUs they may use: two llama.cpp engines each
    sized for the whole machine spun against each other (the 20-seed structured test took 180 s
    instead of 20)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    index = int(worker[2:])
    share = cpus[index::count] if count <= len(cpus) else [cpus[index % len(cpus)]]
    os.sched_setaffinity(0, share)


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str | None]:
    """A throwaway PostgreSQL database for this test session (tables are emptied between tests)."""
    if not POSTGRES_URL:
        yield None
        return
    import asyncpg

    base = make_url(POSTGRES_URL)
    name = f"batchin_test_{uuid.uuid4().hex[:10]}"
    admin_dsn = base.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def model_registry() -> AsyncIterator[ModelRegistry]:
    """The built-in catalog, shared by the whole session: each engine loads once, on first use."""
    registry = ModelRegistry(load_catalog(None))
    try:
        yield registry
    finally:
        await registry.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str, postgres_url: str | None) -> Settings:
    database_url = postgres_url if backend == "postgres" else None
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=None,
        public_base_url="http://testserver",
        db_pool_size=20,
    )


@pytest.fixture
async def services(settings: Settings, model_registry: ModelRegistry) -> AsyncIterator[Services]:
    built = await build_services(settings, registry=model_registry)
    try:
        yield built
    finally:
        await empty_tables(built)
        await built.close()


@pytest.fixture
def app(services: Services) -> Starlette:
    # services.settings, not the settings fixture: a module's own `services` may override settings.
    return create_app(services.settings, services)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    transport = httpx2.ASGITransport(app=app, client=("203.0.113.9", 5555))
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


MakeUser = Callable[..., Awaitable[UserCreated]]


@pytest.fixture
def make_user(services: Services) -> MakeUser:
    async def make(
        credit_cents: int = 10_000, email: str | None = None, name: str = "Test User", currency: str = "USD"
    ) -> UserCreated:
        return await services.accounts.create_user(
            email or f"{uuid.uuid4().hex[:12]}@example.com", name, credit_cents, currency=currency
        )

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the error envelope with this status and code; returns the inner error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "param" in error
    assert "Traceback" not in response.text
    return dict(error)
