"""Public discovery: llms.txt, llms-full.txt, agents.md, the docs as Markdown, the MCP Server Card
(SEP-2127) and the site's MCP Catalog. No key needed: they describe how to get one and use it.

Links and endpoint URLs name the base URL http_api/origin.py picks: BATCHIN_PUBLIC_BASE_URL when
set, else the host the caller used when it is an allowed one (a forged Host would otherwise point
agents, and their API keys, at the forger), else the server's own bind address and port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit

import orjson
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from starlette.requests import Request
from starlette.responses import Response

from batchin import __version__
from batchin.core.site_docs import SiteDocs, absolute_links
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.origin import PublicOrigin
from batchin.protocol.discovery import (
    SERVER_CARD_MEDIA_TYPE,
    CardHeader,
    CardInput,
    CardRemote,
    CatalogEntry,
    McpCatalog,
    ServerCard,
)
from batchin.services import Services

SERVER_NAME = "tech.luminapath/batchin"
SERVER_CARD_PATH = "/.well-known/mcp/server-card.json"
MCP_PATH = "/v1/mcp"
META_KEY = "tech.luminapath/batchin"

# The discovery draft asks for open CORS (the documents are public and read-only) and caching.
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET",
    "Access-Control-Allow-Headers": "Content-Type",
}
_DOCS_HEADERS = {**_CORS, "Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
_CARD_HEADERS = {**_CORS, "Cache-Control": "public, max-age=3600", "Vary": "Accept"}

_TEXT = "text/plain; charset=utf-8"
_MARKDOWN = "text/markdown; charset=utf-8"


@dataclass(frozen=True, slots=True)
class DiscoveryDeps:
    """What the discovery documents use: the rule for the base URL their links name."""

    origin: PublicOrigin

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(origin=PublicOrigin.from_settings(services.settings))


def base_url(request: Request, deps: DiscoveryDeps) -> str:
    return deps.origin.of(request)


def _document(
    request: Request, deps: DiscoveryDeps, name: str, media_type: str, language: str = "en"
) -> Response:
    text = absolute_links(SiteDocs.locate().document(name, language), base_url(request, deps))
    return Response(text, media_type=media_type, headers=_DOCS_HEADERS)


async def get_llms_txt(request: Request, deps: DiscoveryDeps) -> Response:
    # Always English, whatever Accept-Language says (http_api/language.py): the Chinese is at /zh/llms.txt.
    return _document(request, deps, "llms.txt", _TEXT)


async def get_llms_txt_zh(request: Request, deps: DiscoveryDeps) -> Response:
    return _document(request, deps, "llms.txt", _TEXT, language="zh")


async def get_llms_full_txt(request: Request, deps: DiscoveryDeps) -> Response:
    return _document(request, deps, "llms-full.txt", _TEXT)


async def get_agents_md(request: Request, deps: DiscoveryDeps) -> Response:
    return _document(request, deps, "agents.md", _MARKDOWN)


def markdown_page(request: Request, deps: DiscoveryDeps, path: str, language: str = "en") -> Response:
    """A docs page's MDX source, its root-relative links made absolute (the HTML pages are in
    routes/docs_pages.py, which answers the same paths to browsers)."""
    text = SiteDocs.locate().page(path, language)
    return Response(
        absolute_links(text, base_url(request, deps)), media_type=_MARKDOWN, headers=_DOCS_HEADERS
    )


def server_card(base: str) -> ServerCard:
    return ServerCard(
        name=SERVER_NAME,
        version=__version__,
        title="BatchIn",
        description="Text, embeddings, speech, images, video and batches on one billed, audited model API.",
        websiteUrl=f"{base}/llms.txt",
        remotes=[
            CardRemote(
                type="streamable-http",
                url=f"{base}{MCP_PATH}",
                headers=[
                    CardHeader(
                        name="Authorization",
                        description="Your BatchIn API key as a bearer token (the same key as the HTTP API).",
                        isRequired=True,
                        isSecret=True,
                        value="Bearer {api_key}",
                        variables={
                            "api_key": CardInput(
                                description="A BatchIn API key (batchin_api_...).",
                                isRequired=True,
                                isSecret=True,
                                placeholder="batchin_api_...",
                            )
                        },
                    )
                ],
                supportedProtocolVersions=[*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS],
            )
        ],
        meta={
            # The card lists no primitives (the draft leaves them to tools/list); these say where
            # they and the rest of the surface are described.
            META_KEY: {
                "authentication": {"required": True, "schemes": ["bearer"]},
                "openaiBaseUrl": f"{base}/v1",
                "openapi": f"{base}/openapi.json",
                "agents": f"{base}/agents.md",
                "llmsTxt": f"{base}/llms.txt",
                "llmsFullTxt": f"{base}/llms-full.txt",
                "tools": "listed at runtime by tools/list; described in agents.md",
                "resources": "listed at runtime by resources/list and resources/templates/list",
                "stdio": {"command": "batchin", "args": ["mcp"], "env": ["BATCHIN_API_KEY"]},
            }
        },
    )


def _json(document: ServerCard | McpCatalog, media_type: str) -> Response:
    body = document.model_dump(mode="json", by_alias=True, exclude_none=True)
    return Response(orjson.dumps(body), media_type=media_type, headers=_CARD_HEADERS)


async def get_server_card(request: Request, deps: DiscoveryDeps) -> Response:
    # The draft's media type for clients that ask for it; plain JSON for everyone else.
    accept = request.headers.get("accept", "")
    media_type = SERVER_CARD_MEDIA_TYPE if SERVER_CARD_MEDIA_TYPE in accept else "application/json"
    return _json(server_card(base_url(request, deps)), media_type)


async def get_mcp_catalog(request: Request, deps: DiscoveryDeps) -> Response:
    base = base_url(request, deps)
    # The URN's segments are ':'-separated: an IPv6 literal's colons would split it.
    publisher = (urlsplit(base).hostname or "localhost").replace(":", "-")
    entry = CatalogEntry(
        identifier=f"urn:air:{publisher}:{SERVER_NAME.split('/', 1)[1]}",
        displayName="BatchIn",
        url=f"{base}{SERVER_CARD_PATH}",
    )
    return _json(McpCatalog(entries=[entry]), "application/json")


def _text_endpoint(path: str, handler: Any, summary: str, content_type: str) -> Endpoint:
    return Endpoint(
        "GET",
        path,
        handler,
        summary,
        deps=DiscoveryDeps,
        public=True,
        content_type=content_type,
        tag="discovery",
    )


ENDPOINTS = [
    _text_endpoint(
        "/llms.txt", get_llms_txt, "llms.txt: what BatchIn is and links to its docs.", "text/plain"
    ),
    _text_endpoint(
        "/zh/llms.txt",
        get_llms_txt_zh,
        "llms.txt in Simplified Chinese: the same index, linking the pages translated so far.",
        "text/plain",
    ),
    _text_endpoint(
        "/llms-full.txt",
        get_llms_full_txt,
        "The whole reference in one file: HTTP paths, MCP tools and resources, auth, errors, limits.",
        "text/plain",
    ),
    _text_endpoint(
        "/agents.md", get_agents_md, "How an agent connects and what each MCP tool does.", "text/markdown"
    ),
    Endpoint(
        "GET",
        SERVER_CARD_PATH,
        get_server_card,
        "MCP Server Card (SEP-2127): the Streamable HTTP endpoint and its Bearer auth.",
        public=True,
        response_model=ServerCard,
        deps=DiscoveryDeps,
        tag="discovery",
        # The location the discovery draft reserves: <streamable-http-url>/server-card.
        extra_paths=(f"{MCP_PATH}/server-card",),
    ),
    Endpoint(
        "GET",
        "/.well-known/mcp/catalog.json",
        get_mcp_catalog,
        "MCP Catalog: the server cards this site publishes.",
        public=True,
        response_model=McpCatalog,
        deps=DiscoveryDeps,
        tag="discovery",
    ),
]
