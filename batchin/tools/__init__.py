"""MCP tools: each a few lines over one core call (see registry.py for how they are registered)."""

from __future__ import annotations

from fastmcp import FastMCP

from batchin.tools import (
    account,
    batches,
    embeddings,
    keys,
    media,
    prompts,
    text,
    transcription,
    usage,
    videos,
)
from batchin.tools.registry import ToolSpec, register

__all__ = ["ALL_TOOLS", "register_tools"]

ALL_TOOLS: list[ToolSpec] = [
    *text.TOOLS,
    *embeddings.TOOLS,
    *media.TOOLS,
    *transcription.TOOLS,
    *videos.TOOLS,
    *batches.TOOLS,
    *account.TOOLS,
    *usage.TOOLS,
    *keys.TOOLS,
    *prompts.TOOLS,
]


def register_tools(mcp: FastMCP) -> None:
    register(mcp, ALL_TOOLS)
