"""batchin://prompts: your prompt registry, as GET /v1/prompts returns it; batchin://prompts/{name}:
one of your registered prompt templates, by the name prompts/list serves it under."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from batchin.core.prompts.service import PromptService
from batchin.mcp_server.caller import McpCall, current, uses
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


async def prompt_template(name: str, deps: PromptResourceDeps = uses(PromptResourceDeps)) -> str:
    """One of your prompt templates (`<registry>@<version>` or `<registry>@promoted`): the version it
    resolves to, its template and variables."""
    call = current()
    return (await deps.prompts.template(call.ctx.principal.user_id, name)).model_dump_json()


async def prompt_names(call: McpCall) -> list[str]:
    """Completion candidates for {name}: the caller's prompt names."""
    deps = call.views.get(PromptResourceDeps)
    return [t.name for t in await deps.prompts.templates(call.ctx.principal.user_id)]
