"""The console over the real ASGI app: signup by invite with mail to a local SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from batchin.config import Settings
from tests.fakes.smtp_server import Mailbox, running_smtp


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    with running_smtp() as box:
        yield box


@pytest.fixture
def settings(tmp_path: Path, backend: str, postgres_url: str | None, mailbox: Mailbox) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url if backend == "postgres" else None,
        redis_url=None,
        public_base_url="http://testserver",
        db_pool_size=20,
        signup="invite",
        smtp_url=mailbox.url,
    )


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html[:2000]
    return found.group(1)


async def form_post(
    client: httpx2.AsyncClient, page: str, action: str, data: dict[str, str | list[str]]
) -> httpx2.Response:
    """Load `page`, then post `data` to `action` with the page's CSRF token, as the browser would."""
    loaded = await client.get(page)
    assert loaded.status_code == 200, loaded.text
    return await client.post(
        action, data={**data, "csrf_token": csrf_of(loaded.text)}, headers={"Origin": "http://testserver"}
    )
