"""The console over the real ASGI app: signup by invite with mail to a local SMTP server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from batchin.config import Settings
from tests.console.chromium import CHROMIUM, Browser
from tests.console.live_site import Site, running_console_site
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


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The live server every console browser test shares (one start per test session)."""
    if CHROMIUM is None:
        pytest.skip(
            "chromium is not installed (apt-get install -y chromium): the console tests need a browser"
        )
    with running_console_site(tmp_path_factory.mktemp("console")) as live:
        yield live


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    opened = Browser(tmp_path / "profile")
    try:
        yield opened
    finally:
        opened.close()


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
