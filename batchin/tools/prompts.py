"""list_prompts, register_prompt_version, update_prompt_registry, start_experiment, get_experiment:
the prompt registry and its experiments, the same core calls as /v1/prompts and /v1/experiments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import Field

from batchin.core.experiments.service import ExperimentService
from batchin.core.prompts.service import PromptService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.common import validate
from batchin.protocol.prompts import (
    ExperimentCreateRequest,
    ExperimentDetail,
    JudgeName,
    PromptList,
    PromptRegistryItem,
    PromptRegistryUpdateRequest,
    PromptVersionCreateRequest,
    PromptVersionDetail,
)
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class PromptToolDeps:
    """What the prompt registry and experiment tools use."""

    prompts: PromptService
    experiments: ExperimentService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(prompts=services.prompts, experiments=services.experiments)


async def list_prompts(deps: PromptToolDeps = uses(PromptToolDeps)) -> PromptList:
    """Your prompt registries: each with its promoted and latest version and every version's status
    (observed, promoted, candidate, retired) and run count. Versions are attributed from the
    X-BatchIn-Prompt-Version header (`<registry>@<version>`) or derived from the system prompt."""
    call = current()
    return await deps.prompts.list_prompts(call.ctx.principal.user_id)


async def register_prompt_version(
    registry_id: Annotated[str, Field(description="The registry, e.g. 'support' (created if new).")],
    template: Annotated[str, Field(description="The system prompt; {{name}} marks a variable.")],
    version: Annotated[
        str | None, Field(description="The name after '@' (default v<n>): the id is registry@version.")
    ] = None,
    variables: Annotated[
        list[str] | None, Field(description="The template's variable names (default: found in it).")
    ] = None,
    display_name: Annotated[str | None, Field(description="A name for a new registry.")] = None,
    experiments_enabled: Annotated[
        bool | None,
        Field(description="Opt the registry in to (true) or out of (false) experiments; omitted: unchanged."),
    ] = None,
    deps: PromptToolDeps = uses(PromptToolDeps),
) -> PromptVersionDetail:
    """Register a prompt version. In a registry opted in to experiments that has a promoted version,
    this starts an experiment that replays recent runs with the new template and promotes it only
    if it does as well."""
    call = current()
    fields = {
        "registry_id": registry_id,
        "template": template,
        "version": version,
        "variables": variables,
        "display_name": display_name,
        "experiments_enabled": experiments_enabled,
    }
    body = validate(PromptVersionCreateRequest, fields)
    return await deps.prompts.register_version(call.ctx, body)


async def update_prompt_registry(
    registry_id: Annotated[str, Field(description="The registry, e.g. 'support' (created if new).")],
    experiments_enabled: Annotated[
        bool | None,
        Field(
            description="true: keep a sample of its chat runs and run experiments (billed to you); "
            "false: stop them and delete its samples. Omitted: unchanged."
        ),
    ] = None,
    display_name: Annotated[str | None, Field(description="A new display name.")] = None,
    deps: PromptToolDeps = uses(PromptToolDeps),
) -> PromptRegistryItem:
    """Change a prompt registry's settings (the same as PATCH /v1/prompts/{registry_id}). Experiments
    are off by default: opt a registry in before its traffic so its runs are sampled for replay."""
    call = current()
    fields = {"experiments_enabled": experiments_enabled, "display_name": display_name}
    body = validate(PromptRegistryUpdateRequest, fields)
    return await deps.prompts.update_registry(call.ctx, registry_id, body)


async def start_experiment(
    registry_id: Annotated[str, Field(description="The registry both versions belong to.")],
    candidate_version_id: Annotated[str, Field(description="The version to try, e.g. 'support@v3'.")],
    baseline_version_id: Annotated[
        str | None, Field(description="The version to compare with (default: the promoted one).")
    ] = None,
    sample_size: Annotated[
        int | None, Field(description="How many recent baseline runs to replay (1-100).", ge=1, le=100)
    ] = None,
    judge: Annotated[
        JudgeName | None,
        Field(description="deterministic_replay (exact/normalised match) or embedding_similarity."),
    ] = None,
    deps: PromptToolDeps = uses(PromptToolDeps),
) -> ExperimentDetail:
    """Start an experiment: replay the baseline's recent runs with the candidate (greedy, fixed seed,
    low priority, billed to you) and judge them. The registry must be opted in to experiments
    (update_prompt_registry). Read the outcome with get_experiment."""
    call = current()
    fields = {
        "registry_id": registry_id,
        "candidate_version_id": candidate_version_id,
        "baseline_version_id": baseline_version_id,
        "sample_size": sample_size,
        "judge": judge,
    }
    body = validate(ExperimentCreateRequest, {k: v for k, v in fields.items() if v is not None})
    return await deps.experiments.start(call.ctx, body)


async def get_experiment(
    experiment_id: Annotated[str, Field(description="The experiment's id (pexp_...).")],
    deps: PromptToolDeps = uses(PromptToolDeps),
) -> ExperimentDetail:
    """An experiment's status, per-sample similarity and pass/fail, regression report, and whether
    the candidate was promoted (with the reason)."""
    call = current()
    return await deps.experiments.get(call.ctx.principal.user_id, experiment_id)


def prompts_text(prompts: PromptList) -> str:
    lines = []
    for registry in prompts.items:
        promoted = registry.promoted_version_id or "none"
        lines.append(f"{registry.registry_id}: promoted {promoted}, {registry.total_runs} runs")
        lines += [f"- {v.version_id}: {v.status}, {v.total_runs} runs" for v in registry.versions]
    return "\n".join(lines) if lines else "No prompt registries yet."


def registry_text(registry: PromptRegistryItem) -> str:
    experiments = "on (its chat runs are sampled)" if registry.experiments_enabled else "off"
    promoted = registry.promoted_version_id or "none"
    return f"Registry {registry.registry_id}: experiments {experiments}, promoted {promoted}."


def version_text(version: PromptVersionDetail) -> str:
    variables = ", ".join(version.variables) or "none"
    line = f"Registered {version.version_id} ({version.status}; variables: {variables})."
    if version.experiment_id:
        line += f" Experiment {version.experiment_id} replays it against the promoted version."
    return line


def experiment_text(experiment: ExperimentDetail) -> str:
    rate = "n/a" if experiment.pass_rate is None else f"{experiment.pass_rate:.0%}"
    line = (
        f"Experiment {experiment.experiment_id}: {experiment.candidate_prompt_version_id} vs "
        f"{experiment.baseline_prompt_version_id}, {experiment.status}, pass rate {rate} over "
        f"{experiment.sample_count} samples, promotion {experiment.promotion_status}."
    )
    return f"{line} {experiment.reason}" if experiment.reason else line


_READ: dict[str, Any] = {"read_only": True, "scope": "account:read"}
_WRITE: dict[str, Any] = {"scope": "prompts:write"}

TOOLS = [
    ToolSpec(list_prompts, "List prompt versions", **_READ, summary=prompts_text),
    ToolSpec(register_prompt_version, "Register a prompt version", **_WRITE, summary=version_text),
    ToolSpec(update_prompt_registry, "Change a prompt registry's settings", **_WRITE, summary=registry_text),
    ToolSpec(start_experiment, "Start a prompt experiment", **_WRITE, summary=experiment_text),
    ToolSpec(get_experiment, "Get a prompt experiment", **_READ, summary=experiment_text),
]
