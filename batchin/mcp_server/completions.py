"""completion/complete: argument completion for the resource templates whose ids a client types
(model ids, batch ids, video ids, trace ids, prompt names), offering only what is the caller's: the
models its key may call, its own batches, videos, traces and prompts. A template the caller's key
lacks the scope for, an unknown reference, or a missing key completes to nothing; completing never
counts against the key's RPM limit (a client asks on every keystroke)."""

from __future__ import annotations

from mcp_types import Completion, CompletionArgument, CompletionContext, ResourceTemplateReference

from batchin.core.permissions import require_scope
from batchin.errors import BatchInError
from batchin.mcp_server.middleware import identify_caller
from batchin.mcp_server.runtime import McpRuntime
from batchin.resources import ALL_RESOURCES

__all__ = ["ArgumentCompletion"]

_MAX_VALUES = 100  # the MCP specification's cap per answer


class ArgumentCompletion:
    def __init__(self, runtime: McpRuntime) -> None:
        self._runtime = runtime
        self._specs = {spec.uri: spec for spec in ALL_RESOURCES if spec.candidates is not None}

    async def __call__(
        self, ref: object, argument: CompletionArgument, context: CompletionContext | None
    ) -> Completion:
        spec = self._specs.get(ref.uri) if isinstance(ref, ResourceTemplateReference) else None
        if spec is None or spec.candidates is None or f"{{{argument.name}}}" not in spec.uri:
            return Completion(values=[])
        try:
            call = await identify_caller(self._runtime, admit=False)
            if spec.scope is not None:
                require_scope(call.ctx.principal, spec.scope)
            values = await spec.candidates(call)
        except BatchInError:
            return Completion(values=[])
        matching = [value for value in values if value.startswith(argument.value)]
        return Completion(
            values=matching[:_MAX_VALUES], total=len(matching), has_more=len(matching) > _MAX_VALUES
        )
