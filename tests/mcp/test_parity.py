"""Parity: for every tool with an HTTP twin, the same input gives the same result model through
both surfaces (same services, same key). Generation is greedy or seeded, so even the generated
content must match."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import httpx2
from pydantic import BaseModel, TypeAdapter

from batchin.protocol.audio import TranscriptionVerbose
from batchin.protocol.embeddings import CreateEmbeddingResponse
from batchin.protocol.images import ImagesResponse
from batchin.protocol.models import ModelList
from batchin.protocol.responses import ResponseObject
from batchin.protocol.text import ChatCompletion, Completion
from batchin.protocol.usage import UsageSummary
from batchin.services import Services
from tests.conftest import MakeUser, bearer
from tests.mcp.conftest import McpClientFactory

CHAT_MODEL = "smollm2-135m-instruct"
VOLATILE = {"id", "created", "created_at", "system_fingerprint"}


def _stable(value: Any) -> Any:
    """A result with per-call identifiers and timestamps removed."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _same(model: type[BaseModel], http_body: Any, tool_body: Any) -> None:
    adapter = TypeAdapter(model)
    from_http = adapter.validate_python(http_body).model_dump(mode="json")
    from_tool = adapter.validate_python(tool_body).model_dump(mode="json")
    assert _stable(from_http) == _stable(from_tool)


def _kind(services: Services, kind: str) -> str:
    return next(e.id for e in services.registry.entries() if kind in e.kind)


async def test_text_tools_match_their_http_twins(
    client: httpx2.AsyncClient, mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    messages = [{"role": "user", "content": "Name a color."}]
    cases: list[tuple[str, dict[str, Any], str, type[BaseModel]]] = [
        (
            "chat",
            {"model": CHAT_MODEL, "messages": messages, "max_tokens": 8, "temperature": 0},
            "/v1/chat/completions",
            ChatCompletion,
        ),
        (
            "complete",
            {"model": CHAT_MODEL, "prompt": "Red, green,", "max_tokens": 6, "temperature": 0},
            "/v1/completions",
            Completion,
        ),
        (
            "respond",
            {"model": CHAT_MODEL, "input": "Name a fruit.", "max_output_tokens": 6, "temperature": 0},
            "/v1/responses",
            ResponseObject,
        ),
    ]
    async with mcp_client(user.api_key) as mcp:
        for tool, arguments, path, model in cases:
            http = await client.post(path, json=arguments, headers=bearer(user.api_key))
            assert http.status_code == 200, http.text
            result = await mcp.call_tool(tool, arguments)
            _same(model, http.json(), result.structured_content)


async def test_embeddings_match(
    client: httpx2.AsyncClient, mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    arguments = {"model": _kind(services, "embedding"), "input": ["batch inference", "retrieval"]}
    http = await client.post("/v1/embeddings", json=arguments, headers=bearer(user.api_key))
    async with mcp_client(user.api_key) as mcp:
        result = await mcp.call_tool("embed", arguments)
    _same(CreateEmbeddingResponse, http.json(), result.structured_content)


async def test_speech_and_transcription_match(
    client: httpx2.AsyncClient, mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    speech = {"model": _kind(services, "speech"), "input": "Welcome to BatchIn.", "response_format": "wav"}
    http_audio = await client.post("/v1/audio/speech", json=speech, headers=bearer(user.api_key))
    async with mcp_client(user.api_key) as mcp:
        spoken = await mcp.call_tool("speak", speech)
        tool_audio = base64.b64decode(spoken.content[0].data)  # type: ignore[union-attr]
        assert _frames(tool_audio) == _frames(http_audio.content)  # Piper is deterministic here

        model = _kind(services, "transcription")
        http_text = await client.post(
            "/v1/audio/transcriptions",
            data={"model": model, "response_format": "verbose_json"},
            files={"file": ("speech.wav", http_audio.content, "audio/wav")},
            headers=bearer(user.api_key),
        )
        heard = await mcp.call_tool("transcribe", {"model": model, "audio_base64": spoken.content[0].data})  # type: ignore[union-attr]
    _same(TranscriptionVerbose, http_text.json(), heard.structured_content)


def _frames(wav: bytes) -> bytes:
    with wave.open(io.BytesIO(wav)) as reader:
        return bytes(reader.readframes(reader.getnframes()))


async def test_image_generation_matches(
    client: httpx2.AsyncClient, mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    arguments = {"model": _kind(services, "image"), "prompt": "a lighthouse", "size": "64x64", "seed": 7}
    http = await client.post("/v1/images", json=arguments, headers=bearer(user.api_key))
    async with mcp_client(user.api_key) as mcp:
        result = await mcp.call_tool("generate_image", arguments)
    http_body, tool_body = http.json(), result.structured_content
    assert tool_body is not None
    ImagesResponse.model_validate(http_body)
    ImagesResponse.model_validate(tool_body)
    assert http_body["size"] == tool_body["size"]
    assert len(http_body["data"]) == len(tool_body["data"])
    http_png = await client.get(http_body["data"][0]["url"], headers=bearer(user.api_key))
    assert base64.b64decode(result.content[0].data) == http_png.content  # type: ignore[union-attr]


async def test_account_tools_match(
    client: httpx2.AsyncClient, mcp_client: McpClientFactory, make_user: MakeUser
) -> None:
    user = await make_user()
    headers = bearer(user.api_key)
    async with mcp_client(user.api_key) as mcp:
        _same(
            ModelList,
            # The same caller on both: prices in its account's currency (issue 15).
            (await client.get("/v1/models", headers=headers)).json(),
            (await mcp.call_tool("list_models", {})).structured_content,
        )
        tool_summary = (await mcp.call_tool("usage_summary", {})).structured_content
        _same(UsageSummary, (await client.get("/v1/usage/summary", headers=headers)).json(), tool_summary)
        record = {"input_text": "in", "output_text": "out", "model_id": "human-review"}
        created = (await client.post("/v1/vaas", json=record, headers=headers)).json()
        verified = await mcp.call_tool("verify_audit_record", {"audit_id": created["audit_id"]})
        http_verified = (await client.get(f"/v1/vaas/{created['audit_id']}/verify")).json()
    assert verified.structured_content == http_verified


async def test_video_job_with_progress_matches_http(
    client: httpx2.AsyncClient, mcp_client: McpClientFactory, make_user: MakeUser, services: Services
) -> None:
    user = await make_user()
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    arguments = {
        "model": _kind(services, "video"),
        "prompt": "waves",
        "seconds": 1,
        "size": "64x64",
        "wait": True,
    }
    await services.videos.start()
    try:
        async with mcp_client(user.api_key) as mcp:
            created = await mcp.call_tool("create_video", arguments, progress_handler=on_progress)
            video = created.structured_content or {}
            fetched = await mcp.call_tool("get_video", {"video_id": video["id"]})
    finally:
        await services.videos.stop()
    assert video["status"] == "completed"
    assert seen
    assert seen[-1] == 100
    http = await client.get(f"/v1/videos/{video['id']}", headers=bearer(user.api_key))
    # output_url is a signed link minted per read: the same target, each with its own expiry.
    http_body, tool_body = http.json(), dict(fetched.structured_content or {})
    http_url, tool_url = http_body.pop("output_url"), tool_body.pop("output_url")
    assert http_body == tool_body
    assert http_url.split("?")[0] == tool_url.split("?")[0] == f"http://testserver/v1/media/{video['id']}"
