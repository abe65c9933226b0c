"""/v1/prompts, /v1/prompts/{registry_id}, /v1/prompts/{registry_id}/labels, /v1/prompt-regressions,
/v1/experiments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.experiments.service import MAX_LIST, ExperimentService
from batchin.core.prompts.service import PromptService
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.http_api.rendering import parse_json, query_int, render
from batchin.protocol.prompts import (
    ExperimentCreateRequest,
    ExperimentDetail,
    ExperimentList,
    PromptLabelMove,
    PromptLabelMoveList,
    PromptLabelMoveRequest,
    PromptList,
    PromptRegistryItem,
    PromptRegistryUpdateRequest,
    PromptRegressionList,
    PromptVersionCreateRequest,
    PromptVersionDetail,
)
from batchin.services import Services

_LIMIT = QueryParam(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": MAX_LIST},
    f"items to return, newest first (1-{MAX_LIST})",
)


@dataclass(frozen=True, slots=True)
class PromptDeps:
    """What /v1/prompts*, /v1/prompt-regressions and /v1/experiments* use."""

    prompts: PromptService
    experiments: ExperimentService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            prompts=services.prompts,
            experiments=services.experiments,
            max_body_bytes=services.settings.max_body_bytes,
        )


async def list_prompts(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    return render(await deps.prompts.list_prompts(ctx.principal.user_id))


async def register_prompt_version(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    body = await parse_json(request, PromptVersionCreateRequest, deps.max_body_bytes)
    return render(await deps.prompts.register_version(ctx, body))


async def update_prompt_registry(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    body = await parse_json(request, PromptRegistryUpdateRequest, deps.max_body_bytes)
    registry_id = request.path_params["registry_id"]
    return render(await deps.prompts.update_registry(ctx, registry_id, body))


async def move_prompt_label(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    body = await parse_json(request, PromptLabelMoveRequest, deps.max_body_bytes)
    registry_id = request.path_params["registry_id"]
    return render(await deps.prompts.move_label(ctx, registry_id, body))


async def list_prompt_label_moves(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    registry_id = request.path_params["registry_id"]
    return render(await deps.prompts.label_history(ctx.principal.user_id, registry_id))


async def list_prompt_regressions(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    experiments = deps.experiments
    limit = query_int(request, "limit", MAX_LIST)
    return render(await experiments.list_regressions(ctx.principal.user_id, limit=limit))


async def list_experiments(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    experiments = deps.experiments
    limit = query_int(request, "limit", MAX_LIST)
    return render(await experiments.list_experiments(ctx.principal.user_id, limit=limit))


async def create_experiment(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    body = await parse_json(request, ExperimentCreateRequest, deps.max_body_bytes)
    return render(await deps.experiments.start(ctx, body))


async def get_experiment(request: Request, ctx: CallContext, deps: PromptDeps) -> Response:
    experiment_id = request.path_params["experiment_id"]
    return render(await deps.experiments.get(ctx.principal.user_id, experiment_id))


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/prompts",
        list_prompts,
        "The prompt registry: registries, their promoted and latest versions, and every version's runs.",
        response_model=PromptList,
        deps=PromptDeps,
        tag="prompts",
        scope="account:read",
    ),
    Endpoint(
        "POST",
        "/v1/prompts",
        register_prompt_version,
        "Register a prompt version (a system prompt template with {{variables}}); in a registry opted in "
        "to experiments (`experiments_enabled`), a new version after the promoted one starts an experiment.",
        request_model=PromptVersionCreateRequest,
        response_model=PromptVersionDetail,
        deps=PromptDeps,
        tag="prompts",
        errors=(400,),
        scope="prompts:write",
    ),
    Endpoint(
        "PATCH",
        "/v1/prompts/{registry_id}",
        update_prompt_registry,
        "Change a registry's settings (created if new): `experiments_enabled` opts it in to prompt "
        "experiments (sampled runs kept, replays billed to you); turning it off deletes its samples.",
        request_model=PromptRegistryUpdateRequest,
        response_model=PromptRegistryItem,
        deps=PromptDeps,
        tag="prompts",
        errors=(400,),
        scope="prompts:write",
    ),
    Endpoint(
        "GET",
        "/v1/prompts/{registry_id}/labels",
        list_prompt_label_moves,
        "Every move of the registry's `promoted` label, newest first, each signed with the audit key.",
        response_model=PromptLabelMoveList,
        deps=PromptDeps,
        tag="prompts",
        errors=(404,),
        scope="account:read",
    ),
    Endpoint(
        "POST",
        "/v1/prompts/{registry_id}/labels",
        move_prompt_label,
        "Promote a version or roll back (to the previous holder, or a named version), with a reason; "
        "the move is recorded and signed.",
        request_model=PromptLabelMoveRequest,
        response_model=PromptLabelMove,
        deps=PromptDeps,
        tag="prompts",
        errors=(400, 404),
        scope="prompts:write",
    ),
    Endpoint(
        "GET",
        "/v1/prompt-regressions",
        list_prompt_regressions,
        "Regression reports of sampled replays: samples, pass/fail counts, similarity, latency and cost.",
        response_model=PromptRegressionList,
        deps=PromptDeps,
        tag="prompts",
        errors=(400,),
        query=(_LIMIT,),
        scope="account:read",
    ),
    Endpoint(
        "GET",
        "/v1/experiments",
        list_experiments,
        "Prompt experiments: replay status and the automatic promotion decision, newest first.",
        response_model=ExperimentList,
        deps=PromptDeps,
        tag="prompts",
        errors=(400,),
        query=(_LIMIT,),
        scope="account:read",
    ),
    Endpoint(
        "POST",
        "/v1/experiments",
        create_experiment,
        "Start an experiment: replay the baseline's recent runs with a candidate version and judge them.",
        request_model=ExperimentCreateRequest,
        response_model=ExperimentDetail,
        deps=PromptDeps,
        tag="prompts",
        errors=(400, 404),
        scope="prompts:write",
    ),
    Endpoint(
        "GET",
        "/v1/experiments/{experiment_id}",
        get_experiment,
        "One experiment with its per-sample results and regression report.",
        response_model=ExperimentDetail,
        deps=PromptDeps,
        tag="prompts",
        errors=(404,),
        scope="account:read",
    ),
]
