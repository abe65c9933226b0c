"""The prompt registry as MCP prompts (prompts/list, prompts/get), so a desktop client can pick a
registered prompt: each registered version by its id (`support@v2`), and `<registry>@promoted` for
the version that holds the registry's `promoted` label. The arguments are the template's
`{{variables}}`; prompts/get renders the template with them as one user message (MCP prompt
messages have no system role), and names the version it resolved in `_meta`, to pass to chat as
`prompt_version` so the runs are attributed to it.

Tenant-scoped like GET /v1/prompts: the caller sees only its own registries, and needs the
`account:read` scope (without it the list is empty and prompts/get is refused). The caller is bound
by the caller middleware for each prompts/list and prompts/get.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastmcp.exceptions import PromptError
from fastmcp.prompts.base import Message, Prompt, PromptArgument, PromptResult
from fastmcp.server.providers import Provider
from fastmcp.utilities.components import FastMCPComponent
from fastmcp.utilities.versions import VersionSpec
from pydantic import Field

from batchin.core.prompts.templates import MissingVariable, render
from batchin.errors import NotFound
from batchin.mcp_server.caller import current
from batchin.protocol.accounts import Scope
from batchin.protocol.prompts import PromptTemplate
from batchin.resources.prompts import PromptResourceDeps

__all__ = ["PROMPT_SCOPE", "PROMPT_VERSION_META_KEY", "RegistryPrompts"]

PROMPT_SCOPE: Scope = "account:read"  # checked for prompts/get by the caller middleware
PROMPT_VERSION_META_KEY = "batchin.tech/prompt_version"


class RegisteredPrompt(Prompt):
    """One served template; rendering needs no further lookup."""

    served: PromptTemplate = Field(exclude=True)

    @classmethod
    def of(cls, served: PromptTemplate) -> RegisteredPrompt:
        held = f"the `promoted` label of {served.registry_id}: " if served.label else ""
        return cls(
            name=served.name,
            title=served.name,
            description=f"System prompt {held}{served.version_id} ({served.status}) from your prompt "
            f"registry. Pass prompt_version='{served.version_id}' to chat to attribute the run.",
            arguments=[
                PromptArgument(name=name, description=f"Value for {{{{{name}}}}}.", required=True)
                for name in served.variables
            ],
            meta={PROMPT_VERSION_META_KEY: served.version_id},
            served=served,
        )

    async def render(self, arguments: dict[str, Any] | None = None) -> PromptResult:
        values = {name: str(value) for name, value in (arguments or {}).items()}
        try:
            text = render(self.served.template, values)
        except MissingVariable as missing:
            raise PromptError(f"invalid_request: missing argument '{missing.name}'.") from None
        return PromptResult(
            [Message(text)],
            description=f"{self.served.version_id}, rendered",
            meta={PROMPT_VERSION_META_KEY: self.served.version_id},
        )


class RegistryPrompts(Provider):
    """The caller's registered prompt versions, read from the store on every list and get."""

    async def get_tasks(self) -> Sequence[FastMCPComponent]:
        return []  # asked once at start-up, with no caller; these prompts are never background tasks

    async def _list_prompts(self) -> Sequence[Prompt]:
        call = current()
        if PROMPT_SCOPE not in call.ctx.principal.scopes:
            return []
        deps = call.views.get(PromptResourceDeps)
        return [RegisteredPrompt.of(t) for t in await deps.prompts.templates(call.ctx.principal.user_id)]

    async def _get_prompt(self, name: str, version: VersionSpec | None = None) -> Prompt | None:
        call = current()
        deps = call.views.get(PromptResourceDeps)
        try:
            served = await deps.prompts.template(call.ctx.principal.user_id, name)
        except NotFound:
            return None
        return RegisteredPrompt.of(served)
