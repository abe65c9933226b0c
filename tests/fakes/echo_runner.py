"""A scripted TextRunner whose answer is its system prompt's words, one delta per word (then the
scripted tokens when there is no system prompt): a different prompt gives a different answer, so
prompt experiments can be exercised without a model. Options as ScriptedRunner's.

Register it with `engines={"echo": "tests.fakes.echo_runner:EchoRunner"}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

from batchin.models.base import ChatParams, PreparedPrompt, TextDelta
from tests.fakes.scripted_runner import ScriptedRunner


class EchoRunner(ScriptedRunner):
    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        prepared = await super().prepare_chat(params)
        system = " ".join(m.content for m in params.messages if m.role == "system")
        words = [f" {w}" if i else w for i, w in enumerate(system.split())]
        return replace(prepared, payload=words or None)

    async def generate(self, prepared: PreparedPrompt) -> AsyncIterator[TextDelta]:
        if prepared.payload is None:
            async for delta in super().generate(prepared):
                yield delta
            return
        saved = self.tokens
        self.tokens = list(prepared.payload)
        try:
            async for delta in super().generate(prepared):
                yield delta
        finally:
            self.tokens = saved
