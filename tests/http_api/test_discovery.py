"""Public discovery: llms.txt (the llmstxt.org format, every link resolving), llms-full.txt and
agents.md (every MCP tool and resource named), the docs as Markdown (no path traversal), the MCP
Server Card (SEP-2127 draft schema, endpoint URL for the host asked) and the MCP Catalog."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from starlette.applications import Starlette

from batchin.config import Settings
from batchin.core.site_docs import SiteDocs, absolute_links
from batchin.http_api.endpoint import openapi_path
from batchin.protocol.prompts import ExperimentList, PromptList, PromptRegressionList
from batchin.resources import ALL_RESOURCES
from batchin.tools import ALL_TOOLS
from tests.http_api.server_card_schema import MCP_CATALOG_SCHEMA, SERVER_CARD_SCHEMA

BASE = "http://testserver"
SITE = SiteDocs.locate()

# The tools the issue names, and every tool and resource the MCP server registers.
ISSUE_TOOLS = [
    *("chat", "complete", "respond", "embed", "generate_image", "speak", "transcribe"),
    *("create_video", "get_video", "submit_batch", "get_batch", "cancel_batch", "list_batches"),
    *("list_models", "usage_summary", "create_audit_record", "verify_audit_record", "get_trace"),
]
MCP_TOOLS = sorted({*ISSUE_TOOLS, *(spec.function.__name__ for spec in ALL_TOOLS)})
MCP_RESOURCES = sorted(spec.uri for spec in ALL_RESOURCES)
DISCOVERY_PATHS = [
    "/llms.txt",
    "/llms-full.txt",
    "/agents.md",
    "/docs/quickstart.md",
    "/.well-known/mcp/server-card.json",
    "/.well-known/mcp/catalog.json",
    "/v1/mcp/server-card",
]


# -- llms.txt, parsed per llmstxt.org ---------------------------------------------------------------

_LINK_ITEM = re.compile(r"^- \[(?P<title>[^\]]+)\]\((?P<url>[^)\s]+)\)(?:: (?P<notes>.+))?$")


@dataclass(frozen=True)
class LlmsTxt:
    title: str
    summary: str
    details: str
    sections: dict[str, list[tuple[str, str]]]  # H2 title -> [(link title, url)]


def parse_llms_txt(text: str) -> LlmsTxt:
    """Strictly: an H1 first, then a blockquote, then prose without headings, then H2 sections that
    hold only Markdown list items of links (`- [title](url)` with optional `: notes`)."""
    lines = text.splitlines()
    assert re.match(r"^# \S", lines[0]), "llms.txt must open with one H1"
    rest = lines[1:]
    while rest and not rest[0].strip():
        rest.pop(0)
    quote = []
    while rest and rest[0].startswith(">"):
        quote.append(rest.pop(0).removeprefix(">").strip())
    assert quote, "the H1 must be followed by a > blockquote summary"
    details = []
    while rest and not rest[0].startswith("## "):
        assert not rest[0].startswith("#"), f"no headings before the H2 sections: {rest[0]!r}"
        details.append(rest.pop(0))
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in rest:
        if line.startswith("## "):
            current = line[3:].strip()
            assert current not in sections, f"duplicate section {current}"
            sections[current] = []
        elif line.strip():
            assert not line.startswith("#"), f"only H2 headings after the summary: {line!r}"
            match = _LINK_ITEM.match(line)
            assert match is not None, f"section lines must be link items: {line!r}"
            assert current is not None
            sections[current].append((match["title"], match["url"]))
    return LlmsTxt(lines[0][2:].strip(), " ".join(quote), "\n".join(details).strip(), sections)


@pytest.fixture
async def llms(client: httpx2.AsyncClient) -> LlmsTxt:
    response = await client.get("/llms.txt")
    assert response.status_code == 200
    return parse_llms_txt(response.text)


async def test_llms_txt_follows_the_format(llms: LlmsTxt) -> None:
    assert llms.title == "BatchIn"
    assert "MCP" in llms.summary
    assert "OpenAI-compatible" in llms.summary
    assert llms.details
    assert list(llms.sections)[-1] == "Optional"
    assert all(links for links in llms.sections.values())


async def test_every_llms_txt_link_resolves_on_this_server(client: httpx2.AsyncClient, llms: LlmsTxt) -> None:
    links = [url for section in llms.sections.values() for _, url in section]
    assert len(links) >= 15
    for url in links:
        assert url.startswith(f"{BASE}/"), f"{url} does not point at this server"
        response = await client.get(url.removeprefix(BASE))
        assert response.status_code == 200, (url, response.text[:200])


async def test_llms_txt_links_every_docs_page(llms: LlmsTxt) -> None:
    linked = {url for section in llms.sections.values() for _, url in section}
    pages = {f"{BASE}/docs/{page}.md" for page in SITE.pages()}
    assert pages
    assert pages <= linked, pages - linked


# -- the documents ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/llms.txt", "text/plain"), ("/llms-full.txt", "text/plain"), ("/agents.md", "text/markdown")],
)
async def test_root_documents_are_served_with_absolute_links(
    client: httpx2.AsyncClient, path: str, media_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert response.headers["access-control-allow-origin"] == "*"
    source = (SITE.root / path.lstrip("/")).read_text(encoding="utf-8")
    assert response.text == absolute_links(source, BASE)
    assert "](/" not in response.text


@pytest.mark.parametrize("path", ["/agents.md", "/llms-full.txt"])
async def test_every_mcp_tool_and_resource_is_described(client: httpx2.AsyncClient, path: str) -> None:
    text = (await client.get(path)).text
    for tool in MCP_TOOLS:
        assert f"`{tool}`" in text, f"{path} does not describe the MCP tool {tool}"
    for uri in MCP_RESOURCES:
        assert f"`{uri}`" in text, f"{path} does not describe the MCP resource {uri}"


async def test_agents_md_says_how_to_connect(client: httpx2.AsyncClient) -> None:
    text = (await client.get("/agents.md")).text
    for needle in (
        "/v1/mcp",
        "Authorization: Bearer",
        "batchin mcp",
        "BATCHIN_API_KEY",
        "http://HOST:PORT/v1",
    ):
        assert needle in text, needle
    for code in ("payment_required", "rate_limited", "Retry-After", "unauthorized", "invalid_request"):
        assert code in text, code


async def test_llms_full_covers_every_http_path(client: httpx2.AsyncClient, app: Starlette) -> None:
    text = (await client.get("/llms-full.txt")).text
    openapi = (await client.get("/openapi.json")).json()
    for path, operations in openapi["paths"].items():
        for method in operations:
            assert f"{method.upper()} `{path}`" in text, f"llms-full.txt lacks {method.upper()} {path}"


async def test_docs_pages_are_served_as_markdown(client: httpx2.AsyncClient) -> None:
    for page in SITE.pages():
        response = await client.get(f"/docs/{page}.md")
        assert response.status_code == 200, page
        assert response.headers["content-type"] == "text/markdown; charset=utf-8"
        source = (SITE.docs_dir / f"{page}.mdx").read_text(encoding="utf-8")
        assert response.text == absolute_links(source, BASE)


@pytest.mark.parametrize("path", ["/docs/quickstart", "/docs/quickstart.mdx", "/docs/reference/audit.md"])
async def test_docs_pages_answer_without_or_with_the_mdx_suffix(
    client: httpx2.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.text.startswith("---\ntitle: ")


@pytest.mark.parametrize("listing", [PromptList, PromptRegressionList, ExperimentList])
async def test_docs_links_in_api_answers_are_pages(
    client: httpx2.AsyncClient, listing: type[PromptList | PromptRegressionList | ExperimentList]
) -> None:
    """/v1/prompts, /v1/prompt-regressions and /v1/experiments answer with a `docs` path: a page."""
    link = listing(items=[]).docs
    response = await client.get(link)
    assert response.status_code == 200, link
    assert response.text.startswith("---\ntitle: ")


@pytest.mark.parametrize(
    "path",
    [
        "/docs/..%2F..%2Fpyproject.md",
        "/docs/..%2Fagents.md",
        "/docs/%2e%2e/%2e%2e/README.md",
        "/docs/tutorials%2F..%2F..%2Fllms.md",
        "/docs/.hidden.md",
        "/docs/%2Fetc%2Fpasswd.md",
        "/docs/quickstart.txt",
        "/docs/nope.md",
        "/docs/",
    ],
)
async def test_anything_but_a_docs_page_is_not_found(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", DISCOVERY_PATHS)
async def test_discovery_is_public(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.get(path)  # no Authorization header
    assert response.status_code == 200, response.text


async def test_discovery_is_public_in_openapi(client: httpx2.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in [*DISCOVERY_PATHS[:3], "/docs/{path:path}", *DISCOVERY_PATHS[4:6]]:
        assert paths[openapi_path(path)]["get"]["security"] == [], path


# -- MCP Server Card and Catalog -------------------------------------------------------------------


def check_server_card(card: dict[str, object]) -> None:
    errors = [
        e.message
        for e in Draft202012Validator(SERVER_CARD_SCHEMA, format_checker=FormatChecker()).iter_errors(card)
    ]
    assert errors == []


async def test_server_card_follows_the_draft_schema(client: httpx2.AsyncClient) -> None:
    response = await client.get("/.well-known/mcp/server-card.json")
    assert response.headers["content-type"] == "application/json"
    card = response.json()
    check_server_card(card)
    assert card["name"] == "tech.luminapath/batchin"
    assert card["version"] == "0.1.0"
    [remote] = card["remotes"]
    assert remote["type"] == "streamable-http"
    assert remote["url"] == f"{BASE}/v1/mcp"
    [auth] = remote["headers"]
    assert auth["name"] == "Authorization"
    assert auth["value"] == "Bearer {api_key}"
    assert auth["isRequired"] is True
    assert auth["isSecret"] is True
    assert set(auth["variables"]) == {"api_key"}
    assert "2025-06-18" in remote["supportedProtocolVersions"]
    meta = card["_meta"]["tech.luminapath/batchin"]
    assert meta["authentication"] == {"required": True, "schemes": ["bearer"]}
    assert meta["agents"] == f"{BASE}/agents.md"
    assert meta["openaiBaseUrl"] == f"{BASE}/v1"


async def test_server_card_answers_its_media_type_when_asked(client: httpx2.AsyncClient) -> None:
    response = await client.get(
        "/.well-known/mcp/server-card.json", headers={"Accept": "application/mcp-server-card+json"}
    )
    assert response.headers["content-type"] == "application/mcp-server-card+json"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["access-control-allow-origin"] == "*"
    check_server_card(response.json())


async def test_server_card_is_also_at_the_reserved_location(client: httpx2.AsyncClient) -> None:
    well_known = (await client.get("/.well-known/mcp/server-card.json")).json()
    reserved = await client.get("/v1/mcp/server-card")
    assert reserved.status_code == 200
    assert reserved.json() == well_known


async def test_catalog_points_at_the_card(client: httpx2.AsyncClient) -> None:
    response = await client.get("/.well-known/mcp/catalog.json")
    assert response.status_code == 200
    catalog = response.json()
    assert list(Draft202012Validator(MCP_CATALOG_SCHEMA).iter_errors(catalog)) == []
    [entry] = catalog["entries"]
    assert entry["identifier"] == "urn:air:testserver:batchin"
    assert entry["type"] == "application/mcp-server-card+json"
    assert entry["url"] == f"{BASE}/.well-known/mcp/server-card.json"
    card = await client.get(urlsplit(entry["url"]).path)
    assert card.status_code == 200
    assert card.json()["remotes"][0]["url"] == f"{BASE}/v1/mcp"


class TestBaseUrl:
    """Without BATCHIN_PUBLIC_BASE_URL the documents name the host the caller used when it is an
    allowed one, and the default public URL for any other (a forged Host is never echoed)."""

    @pytest.fixture
    def settings(self, tmp_path: Path, backend: str, postgres_url: str | None) -> Settings:
        return Settings(
            data_dir=tmp_path / "data",
            database_url=postgres_url if backend == "postgres" else None,
            redis_url=None,
            allowed_hosts="api.example.test, docs.example.test",
        )

    async def test_card_names_the_allowed_host_asked(self, app: Starlette) -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="https://api.example.test") as c:
            card = (await c.get("/.well-known/mcp/server-card.json")).json()
            catalog = (await c.get("/.well-known/mcp/catalog.json")).json()
            llms = (await c.get("/llms.txt")).text
        check_server_card(card)
        assert card["remotes"][0]["url"] == "https://api.example.test/v1/mcp"
        assert catalog["entries"][0]["url"] == "https://api.example.test/.well-known/mcp/server-card.json"
        assert catalog["entries"][0]["identifier"] == "urn:air:api.example.test:batchin"
        assert "(https://api.example.test/docs/quickstart.md)" in llms

    @pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:9000", "[::1]:8000"])
    async def test_loopback_names_are_allowed_by_default(self, app: Starlette, host: str) -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=f"http://{host}") as c:
            card = (await c.get("/.well-known/mcp/server-card.json")).json()
        assert card["remotes"][0]["url"] == f"http://{host}/v1/mcp"

    @pytest.mark.parametrize("path", DISCOVERY_PATHS)
    async def test_a_forged_host_is_never_echoed(self, app: Starlette, path: str) -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://api.example.test") as c:
            response = await c.get(path, headers={"Host": "evil.example"})
        assert response.status_code == 200, response.text
        assert "evil.example" not in response.text
        assert "http://127.0.0.1:8000/" in response.text


class TestConfiguredBaseUrl:
    """BATCHIN_PUBLIC_BASE_URL wins over the Host a request came with (a proxy may rewrite it)."""

    @pytest.fixture
    def settings(self, tmp_path: Path, backend: str, postgres_url: str | None) -> Settings:
        return Settings(
            data_dir=tmp_path / "data",
            database_url=postgres_url if backend == "postgres" else None,
            redis_url=None,
            public_base_url="https://api.luminapath.tech/",
        )

    async def test_card_and_links_name_the_configured_url(self, app: Starlette) -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://10.0.0.7:8000") as c:
            card = (await c.get("/.well-known/mcp/server-card.json")).json()
            llms = (await c.get("/llms.txt")).text
        assert card["remotes"][0]["url"] == "https://api.luminapath.tech/v1/mcp"
        assert "(https://api.luminapath.tech/agents.md)" in llms
