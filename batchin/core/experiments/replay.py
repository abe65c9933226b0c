"""Replaying a recorded run: the same conversation, with the system prompt swapped for another
version's template, through the same InferenceService call as live traffic.

Replays run at `fill` priority (only on capacity nothing else is waiting for), greedily
(temperature 0) with a fixed seed, on the model the run used, billed to the registry's owner like
any call (endpoint `prompt_replay` in usage logs). They are not themselves recorded in the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchin.core.context import CallContext
from batchin.core.prompts.templates import extract, render, variables_of
from batchin.core.serving.admission import Priority
from batchin.core.serving.inference import InferenceService
from batchin.core.serving.text_serving import collect_text
from batchin.protocol.text import ChatCompletionRequest

__all__ = ["REPLAY_ENDPOINT", "Replayed", "Replayer", "TemplateMismatch", "with_template"]

REPLAY_ENDPOINT = "prompt_replay"


@dataclass(frozen=True, slots=True)
class Replayed:
    output: str
    latency_ms: int  # engine time, queueing excluded (as recorded runs measure it)
    cost_units: int


class TemplateMismatch(ValueError):
    """A run's system prompt cannot be re-expressed with the candidate's template."""


class Replayer:
    def __init__(self, inference: InferenceService, *, seed: int) -> None:
        self._inference = inference
        self._seed = seed

    async def replay(
        self, ctx: CallContext, *, model_id: str, messages: list[dict[str, Any]], max_tokens: int
    ) -> Replayed:
        request = ChatCompletionRequest.model_validate(
            {
                "model": model_id,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": 0.0,
                "seed": self._seed,
            }
        )
        started = await self._inference.start_chat(
            ctx, request, endpoint=REPLAY_ENDPOINT, priority=Priority.FILL, observe=False
        )
        try:
            text = await collect_text(started)
        finally:
            await started.generation.aclose()
        stats = started.generation.stats
        finished = stats.finished_at or stats.admitted_at
        return Replayed(text, max(0, round((finished - stats.admitted_at) * 1000)), started.cost_units)


def with_template(
    messages: list[dict[str, Any]], baseline_template: str | None, candidate_template: str
) -> list[dict[str, Any]]:
    """The run's conversation with the candidate's system prompt in place of its own. Variables
    are read out of the run's system prompt through the baseline's template."""
    system = "\n\n".join(str(m["content"]) for m in messages if m["role"] == "system")
    values: dict[str, str] = {}
    if baseline_template and variables_of(baseline_template):
        found = extract(baseline_template, system)
        if found is None:
            raise TemplateMismatch("the run's system prompt does not match the baseline's template")
        values = found
    missing = [name for name in variables_of(candidate_template) if name not in values]
    if missing:
        raise TemplateMismatch(f"the run gives no value for the candidate's variable(s) {missing}")
    rest = [m for m in messages if m["role"] != "system"]
    return [{"role": "system", "content": render(candidate_template, values)}, *rest]
