"""batchin://prompts: your prompt registry, as GET /v1/prompts returns it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from batchin.core.prompts.service import PromptService
from batchin.mcp_server.caller import current, uses
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class PromptResourceDeps:
    """What batchin://prompts uses."""

    prompts: PromptService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(prompts=services.prompts)


async def prompts(deps: PromptResourceDeps = uses(PromptResourceDeps)) -> str:
    """Your prompt registries with their promoted and latest versions and each version's runs."""
    call = current()
    return (await deps.prompts.list_prompts(call.ctx.principal.user_id)).model_dump_json()
