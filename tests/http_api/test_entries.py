"""Which entry a request came in by (http_api/entries.py): hosts and path prefixes from
BATCHIN_ENTRIES, the global entry for anything else, and a refused typo at start-up."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from batchin.config import Settings
from batchin.http_api.entries import CHINA, GLOBAL, Entry, EntryMap, entry_of, link_base_of

ENTRIES = "api.example.com=global, api.example.cn=china, /cn=china, /cn/en=global"


def request(host: str, path: str = "/v1/models", app: object = None) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "app": app,
    }
    return Request(scope)


@pytest.fixture
def entries() -> EntryMap:
    return EntryMap.from_settings(Settings(entries=ENTRIES))


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("api.example.com", "/console", GLOBAL),
        ("api.example.cn", "/console", CHINA),
        ("API.EXAMPLE.CN:8443", "/v1/models", CHINA),  # any case, any port
        ("elsewhere.example", "/v1/models", GLOBAL),  # unmapped: the global entry
        ("api.example.com", "/cn", Entry("china", "CNY", "zh", "/cn")),  # a prefix wins over the host
        ("api.example.com", "/cn/docs/quickstart", Entry("china", "CNY", "zh", "/cn")),
        ("api.example.com", "/cn/en/docs", Entry("global", "USD", "en", "/cn/en")),  # longest prefix
        ("api.example.com", "/cnx", GLOBAL),  # a prefix matches whole path segments only
    ],
)
def test_the_entry_of_a_request(entries: EntryMap, host: str, path: str, expected: Entry) -> None:
    assert entries.of(request(host, path)) == expected


def test_each_entry_names_its_currency_and_language() -> None:
    assert (GLOBAL.name, GLOBAL.currency, GLOBAL.language) == ("global", "USD", "en")
    assert (CHINA.name, CHINA.currency, CHINA.language) == ("china", "CNY", "zh")


def test_no_entries_configured_means_global_everywhere() -> None:
    assert EntryMap.from_settings(Settings()).of(request("api.example.cn")) == GLOBAL


def test_a_json_object_configures_the_same_map() -> None:
    settings = Settings(entries='{"api.example.cn": "china", "/cn": "china"}')
    assert settings.entries == {"api.example.cn": "china", "/cn": "china"}


@pytest.mark.parametrize("value", ["api.example.cn=mars", "api.example.cn", "=china"])
def test_a_mistyped_entry_is_refused_at_start_up(value: str) -> None:
    with pytest.raises(ValidationError, match="expected HOST=global\\|china"):
        Settings(entries=value)


def test_entry_of_follows_the_running_apps_settings() -> None:
    china = SimpleNamespace(settings=Settings(entries="api.example.cn=china"))
    app = SimpleNamespace(state=SimpleNamespace(services=china))
    assert entry_of(request("api.example.cn", app=app)) == CHINA
    app.state.services = SimpleNamespace(settings=Settings())  # services rebuilt with other settings
    assert entry_of(request("api.example.cn", app=app)) == GLOBAL


def _app(settings: Settings) -> object:
    return SimpleNamespace(state=SimpleNamespace(services=SimpleNamespace(settings=settings)))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.cn", "https://api.example.cn"),  # the entry they came by, the configured scheme
        ("api.example.cn:8443", "https://api.example.cn:8443"),
        ("api.example.com", "https://api.example.com"),
        ("attacker.example", "https://console.example.com"),  # a host nobody mapped never makes a link
        ("", "https://console.example.com"),
    ],
)
def test_links_bring_people_back_through_their_entry(host: str, expected: str) -> None:
    settings = Settings(entries=ENTRIES, public_base_url="https://console.example.com/")
    assert link_base_of(request(host, "/console/signup", app=_app(settings))) == expected


def test_link_scheme_is_the_requests_without_a_configured_base() -> None:
    settings = Settings(entries="localhost=china", port=9000)
    assert link_base_of(request("localhost:9000", app=_app(settings))) == "http://localhost:9000"
    assert link_base_of(request("evil.example", app=_app(settings))) == "http://127.0.0.1:9000"
