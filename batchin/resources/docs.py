"""batchin://docs/llms.txt and batchin://docs/agents.md: the same files /llms.txt and /agents.md serve."""

from __future__ import annotations

import asyncio

from batchin.core.site_docs import SiteDocs


async def llms_txt() -> str:
    """The llms.txt index of BatchIn's documentation (Markdown links to every page)."""
    return await asyncio.to_thread(SiteDocs.locate().document, "llms.txt")


async def agents_md() -> str:
    """How an agent connects to BatchIn and what each tool does, limits and error codes."""
    return await asyncio.to_thread(SiteDocs.locate().document, "agents.md")
