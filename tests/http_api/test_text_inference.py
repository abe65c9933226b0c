"""/v1/chat/completions, /v1/completions, /v1/responses through the real ASGI app, on scripted
runners: shapes, streams, receipt headers, metering, refusals, disconnects and metrics."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from batchin.app import create_app
from batchin.config import Settings
from batchin.http_api.app import build_http_app
from batchin.protocol.accounts import UserCreated
from batchin.services import Services
from tests.conftest import MakeUser, assert_error, bearer
from tests.text_fixtures import (
    asgi_client,
    balance_units,
    cost_units,
    eventually,
    logs_of,
    runner_of,
    scripted_services,
    sse_data,
    sse_json,
)

MODEL = "scripted-chat"
TEXT = "Hello, world!"
TOKENS = ["Hello", ",", " world", "!"]
MESSAGES = [{"role": "user", "content": "Say hello"}]  # 2 prompt tokens
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with scripted_services(settings) as built:
        yield built


@pytest.fixture
async def user(make_user: MakeUser) -> UserCreated:
    return await make_user()


async def post(
    client: httpx2.AsyncClient, path: str, user: UserCreated, body: dict[str, Any], **headers: str
) -> httpx2.Response:
    return await client.post(path, json=body, headers={**bearer(user.api_key), **headers})


async def chat(
    client: httpx2.AsyncClient, user: UserCreated, headers: dict[str, str] | None = None, **fields: Any
) -> httpx2.Response:
    body = {"model": MODEL, "messages": MESSAGES, **fields}
    return await post(client, "/v1/chat/completions", user, body, **(headers or {}))


# --- chat completions ------------------------------------------------------------------------------


async def test_chat_completion(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": TEXT, "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}


async def test_chat_completion_stops_at_max_tokens(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = (await chat(client, user, max_tokens=2)).json()
    assert body["choices"][0]["message"]["content"] == "Hello,"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


async def test_chat_stream(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_data(response.text)[-1] == "[DONE]"
    chunks = sse_json(response.text)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:5]] == TOKENS
    assert [c["choices"][0]["finish_reason"] for c in chunks[:5]] == [None] * 5
    assert chunks[5]["choices"][0]["finish_reason"] == "stop"
    assert chunks[5]["choices"][0]["delta"].get("content") is None
    assert chunks[6]["choices"] == []
    assert chunks[6]["usage"] == {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    assert len(chunks) == 7


async def test_chat_stream_without_include_usage_has_no_usage_chunk(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    chunks = sse_json((await chat(client, user, stream=True)).text)
    assert len(chunks) == 6
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# --- completions -----------------------------------------------------------------------------------


async def test_completion(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(client, "/v1/completions", user, {"model": MODEL, "prompt": "Once upon a"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": TEXT, "finish_reason": "stop", "logprobs": None}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_completion_stream(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client,
        "/v1/completions",
        user,
        {"model": MODEL, "prompt": "Once upon a", "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = sse_json(response.text)
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert [c["choices"][0]["text"] for c in chunks[:4]] == TOKENS
    assert chunks[4]["choices"][0]["finish_reason"] == "stop"
    assert chunks[5]["choices"] == []
    assert chunks[5]["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert len(chunks) == 6


# --- responses -------------------------------------------------------------------------------------


async def test_response(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(client, "/v1/responses", user, {"model": MODEL, "input": "Say hello"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "response"
    assert body["id"].startswith("resp_")
    assert body["status"] == "completed"
    [message] = body["output"]
    assert (message["type"], message["role"], message["status"]) == ("message", "assistant", "completed")
    assert message["content"] == [{"type": "output_text", "text": TEXT, "annotations": [], "logprobs": []}]
    usage = body["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (2, 4, 6)


async def test_response_instructions_count_as_input(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": MODEL, "input": "Say hello", "instructions": "Be brief"}
    response = await post(client, "/v1/responses", user, body)
    assert response.json()["usage"]["input_tokens"] == 4


async def test_response_stream_events(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client, "/v1/responses", user, {"model": MODEL, "input": "Say hello", "stream": True}
    )
    events = sse_json(response.text)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == TOKENS
    assert events[0]["response"]["status"] == "in_progress"
    final = events[-1]["response"]
    assert final["id"] == events[0]["response"]["id"]
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == TEXT
    assert final["usage"]["output_tokens"] == 4


async def test_response_stream_ends_incomplete_at_max_output_tokens(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    body = {"model": MODEL, "input": "Say hello", "stream": True, "max_output_tokens": 2}
    events = sse_json((await post(client, "/v1/responses", user, body)).text)
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["content"][0]["text"] == "Hello,"
    assert "response.completed" not in [e["type"] for e in events]


# --- receipt headers -------------------------------------------------------------------------------


async def test_a_call_carries_the_receipt_headers(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user)
    assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])
    assert TRACEPARENT.fullmatch(response.headers["traceparent"])
    assert re.fullmatch(r"run_[0-9a-f]{24}", response.headers["x-batchin-run-id"])
    assert response.headers["x-batchin-prompt-version"] == "default"


async def test_a_stream_carries_the_receipt_headers(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user, stream=True)
    for header in ("x-request-id", "traceparent", "x-batchin-run-id", "x-batchin-prompt-version"):
        assert response.headers[header]


async def test_each_call_gets_its_own_run_id(client: httpx2.AsyncClient, user: UserCreated) -> None:
    first, second = await chat(client, user), await chat(client, user)
    assert first.headers["x-batchin-run-id"] != second.headers["x-batchin-run-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_callers_traceparent_is_continued_with_a_new_span(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await chat(client, user, headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    match = TRACEPARENT.fullmatch(response.headers["traceparent"])
    assert match is not None
    assert match.group(1) == trace_id
    assert match.group(2) != parent


async def test_an_invalid_traceparent_starts_a_new_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    sent = "00-" + "0" * 32 + "-00f067aa0ba902b7-01"  # an all-zero trace id is invalid
    response = await chat(client, user, headers={"traceparent": sent})
    match = TRACEPARENT.fullmatch(response.headers["traceparent"])
    assert match is not None
    assert match.group(1) != "0" * 32


async def test_a_garbled_traceparent_starts_a_new_trace(
    client: httpx2.AsyncClient, user: UserCreated
) -> None:
    response = await chat(client, user, headers={"traceparent": "not-a-trace"})
    assert TRACEPARENT.fullmatch(response.headers["traceparent"])


async def test_the_prompt_version_header_is_echoed(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await chat(client, user, headers={"X-BatchIn-Prompt-Version": "greeting-v7"})
    assert response.headers["x-batchin-prompt-version"] == "greeting-v7"


# --- metering --------------------------------------------------------------------------------------


async def test_a_call_writes_one_usage_log_at_catalog_prices(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    response = await chat(client, user)
    [log] = await logs_of(services, user)
    assert log.request_id == response.headers["x-request-id"]
    assert (log.model, log.endpoint, log.status) == (MODEL, "chat.completions", "succeeded")
    assert (log.input_tokens, log.output_tokens) == (2, 4)
    assert log.cost_micro_cents == cost_units(2, 4) == 1_500
    assert log.key_id == user.key_id


async def test_a_stream_writes_one_usage_log(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    await chat(client, user, stream=True)
    [log] = await logs_of(services, user)
    assert (log.status, log.input_tokens, log.output_tokens) == ("succeeded", 2, 4)
    assert log.cost_micro_cents == cost_units(2, 4)


@pytest.mark.parametrize(
    ("path", "body", "endpoint", "tokens"),
    [
        ("/v1/completions", {"prompt": "Once upon a", "max_tokens": 3}, "completions", (3, 3)),
        ("/v1/responses", {"input": "Say hello"}, "responses", (2, 4)),
    ],
)
async def test_each_endpoint_logs_its_name_and_tokens(
    client: httpx2.AsyncClient,
    services: Services,
    user: UserCreated,
    path: str,
    body: dict[str, Any],
    endpoint: str,
    tokens: tuple[int, int],
) -> None:
    assert (await post(client, path, user, {"model": MODEL, **body})).status_code == 200
    [log] = await logs_of(services, user)
    assert (log.endpoint, (log.input_tokens, log.output_tokens)) == (endpoint, tokens)
    assert log.cost_micro_cents == cost_units(*tokens)


async def test_the_balance_falls_by_the_sum_of_the_logs(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    await chat(client, user)
    await chat(client, user, stream=True, max_tokens=3)
    await post(client, "/v1/completions", user, {"model": MODEL, "prompt": "a b c d e"})
    await post(client, "/v1/responses", user, {"model": MODEL, "input": "hi", "stream": True})
    logs = await logs_of(services, user)
    assert len(logs) == 4
    assert before - await balance_units(services, user) == sum(log.cost_micro_cents for log in logs)
    assert sum(log.cost_micro_cents for log in logs) == (
        cost_units(2, 4) + cost_units(2, 3) + cost_units(5, 4) + cost_units(1, 4)
    )


async def test_a_balance_that_cannot_cover_the_maximum_cost_is_refused_unbilled(
    client: httpx2.AsyncClient, services: Services, make_user: MakeUser
) -> None:
    poor = await make_user(credit_cents=0)
    assert_error(await chat(client, poor), 402, "payment_required")
    assert await logs_of(services, poor) == []
    assert await balance_units(services, poor) == 0
    assert (await runner_of(services, MODEL)).calls == []


# --- refusals --------------------------------------------------------------------------------------


async def test_an_unknown_model_is_404_naming_model(client: httpx2.AsyncClient, user: UserCreated) -> None:
    response = await post(
        client, "/v1/chat/completions", user, {"model": "no-such-model", "messages": MESSAGES}
    )
    assert assert_error(response, 404, "not_found")["param"] == "model"


async def test_an_unavailable_model_is_503(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    body = {"model": "scripted-broken", "messages": MESSAGES}
    error = assert_error(await post(client, "/v1/chat/completions", user, body), 503, "service_unavailable")
    assert "no GPU on this machine" in error["message"]
    assert await logs_of(services, user) == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 5}, "n"),  # up to 4 choices
        ({"presence_penalty": 0.5}, "presence_penalty"),  # the scripted engine has no capabilities
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"max_tokens": 63}, "max_tokens"),  # 2 prompt tokens + 63 > a context of 64
    ],
)
async def test_an_unsupported_chat_parameter_is_400_naming_it(
    client: httpx2.AsyncClient, services: Services, user: UserCreated, fields: dict[str, Any], param: str
) -> None:
    error = assert_error(await chat(client, user, **fields), 400, "invalid_request")
    assert error["param"] == param
    assert await logs_of(services, user) == []


async def test_a_prompt_beyond_the_context_is_400(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": MODEL, "prompt": "word " * 64}
    error = assert_error(await post(client, "/v1/completions", user, body), 400, "invalid_request")
    assert error["param"] == "prompt"


async def test_a_suffix_on_a_model_without_fim_is_400(client: httpx2.AsyncClient, user: UserCreated) -> None:
    body = {"model": MODEL, "prompt": "def add(a, b):", "suffix": "return c"}
    error = assert_error(await post(client, "/v1/completions", user, body), 400, "invalid_request")
    assert error["param"] == "suffix"


async def test_a_full_queue_is_429_with_retry_after(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, MODEL)  # max_concurrency 1, queue_size 1
    runner.gate = asyncio.Event()
    running = asyncio.create_task(chat(client, user))
    queued = asyncio.create_task(chat(client, user))
    await eventually(lambda: services.admission.snapshot().get(f"shared/{MODEL}", {}).get("queued") == 1)
    refused = await chat(client, user)
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    runner.gate.set()
    assert [(await t).status_code for t in (running, queued)] == [200, 200]
    assert len(await logs_of(services, user)) == 2


async def test_an_unknown_region_is_400_naming_the_header(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    response = await chat(client, user, headers={"X-BatchIn-Region": "mars"})
    assert assert_error(response, 400, "invalid_request")["param"] == "X-BatchIn-Region"
    assert await logs_of(services, user) == []


# --- failures and disconnects ----------------------------------------------------------------------


async def test_an_engine_error_mid_stream_becomes_an_error_event_then_done(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    body = {"model": "scripted-faulty", "messages": MESSAGES, "stream": True}
    response = await post(client, "/v1/chat/completions", user, body)
    assert response.status_code == 200
    events = sse_json(response.text)
    assert [e["choices"][0]["delta"]["content"] for e in events[1:3]] == ["a", "b"]
    assert set(events[-1]) == {"error"}
    assert events[-1]["error"]["code"] == "internal_error"
    assert "Traceback" not in response.text
    [log] = await logs_of(services, user)
    assert (log.status, log.cost_micro_cents, log.output_tokens) == ("failed", 0, 2)
    assert await balance_units(services, user) == before


async def test_an_engine_error_in_a_whole_response_is_a_500_envelope_and_unbilled(
    services: Services, user: UserCreated
) -> None:
    before = await balance_units(services, user)
    transport = httpx2.ASGITransport(app=create_app(services.settings, services), raise_app_exceptions=False)
    async with httpx2.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await post(
            client, "/v1/chat/completions", user, {"model": "scripted-faulty", "messages": MESSAGES}
        )
    assert_error(response, 500, "internal_error")
    [log] = await logs_of(services, user)
    assert (log.status, log.cost_micro_cents) == ("failed", 0)
    assert await balance_units(services, user) == before


async def test_a_disconnect_during_a_whole_response_cancels_the_engine_work(
    services: Services, user: UserCreated
) -> None:
    runner = await runner_of(services, "scripted-long")
    body = json.dumps({"model": "scripted-long", "messages": MESSAGES}).encode()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await eventually(lambda: bool(runner.calls) and runner.calls[0].produced >= 2)
        return {"type": "http.disconnect"}

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {user.api_key}".encode()),
        ],
        "client": ("203.0.113.9", 5555),
        "server": ("testserver", 80),
    }
    app = build_http_app()
    app.state.services = services
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    assert sent[0]["status"] == 499  # for nobody: the caller has gone

    [call] = runner.calls
    assert call.outcome == "cancelled"
    assert call.produced < 30
    [log] = await logs_of(services, user)
    assert log.status == "cancelled"
    assert log.output_tokens == call.produced
    assert log.cost_micro_cents == cost_units(2, call.produced)


# --- metrics ---------------------------------------------------------------------------------------


async def test_metrics_expose_latency_histograms_per_model(
    client: httpx2.AsyncClient, services: Services, user: UserCreated
) -> None:
    await chat(client, user)
    async with asgi_client(services, host="127.0.0.1") as operator:
        response = await operator.get("/metrics")
    assert response.status_code == 200
    counts = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name.endswith("_count")
        and sample.labels == {"model": MODEL, "endpoint": "chat.completions"}
    }
    assert counts == {
        "batchin_ttft_seconds_count": 1.0,
        "batchin_queue_seconds_count": 1.0,
        "batchin_inter_token_seconds_count": 1.0,
        "batchin_tokens_per_second_count": 1.0,
    }
