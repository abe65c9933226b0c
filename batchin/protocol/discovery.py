"""MCP discovery documents: the Server Card (SEP-2127) and the site's MCP Catalog.

Shapes follow the draft in modelcontextprotocol/experimental-ext-server-card (`schema.ts`,
`docs/discovery.md`): a card names the server, its remote endpoints and the headers a client must
send; it does not enumerate tools or resources (those are listed at runtime, `tools/list`), so
BatchIn points at them under its own `_meta` key. Optional fields left unset are omitted.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SERVER_CARD_SCHEMA = "https://static.modelcontextprotocol.io/schemas/v2/server-card.schema.json"
SERVER_CARD_MEDIA_TYPE: Final = "application/mcp-server-card+json"
CATALOG_SPEC_VERSION = "draft"


class _Document(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class CardInput(_Document):
    """A value the client supplies (or is given) for a URL variable or a header."""

    description: str | None = None
    isRequired: bool | None = None  # the card's JSON names (camelCase)
    isSecret: bool | None = None
    format: Literal["string", "number", "boolean", "filepath"] | None = None
    default: str | None = None
    placeholder: str | None = None
    value: str | None = None
    choices: list[str] | None = None


class CardHeader(CardInput):
    name: str
    variables: dict[str, CardInput] | None = None


class CardRemote(_Document):
    type: Literal["streamable-http", "sse"]
    url: str = Field(pattern=r"^(https?://[^\s]+|\{[a-zA-Z_][a-zA-Z0-9_]*\}[^\s]*)$")
    headers: list[CardHeader] | None = None
    variables: dict[str, CardInput] | None = None
    supportedProtocolVersions: list[str] | None = None


class ServerCard(_Document):
    schema_uri: str = Field(default=SERVER_CARD_SCHEMA, alias="$schema")
    name: str = Field(min_length=3, max_length=200, pattern=r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$")
    version: str = Field(max_length=255)
    description: str = Field(min_length=1, max_length=100)
    title: str | None = Field(default=None, min_length=1, max_length=100)
    websiteUrl: str | None = None
    remotes: list[CardRemote] | None = None
    meta: dict[str, Any] | None = Field(default=None, alias="_meta")


class CatalogEntry(_Document):
    identifier: str = Field(description="urn:air:{publisher domain}:{server name}")
    displayName: str
    type: Literal["application/mcp-server-card+json"] = SERVER_CARD_MEDIA_TYPE
    url: str = Field(description="where the Server Card is served")


class McpCatalog(_Document):
    specVersion: str = CATALOG_SPEC_VERSION
    entries: list[CatalogEntry]
