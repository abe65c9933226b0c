"""The MCP Server Card and MCP Catalog shapes as JSON Schema (2020-12), written from the SEP-2127
draft (modelcontextprotocol/experimental-ext-server-card: `schema.ts`, the v2 card, generated there
with no extra properties allowed; `docs/discovery.md` for the catalog). Descriptions left out."""

from __future__ import annotations

from typing import Any

_INPUT_PROPERTIES: dict[str, Any] = {
    "description": {"type": "string"},
    "isRequired": {"type": "boolean"},
    "isSecret": {"type": "boolean"},
    "format": {"type": "string", "enum": ["string", "number", "boolean", "filepath"]},
    "default": {"type": "string"},
    "placeholder": {"type": "string"},
    "value": {"type": "string"},
    "choices": {"type": "array", "items": {"type": "string"}},
}

SERVER_CARD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$ref": "#/$defs/ServerCard",
    "$defs": {
        "Input": {"type": "object", "properties": _INPUT_PROPERTIES, "additionalProperties": False},
        "KeyValueInput": {
            "type": "object",
            "properties": {
                **_INPUT_PROPERTIES,
                "name": {"type": "string"},
                "variables": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Input"}},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "Remote": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["streamable-http", "sse"]},
                "url": {"type": "string", "pattern": r"^(https?://[^\s]+|\{[a-zA-Z_][a-zA-Z0-9_]*\}[^\s]*)$"},
                "headers": {"type": "array", "items": {"$ref": "#/$defs/KeyValueInput"}},
                "variables": {"type": "object", "additionalProperties": {"$ref": "#/$defs/Input"}},
                "supportedProtocolVersions": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["type", "url"],
            "additionalProperties": False,
        },
        "Icon": {
            "type": "object",
            "properties": {
                "src": {"type": "string", "format": "uri"},
                "mimeType": {"type": "string"},
                "sizes": {"type": "array", "items": {"type": "string"}},
                "theme": {"type": "string", "enum": ["light", "dark"]},
            },
            "required": ["src"],
            "additionalProperties": False,
        },
        "Repository": {
            "type": "object",
            "properties": {
                "url": {"type": "string", "format": "uri"},
                "source": {"type": "string"},
                "subfolder": {"type": "string"},
                "id": {"type": "string"},
            },
            "required": ["url", "source"],
            "additionalProperties": False,
        },
        "ServerCard": {
            "type": "object",
            "properties": {
                "$schema": {
                    "type": "string",
                    "pattern": r"^https://static\.modelcontextprotocol\.io/schemas/v2/server-card\.schema\.json$",
                },
                "name": {
                    "type": "string",
                    "minLength": 3,
                    "maxLength": 200,
                    "pattern": r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$",
                },
                "version": {"type": "string", "maxLength": 255},
                "description": {"type": "string", "minLength": 1, "maxLength": 100},
                "title": {"type": "string", "minLength": 1, "maxLength": 100},
                "websiteUrl": {"type": "string", "format": "uri"},
                "repository": {"$ref": "#/$defs/Repository"},
                "icons": {"type": "array", "items": {"$ref": "#/$defs/Icon"}},
                "remotes": {"type": "array", "items": {"$ref": "#/$defs/Remote"}},
                "_meta": {"type": "object"},
            },
            "required": ["$schema", "name", "version", "description"],
            "additionalProperties": False,
        },
    },
}

MCP_CATALOG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "specVersion": {"type": "string"},
        "entries": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "identifier": {"type": "string", "pattern": r"^urn:air:[^:\s]+(:[^:\s]+)*$"},
                    "displayName": {"type": "string", "minLength": 1},
                    "type": {"const": "application/mcp-server-card+json"},
                    "url": {"type": "string", "format": "uri"},
                },
                "required": ["identifier", "displayName", "type", "url"],
            },
        },
    },
    "required": ["specVersion", "entries"],
}
