"""Prompt registry, regressions and experiments (seed: /v1/prompts, /v1/prompt-regressions,
/v1/experiments). Lists are `{"status", "docs", "items"}`, newest first."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, StrictBool

from batchin.protocol.common import RequestModel

# Registry ids appear in URL paths and version ids in a header: a conservative alphabet, no '/'.
REGISTRY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,99}$"
VERSION_PATTERN = r"^[A-Za-z0-9_.:+-]{1,99}$"

VersionStatus = Literal["observed", "promoted", "candidate", "retired"]
Source = Literal["auto_backfill", "registered"]
JudgeName = Literal["deterministic_replay", "embedding_similarity"]
ExperimentStatus = Literal["queued", "running", "passed", "failed", "error"]
PromotionStatus = Literal["pending", "promoted", "rejected"]


class PromptVersionItem(BaseModel):
    version_id: str = Field(description="`<registry>@<version>`, as sent in X-BatchIn-Prompt-Version")
    status: VersionStatus
    total_runs: int
    source: Source
    created_at: str


class PromptRegistryItem(BaseModel):
    registry_id: str
    display_name: str
    source: Source = Field(description="how the registry first appeared: seen in traffic, or registered")
    latest_version_id: str | None
    promoted_version_id: str | None
    total_runs: int
    experiments_enabled: bool = Field(
        description=(
            "prompt experiments for this registry (default off): only then are its chat runs sampled "
            "(conversation text kept) and new versions replayed against the promoted one, billed to you"
        )
    )
    versions: list[PromptVersionItem] = Field(description="oldest first")
    created_at: str


class PromptList(BaseModel):
    status: Literal["ready"] = "ready"
    docs: str = "/docs/prompts"
    items: list[PromptRegistryItem]


class PromptVersionCreateRequest(RequestModel):
    registry_id: str = Field(pattern=REGISTRY_PATTERN, description="created when it does not exist")
    version: str | None = Field(
        default=None, pattern=VERSION_PATTERN, description="the part after '@' (default: v<n>)"
    )
    template: str = Field(
        min_length=1, max_length=100_000, description="the system prompt, with {{variable}} placeholders"
    )
    variables: list[str] | None = Field(
        default=None, description="the placeholders' names (must match the template's; default: found in it)"
    )
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    experiments_enabled: StrictBool | None = Field(
        default=None,
        description="the registry's opt-in to prompt experiments (omitted: unchanged; a new registry: off)",
    )


class PromptRegistryUpdateRequest(RequestModel):
    experiments_enabled: StrictBool | None = Field(
        default=None,
        description=(
            "turn prompt experiments on or off (omitted: unchanged); turning them off deletes the "
            "registry's sampled runs at once"
        ),
    )
    display_name: str | None = Field(default=None, min_length=1, max_length=200)


class PromptVersionDetail(BaseModel):
    version_id: str
    registry_id: str
    status: VersionStatus
    source: Source
    total_runs: int
    template: str | None
    variables: list[str]
    created_at: str
    experiment_id: str | None = Field(
        default=None, description="the experiment started against the promoted baseline, if any"
    )


class PromptTemplate(BaseModel):
    """A registered version's template as a prompt a client can pick: by its version id, or by
    `<registry>@promoted`, which names whichever version holds the registry's `promoted` label."""

    name: str = Field(description="`<registry>@<version>`, or `<registry>@promoted` for the label")
    version_id: str = Field(description="the version the name resolves to")
    registry_id: str
    status: VersionStatus
    label: Literal["promoted"] | None = Field(description="set when `name` is the label")
    template: str
    variables: list[str]


class PromptLabelMoveRequest(RequestModel):
    action: Literal["promote", "rollback"]
    version_id: str | None = Field(
        default=None,
        max_length=200,
        description="promote: required; rollback: default the version that held the label before",
    )
    reason: str = Field(min_length=1, max_length=2000)


class PromptLabelMove(BaseModel):
    move_id: str
    registry_id: str
    label: Literal["promoted"] = "promoted"
    action: Literal["promote", "rollback"]
    from_version_id: str | None
    to_version_id: str
    actor: str = Field(
        description="`key:<prefix>` for a person's key, `console` for a person signed in to the web "
        "console, `experiment:<id>`, or `system`"
    )
    reason: str
    created_at: str
    key_id: str = Field(description="id of the audit signing key (see /v1/vaas/pubkey/current)")
    public_key: str
    signature: str = Field(description="Ed25519 over the RFC 8785 form of `payload`")
    payload: dict[str, Any]


class PromptLabelMoveList(BaseModel):
    items: list[PromptLabelMove]


class PromptRegressionItem(BaseModel):
    regression_id: str
    experiment_id: str
    registry_id: str
    baseline_prompt_version_id: str
    candidate_prompt_version_id: str
    status: Literal["passed", "failed"]
    judge: JudgeName
    sample_count: int
    pass_count: int
    fail_count: int
    avg_similarity: float
    baseline_avg_latency_ms: int
    candidate_avg_latency_ms: int
    baseline_avg_cost_cents: int | float
    candidate_avg_cost_cents: int | float
    created_at: str


class PromptRegressionList(BaseModel):
    status: Literal["ready"] = "ready"
    docs: str = "/docs/experiments"
    items: list[PromptRegressionItem]


class ExperimentItem(BaseModel):
    experiment_id: str
    registry_id: str
    baseline_prompt_version_id: str
    candidate_prompt_version_id: str
    status: ExperimentStatus
    promotion_status: PromotionStatus
    sample_count: int
    pass_rate: float | None
    judge: JudgeName
    trigger: Literal["auto", "manual"]
    reason: str | None = Field(description="why the candidate was promoted or not (or why it could not run)")
    regression_id: str | None
    created_at: str
    finished_at: str | None


class ExperimentList(BaseModel):
    status: Literal["ready"] = "ready"
    docs: str = "/docs/experiments"
    items: list[ExperimentItem]


class ExperimentCreateRequest(RequestModel):
    registry_id: str = Field(pattern=REGISTRY_PATTERN)
    candidate_version_id: str = Field(min_length=1, max_length=200)
    baseline_version_id: str | None = Field(
        default=None, max_length=200, description="default: the registry's promoted version"
    )
    sample_size: int | None = Field(default=None, ge=1, le=100)
    judge: JudgeName | None = None


class ExperimentSample(BaseModel):
    position: int
    model_id: str
    status: Literal["pending", "done", "error"]
    baseline_recorded: bool = Field(
        description="the baseline output is the recorded run's (it was deterministic), not a replay"
    )
    baseline_output: str | None
    candidate_output: str | None
    similarity: float | None
    passed: bool | None
    baseline_latency_ms: int | None
    candidate_latency_ms: int | None
    baseline_cost_cents: int | float | None
    candidate_cost_cents: int | float | None
    error: str | None


class ExperimentDetail(ExperimentItem):
    samples: list[ExperimentSample]
    regression: PromptRegressionItem | None
