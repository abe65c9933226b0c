"""/v1/prompts, /v1/prompts/{registry_id}/labels, /v1/prompt-regressions and /v1/experiments through
the real ASGI app on scripted runners; the resolved prompt version on headers, audit and traces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from batchin.config import Settings
from batchin.core.prompts.labels import verify_move
from batchin.protocol.accounts import UserCreated
from batchin.protocol.prompts import PromptLabelMove
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.prompt_fixtures import GENEROUS_BOUNDS, prompt_services

MODEL = "scripted-chat"
SYSTEM = "You are a support agent.\nAnswer briefly."
REGISTRY = "sys-" + hashlib.sha256(b"You are a support agent.").hexdigest()[:10]
VERSION = f"{REGISTRY}@{hashlib.sha256(SYSTEM.encode()).hexdigest()[:12]}"


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with prompt_services(settings, **GENEROUS_BOUNDS) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def chat(
    client: httpx2.AsyncClient,
    user: UserCreated,
    system: str | None = SYSTEM,
    *,
    header: str | None = None,
    **body: Any,
) -> httpx2.Response:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": "Hi"}
    ]
    headers = {**bearer(user.api_key), **({"X-BatchIn-Prompt-Version": header} if header else {})}
    payload = {"model": MODEL, "messages": messages, "max_tokens": 4, "temperature": 0, **body}
    response = await client.post("/v1/chat/completions", json=payload, headers=headers)
    assert response.status_code == 200, response.text
    return response


async def get(client: httpx2.AsyncClient, user: UserCreated, path: str) -> Any:
    response = await client.get(path, headers=bearer(user.api_key))
    assert response.status_code == 200, response.text
    return response.json()


async def post(
    client: httpx2.AsyncClient, user: UserCreated, path: str, body: dict[str, Any]
) -> httpx2.Response:
    return await client.post(path, json=body, headers=bearer(user.api_key))


async def opt_in(client: httpx2.AsyncClient, user: UserCreated, registry_id: str) -> None:
    response = await client.patch(
        f"/v1/prompts/{registry_id}", json={"experiments_enabled": True}, headers=bearer(user.api_key)
    )
    assert response.status_code == 200, response.text


# -- attribution on the call ------------------------------------------------------------------------


async def test_the_resolved_version_is_echoed_and_on_the_audit_record_and_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await chat(client, user)
    assert response.headers["X-BatchIn-Prompt-Version"] == VERSION
    evidence = await get(client, user, f"/v1/vaas/{response.headers['X-VaaS-Record-Id']}/evidence")
    assert evidence["prompt_version_id"] == VERSION
    assert evidence["payload"]["prompt_version_id"] == VERSION
    trace_id = response.headers["traceparent"].split("-")[1]
    trace = await get(client, user, f"/v1/traces/{trace_id}")
    assert trace["prompt_version_id"] == VERSION
    assert {span["attributes"]["batchin.prompt_version_id"] for span in trace["spans"]} == {VERSION}


async def test_a_named_version_is_echoed_verbatim(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user, header="support@v2")
    assert response.headers["X-BatchIn-Prompt-Version"] == "support@v2"


async def test_metadata_names_the_version_in_the_body(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user, metadata={"prompt_version": "faq@3"})
    assert response.headers["X-BatchIn-Prompt-Version"] == "faq@3"


async def test_a_streamed_call_carries_the_resolved_version(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await chat(client, user, stream=True)
    assert response.headers["X-BatchIn-Prompt-Version"] == VERSION


async def test_responses_instructions_are_the_system_prompt(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = {"model": MODEL, "input": "Hi", "instructions": SYSTEM, "max_output_tokens": 4}
    response = await post(client, user, "/v1/responses", body)
    assert response.status_code == 200, response.text
    assert response.headers["X-BatchIn-Prompt-Version"] == VERSION


async def test_a_malformed_prompt_version_header_is_a_400(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    response = await client.post(
        "/v1/chat/completions", json=body, headers={**bearer(user.api_key), "X-BatchIn-Prompt-Version": "a b"}
    )
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == "X-BatchIn-Prompt-Version"


# -- the registry ----------------------------------------------------------------------------------


async def test_prompts_lists_the_backfilled_registry_in_the_seeds_shape(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    await chat(client, user)
    await chat(client, user)
    body = await get(client, user, "/v1/prompts")
    assert (body["status"], body["docs"]) == ("ready", "/docs/prompts")
    [item] = body["items"]
    assert set(item) == {
        "registry_id",
        "display_name",
        "source",
        "latest_version_id",
        "promoted_version_id",
        "total_runs",
        "experiments_enabled",
        "versions",
        "created_at",
    }
    assert (item["registry_id"], item["source"], item["total_runs"]) == (REGISTRY, "auto_backfill", 2)
    assert item["experiments_enabled"] is False
    assert (item["latest_version_id"], item["promoted_version_id"]) == (VERSION, VERSION)
    [version] = item["versions"]
    assert {k: version[k] for k in ("version_id", "status", "total_runs")} == {
        "version_id": VERSION,
        "status": "promoted",
        "total_runs": 2,
    }


async def test_register_promote_and_roll_back(client: httpx2.AsyncClient, user: UserCreated) -> None:
    for template in ("You help with {{topic}}.", "Help with {{topic}}, briefly."):
        body = {"registry_id": "faq", "template": template, "experiments_enabled": True}
        response = await post(client, user, "/v1/prompts", body)
        assert response.status_code == 200, response.text
    assert response.json()["version_id"] == "faq@v2"
    assert response.json()["variables"] == ["topic"]
    assert response.json()["experiment_id"].startswith("pexp_")
    promote = {"action": "promote", "version_id": "faq@v2", "reason": "shorter"}
    moved = await post(client, user, "/v1/prompts/faq/labels", promote)
    assert moved.status_code == 200, moved.text
    assert verify_move(PromptLabelMove.model_validate(moved.json()))
    back = await post(client, user, "/v1/prompts/faq/labels", {"action": "rollback", "reason": "worse"})
    assert back.json()["to_version_id"] == "faq@v1"
    history = await get(client, user, "/v1/prompts/faq/labels")
    assert [m["action"] for m in history["items"]] == ["rollback", "promote", "promote"]
    current = await get(client, user, "/v1/vaas/pubkey/current")
    assert {m["public_key"] for m in history["items"]} == {"ed25519:" + current["verify_key_hex"]}
    [item] = (await get(client, user, "/v1/prompts"))["items"]
    assert [(v["version_id"], v["status"]) for v in item["versions"]] == [
        ("faq@v1", "promoted"),
        ("faq@v2", "retired"),
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"registry_id": "faq/x", "template": "Hi"}, "registry_id"),
        ({"registry_id": "faq", "template": ""}, "template"),
        ({"registry_id": "faq", "template": "Hi {{a}}", "variables": ["b"]}, "variables"),
        ({"registry_id": "faq", "template": "Hi", "version": "v 1"}, "version"),
    ],
)
async def test_bad_registrations_are_400s_and_change_nothing(
    client: httpx2.AsyncClient, user: UserCreated, body: dict[str, Any], param: str
) -> None:
    error = assert_error(await post(client, user, "/v1/prompts", body), 400, "invalid_request")
    assert error["param"] == param
    assert (await get(client, user, "/v1/prompts"))["items"] == []


async def test_label_moves_on_unknown_registries_are_404s(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = {"action": "promote", "version_id": "nope@v1", "reason": "x"}
    assert_error(await post(client, user, "/v1/prompts/nope/labels", body), 404, "not_found")
    assert_error(await client.get("/v1/prompts/nope/labels", headers=bearer(user.api_key)), 404, "not_found")


async def test_patch_opts_a_registry_in_and_out(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await client.patch(
        "/v1/prompts/support", json={"experiments_enabled": True}, headers=bearer(user.api_key)
    )
    assert response.status_code == 200, response.text
    assert (response.json()["registry_id"], response.json()["experiments_enabled"]) == ("support", True)
    off = await client.patch(
        "/v1/prompts/support", json={"experiments_enabled": False}, headers=bearer(user.api_key)
    )
    assert off.json()["experiments_enabled"] is False
    [item] = (await get(client, user, "/v1/prompts"))["items"]
    assert item == off.json()


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/prompts/a%20b", {"experiments_enabled": True}, "registry_id"),
        ("/v1/prompts/support", {"experiments_enabled": "maybe"}, "experiments_enabled"),
        ("/v1/prompts/support", {"experiments_enabled": 1}, "experiments_enabled"),  # found by schemathesis
        ("/v1/prompts/support", {"experiments_enabled": "true"}, "experiments_enabled"),
        ("/v1/prompts/support", {"display_name": ""}, "display_name"),
    ],
)
async def test_bad_registry_settings_are_400s_and_change_nothing(
    client: httpx2.AsyncClient, user: UserCreated, path: str, body: dict[str, Any], param: str
) -> None:
    error = assert_error(
        await client.patch(path, json=body, headers=bearer(user.api_key)), 400, "invalid_request"
    )
    assert error["param"] == param
    assert (await get(client, user, "/v1/prompts"))["items"] == []


async def test_without_the_opt_in_a_new_version_starts_no_experiment(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    for header in ("support@v1", "support@v2"):
        await chat(client, user, header=header)
    [item] = (await get(client, user, "/v1/prompts"))["items"]
    assert [(v["version_id"], v["status"]) for v in item["versions"]] == [
        ("support@v1", "promoted"),
        ("support@v2", "observed"),
    ]
    body = {"registry_id": "support", "candidate_version_id": "support@v2"}
    error = assert_error(await post(client, user, "/v1/experiments", body), 400, "invalid_request")
    assert error["param"] == "registry_id"
    assert (await get(client, user, "/v1/experiments"))["items"] == []


# -- experiments and regressions --------------------------------------------------------------------


async def test_an_experiment_and_its_regression_in_the_seeds_shape(
    client: httpx2.AsyncClient, user: UserCreated, services: Services
) -> None:
    await opt_in(client, user, "support")
    for header in ("support@v1", "support@v1", "support@v2"):
        await chat(client, user, header=header)
    await services.experiments.run_pending()
    experiments = await get(client, user, "/v1/experiments")
    assert (experiments["status"], experiments["docs"]) == ("ready", "/docs/experiments")
    [experiment] = experiments["items"]
    assert {k: experiment[k] for k in _SEED_EXPERIMENT} == {
        "registry_id": "support",
        "baseline_prompt_version_id": "support@v1",
        "candidate_prompt_version_id": "support@v2",
        "status": "passed",
        "promotion_status": "promoted",
        "sample_count": 2,
        "pass_rate": 1.0,
    }
    assert experiment["experiment_id"].startswith("pexp_")
    regressions = await get(client, user, "/v1/prompt-regressions")
    assert (regressions["status"], regressions["docs"]) == ("ready", "/docs/experiments")
    [regression] = regressions["items"]
    assert {k: regression[k] for k in _SEED_REGRESSION} == {
        "registry_id": "support",
        "baseline_prompt_version_id": "support@v1",
        "candidate_prompt_version_id": "support@v2",
        "status": "passed",
        "judge": "deterministic_replay",
        "sample_count": 2,
        "pass_count": 2,
        "fail_count": 0,
        "avg_similarity": 1.0,
    }
    assert regression["regression_id"] == experiment["regression_id"]
    assert isinstance(regression["baseline_avg_latency_ms"], int)
    assert isinstance(regression["candidate_avg_latency_ms"], int)
    detail = await get(client, user, f"/v1/experiments/{experiment['experiment_id']}")
    assert len(detail["samples"]) == 2
    assert detail["regression"] == regression


_SEED_EXPERIMENT = (
    "registry_id",
    "baseline_prompt_version_id",
    "candidate_prompt_version_id",
    "status",
    "promotion_status",
    "sample_count",
    "pass_rate",
)
_SEED_REGRESSION = (
    "registry_id",
    "baseline_prompt_version_id",
    "candidate_prompt_version_id",
    "status",
    "judge",
    "sample_count",
    "pass_count",
    "fail_count",
    "avg_similarity",
)


async def test_post_experiments_starts_one(client: httpx2.AsyncClient, user: UserCreated) -> None:
    await opt_in(client, user, "support")
    for header in ("support@v1", "support@v2"):
        await chat(client, user, header=header)
    body = {"registry_id": "support", "candidate_version_id": "support@v2", "judge": "deterministic_replay"}
    response = await post(client, user, "/v1/experiments", {**body, "sample_size": 1})
    assert response.status_code == 200, response.text
    started = response.json()
    assert (started["status"], started["trigger"], started["samples"]) == ("queued", "manual", [])
    listed = (await get(client, user, "/v1/experiments"))["items"]
    assert [e["trigger"] for e in listed] == ["manual", "auto"]  # newest first


async def test_experiment_errors(client: httpx2.AsyncClient, user: UserCreated, make_user: MakeUser) -> None:
    assert_error(
        await client.get("/v1/experiments/pexp_nope", headers=bearer(user.api_key)), 404, "not_found"
    )
    body = {"registry_id": "nope", "candidate_version_id": "nope@v1"}
    assert_error(await post(client, user, "/v1/experiments", body), 404, "not_found")
    bad = assert_error(
        await post(client, user, "/v1/experiments", {"registry_id": "x"}), 400, "invalid_request"
    )
    assert bad["param"] == "candidate_version_id"
    limit = assert_error(
        await client.get("/v1/experiments?limit=0", headers=bearer(user.api_key)), 400, "invalid_request"
    )
    assert limit["param"] == "limit"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/prompts"),
        ("POST", "/v1/prompts"),
        ("PATCH", "/v1/prompts/faq"),
        ("GET", "/v1/prompts/faq/labels"),
        ("POST", "/v1/prompts/faq/labels"),
        ("GET", "/v1/prompt-regressions"),
        ("GET", "/v1/experiments"),
        ("POST", "/v1/experiments"),
        ("GET", "/v1/experiments/pexp_x"),
    ],
)
async def test_every_route_needs_a_key(client: httpx2.AsyncClient, method: str, path: str) -> None:
    assert_error(await client.request(method, path, content=json.dumps({})), 401, "unauthorized")
