"""What the batch service tests share: the services with the batch workers (a module that drives
the dispatcher by hand sets `START_WORKERS = False`), and a user with a dollar of credit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from batchin.config import Settings
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.batch_fixtures import batch_services
from tests.conftest import MakeUser


@pytest.fixture
async def services(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Services]:
    start = getattr(request.module, "START_WORKERS", True)
    async with batch_services(settings, start=start) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user(credit_cents=100)
