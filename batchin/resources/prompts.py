"""batchin://prompts: your prompt registry, as GET /v1/prompts returns it."""

from __future__ import annotations

from batchin.mcp_server.caller import current


async def prompts() -> str:
    """Your prompt registries with their promoted and latest versions and each version's runs."""
    call = current()
    return (await call.services.prompts.list_prompts(call.ctx.principal.user_id)).model_dump_json()
