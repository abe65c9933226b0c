"""Every tool over FastMCP's in-memory client: results are the HTTP API's models, refusals carry the
HTTP error codes, calls are limited and billed like HTTP calls."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from mcp.types import AudioContent, ImageContent, TextContent

from batchin.protocol.accounts import KeyCreateRequest
from batchin.services import Services
from tests.conftest import MakeUser
from tests.mcp.conftest import McpClientFactory

CHAT_MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello."}]
EXPECTED_TOOLS = {
    "chat",
    "complete",
    "respond",
    "embed",
    "generate_image",
    "speak",
    "transcribe",
    "create_video",
    "get_video",
    "list_models",
    "usage_summary",
    "create_audit_record",
    "verify_audit_record",
    "get_trace",
    "submit_batch",
    "get_batch",
    "cancel_batch",
    "list_batches",
}


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error
    text = result.content[0]
    assert isinstance(text, TextContent)
    payload: dict[str, Any] = json.loads(text.text)
    assert payload == result.structured_content
    return dict(payload["error"])


async def test_lists_every_tool_with_descriptions_and_schemas(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        tools = {tool.name: tool for tool in await client.list_tools()}
    assert set(tools) >= EXPECTED_TOOLS
    for tool in tools.values():
        assert len(tool.description or "") > 30, tool.name
        assert tool.input_schema["type"] == "object"
    assert tools["chat"].output_schema is not None
    assert "messages" in tools["chat"].input_schema["required"]
    assert tools["list_models"].annotations is not None
    assert tools["list_models"].annotations.read_only_hint


async def test_chat_bills_the_key_and_returns_a_receipt(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user(credit_cents=1_000)
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool("chat", {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 8})
    assert not result.is_error
    body = result.structured_content
    assert body is not None
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] >= 1
    receipt = (result.meta or {})["batchin.tech/receipt"]
    assert receipt["X-BatchIn-Run-Id"]
    assert receipt["traceparent"].startswith("00-")
    assert receipt["X-VaaS-Record-Id"]
    logs = await services.usage.list_logs(user.id)
    assert [log.model for log in logs] == [CHAT_MODEL]
    assert logs[0].request_id == receipt["X-Request-Id"]


async def test_no_key_is_unauthorized(mcp_client: McpClientFactory) -> None:
    async with mcp_client(None) as client:
        result = await client.call_tool("list_models", {}, raise_on_error=False)
    error = error_of(result)
    assert (error["code"], error["status"]) == ("unauthorized", 401)


async def test_core_refusals_carry_http_codes(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    broke = await make_user(credit_cents=0)
    async with mcp_client(broke.api_key) as client:
        refused = await client.call_tool(
            "chat", {"model": CHAT_MODEL, "messages": HELLO}, raise_on_error=False
        )
        missing = await client.call_tool(
            "chat", {"model": "no-such-model", "messages": HELLO}, raise_on_error=False
        )
        invalid = await client.call_tool(
            "chat", {"model": CHAT_MODEL, "messages": HELLO, "temperature": 7}, raise_on_error=False
        )
        no_trace = await client.call_tool("get_trace", {"trace_id": "0" * 32}, raise_on_error=False)
    assert (error_of(refused)["code"], error_of(refused)["status"]) == ("payment_required", 402)
    assert error_of(missing)["code"] == "not_found"
    assert error_of(invalid)["code"] == "invalid_request"
    assert error_of(no_trace)["code"] == "not_found"


async def test_rpm_limit_applies_per_tool_call(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    key = await services.accounts.create_key(user.id, KeyCreateRequest(name="slow", rate_limit_rpm=2))
    async with mcp_client(key.key) as client:
        first = await client.call_tool("list_models", {})
        second = await client.call_tool("usage_summary", {})
        third = await client.call_tool("list_models", {}, raise_on_error=False)
    assert not first.is_error
    assert not second.is_error
    error = error_of(third)
    assert (error["code"], error["status"]) == ("rate_limited", 429)
    assert error["retry_after"] > 0


async def test_complete_and_fim_refusal_like_http(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool(
            "complete", {"model": CHAT_MODEL, "prompt": "One, two,", "max_tokens": 4}
        )
        fim = await client.call_tool(
            "complete",
            {"model": CHAT_MODEL, "prompt": "def add(a, b):\n    return ", "suffix": "\n"},
            raise_on_error=False,
        )
    assert result.structured_content is not None
    assert result.structured_content["object"] == "text_completion"
    # The embedded SmolLM2 has no FIM tokens in its catalog entry: refused exactly as over HTTP.
    assert (error_of(fim)["code"], error_of(fim)["param"]) == ("invalid_request", "suffix")


async def test_respond_returns_a_response_object(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool(
            "respond", {"model": CHAT_MODEL, "input": "Hi", "max_output_tokens": 4}
        )
    body = result.structured_content
    assert body is not None
    assert body["object"] == "response"
    assert body["status"] in ("completed", "incomplete")


async def test_embed(mcp_client: McpClientFactory, make_user: MakeUser, services: Services) -> None:
    model = next(e.id for e in services.registry.entries() if "embedding" in e.kind)
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool("embed", {"model": model, "input": ["a cat", "a dog"]})
    body = result.structured_content
    assert body is not None
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) > 10


async def test_embed_returns_a_served_receipt_and_a_readable_trace(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    model = next(e.id for e in services.registry.entries() if "embedding" in e.kind)
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool("embed", {"model": model, "input": "a cat"})
        receipt = (result.meta or {})["batchin.tech/receipt"]
        verified = await client.call_tool("verify_audit_record", {"audit_id": receipt["X-VaaS-Record-Id"]})
        trace_id = receipt["traceparent"].split("-")[1]
        trace = await client.call_tool("get_trace", {"trace_id": trace_id})
    assert receipt["X-VaaS-PublicKey"] == services.audit.current_key().verify_key_hex
    assert (verified.structured_content or {})["valid"] is True
    assert (verified.structured_content or {})["attestation"] == "served"
    assert (trace.structured_content or {})["record_id"] == receipt["X-VaaS-Record-Id"]


async def test_a_finished_video_job_names_its_served_receipt(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    model = next(e.id for e in services.registry.entries() if "video" in e.kind)
    user = await make_user()
    arguments = {"model": model, "prompt": "waves", "seconds": 1, "size": "64x64", "wait": True}
    await services.videos.start()
    try:
        async with mcp_client(user.api_key) as client:
            created = await client.call_tool("create_video", arguments)
            video = created.structured_content or {}
            fetched = await client.call_tool("get_video", {"video_id": video["id"]})
            receipt = (fetched.meta or {})["batchin.tech/receipt"]
            verified = await client.call_tool("verify_audit_record", {"audit_id": video["record_id"]})
    finally:
        await services.videos.stop()
    assert video["status"] == "completed"
    assert (fetched.structured_content or {})["record_id"] == video["record_id"]
    assert receipt["X-VaaS-Record-Id"] == video["record_id"]
    assert (created.meta or {})["batchin.tech/receipt"]["X-VaaS-Record-Id"] == video["record_id"]
    # The job's receipt names the call that created it, not the get_video call reading it.
    assert receipt["traceparent"] == (created.meta or {})["batchin.tech/receipt"]["traceparent"]
    assert (verified.structured_content or {})["valid"] is True
    assert (verified.structured_content or {})["attestation"] == "served"


async def test_speak_returns_audio_and_transcribe_reads_it_back(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    speech = next(e.id for e in services.registry.entries() if "speech" in e.kind)
    transcription = next(e.id for e in services.registry.entries() if "transcription" in e.kind)
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        spoken = await client.call_tool(
            "speak", {"model": speech, "input": "Hello world.", "response_format": "wav"}
        )
        audio = spoken.content[0]
        assert isinstance(audio, AudioContent)
        assert audio.mime_type == "audio/wav"
        assert base64.b64decode(audio.data)[:4] == b"RIFF"
        assert spoken.structured_content is not None
        assert spoken.structured_content["seconds"] > 0
        described = spoken.content[-1]
        assert isinstance(described, TextContent)
        assert described.text.endswith(
            f"s of audio/wav from {speech} ({len(base64.b64decode(audio.data))} bytes)."
        )
        heard = await client.call_tool("transcribe", {"model": transcription, "audio_base64": audio.data})
    text = (heard.structured_content or {})["text"].lower()
    assert "hello" in text
    assert "world" in text
    assert heard.structured_content is not None
    assert heard.structured_content["duration"] > 0


async def test_transcribe_needs_exactly_one_audio_source(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        neither = await client.call_tool("transcribe", {"model": "whisper-base"}, raise_on_error=False)
        garbage = await client.call_tool(
            "transcribe", {"model": "whisper-base", "audio_base64": "!!!"}, raise_on_error=False
        )
    assert error_of(neither)["param"] == "audio_base64"
    assert error_of(garbage)["code"] == "invalid_request"


async def test_generate_image_returns_image_content(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    model = next(e.id for e in services.registry.entries() if "image" in e.kind)
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool(
            "generate_image", {"model": model, "prompt": "a red square", "size": "64x64"}
        )
    image = result.content[0]
    assert isinstance(image, ImageContent)
    assert image.mime_type == "image/png"
    assert base64.b64decode(image.data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.structured_content is not None
    assert result.structured_content["size"] == "64x64"
    assert "/v1/media/file-" in result.structured_content["data"][0]["url"]  # a signed link
    described = result.content[-1]
    assert isinstance(described, TextContent)
    assert described.text.startswith("1 PNG image(s), 64x64")
    assert result.structured_content["data"][0]["url"] in described.text


async def test_audit_record_round_trip(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        created = await client.call_tool(
            "create_audit_record", {"input_text": "q", "output_text": "a", "model_id": "human-review"}
        )
        audit_id = (created.structured_content or {})["audit_id"]
        verified = await client.call_tool("verify_audit_record", {"audit_id": audit_id})
        resource = await client.read_resource(f"batchin://vaas/{audit_id}")
    assert verified.structured_content == {
        "audit_id": audit_id,
        "valid": True,
        "attestation": "caller_asserted",
        "asserted_by": user.id,
    }
    assert json.loads(resource[0].text)["audit_id"] == audit_id  # type: ignore[union-attr]


async def test_trace_of_a_tool_call_is_readable(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool("chat", {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 4})
        trace_id = (result.meta or {})["batchin.tech/receipt"]["traceparent"].split("-")[1]
        await services.traces.flush()
        trace = await client.call_tool("get_trace", {"trace_id": trace_id})
        via_resource = await client.read_resource(f"batchin://traces/{trace_id}")
    assert (trace.structured_content or {})["trace_id"] == trace_id
    assert json.loads(via_resource[0].text)["trace_id"] == trace_id  # type: ignore[union-attr]


async def test_model_resources(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        templates = {t.uri_template for t in await client.list_resource_templates()}
        listing = json.loads((await client.read_resource("batchin://models"))[0].text)  # type: ignore[union-attr]
        card = json.loads((await client.read_resource(f"batchin://models/{CHAT_MODEL}"))[0].text)  # type: ignore[union-attr]
        with pytest.raises(Exception, match="not_found"):
            await client.read_resource("batchin://models/nope")
    assert {
        "batchin://models/{model_id}",
        "batchin://vaas/{audit_id}",
        "batchin://traces/{trace_id}",
    } <= templates
    assert CHAT_MODEL in [m["id"] for m in listing["data"]]
    assert card["id"] == CHAT_MODEL


async def test_batch_tools_submit_wait_with_progress_and_read_back(
    mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    tasks = [
        {"custom_id": f"t{i}", "model": CHAT_MODEL, "request_body": {"messages": HELLO, "max_tokens": 4}}
        for i in range(3)
    ]
    await services.batches.start()
    try:
        async with mcp_client(user.api_key) as client:
            done = await client.call_tool(
                "submit_batch",
                {"tasks": tasks, "priority": "high", "wait": True},
                progress_handler=on_progress,
            )
            batch = done.structured_content or {}
            fetched = await client.call_tool("get_batch", {"batch_id": batch["id"]})
            listed = await client.call_tool("list_batches", {})
            resource = json.loads((await client.read_resource(f"batchin://batches/{batch['id']}"))[0].text)  # type: ignore[union-attr]
            missing = await client.call_tool(
                "get_batch", {"batch_id": str(uuid.uuid4())}, raise_on_error=False
            )
    finally:
        await services.batches.stop()
    assert batch["status"] == "completed"
    assert batch["completed_tasks"] == 3
    assert sorted(t["custom_id"] for t in batch["tasks"]) == ["t0", "t1", "t2"]
    assert all(t["result"]["object"] == "chat.completion" for t in batch["tasks"])
    assert seen[-1] == (3, 3)
    assert (fetched.structured_content or {})["id"] == batch["id"]
    assert batch["id"] in [b["id"] for b in (listed.structured_content or {})["result"]]
    assert resource["id"] == batch["id"]
    assert error_of(missing)["code"] == "not_found"


async def test_cancel_batch_tool(mcp_client: McpClientFactory, make_user: MakeUser) -> None:
    user = await make_user()
    tasks = [{"custom_id": "only", "model": CHAT_MODEL, "request_body": {"messages": HELLO, "max_tokens": 4}}]
    async with mcp_client(user.api_key) as client:  # no worker running: the task stays queued
        submitted = await client.call_tool("submit_batch", {"tasks": tasks})
        cancelled = await client.call_tool(
            "cancel_batch", {"batch_id": (submitted.structured_content or {})["id"]}
        )
    assert (cancelled.structured_content or {})["status"] in ("cancelling", "cancelled")


async def test_docs_resources_are_the_published_files(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    async with mcp_client(user.api_key) as client:
        llms = (await client.read_resource("batchin://docs/llms.txt"))[0].text  # type: ignore[union-attr]
        agents = (await client.read_resource("batchin://docs/agents.md"))[0].text  # type: ignore[union-attr]
    assert llms.startswith("# BatchIn")
    assert "submit_batch" in agents


async def test_chat_names_its_prompt_version_like_the_http_header(
    mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    arguments = {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 4, "prompt_version": "greeter@v1"}
    async with mcp_client(user.api_key) as client:
        result = await client.call_tool("chat", arguments)
        invalid = await client.call_tool(
            "chat", {**arguments, "prompt_version": "bad name/x"}, raise_on_error=False
        )
    assert (result.meta or {})["batchin.tech/receipt"]["X-BatchIn-Prompt-Version"] == "greeter@v1"
    assert error_of(invalid)["code"] == "invalid_request"
