"""The official `openai` SDK against a live `batchin serve` on the embedded SmolLM2 model: chat,
completions and responses (plain and streamed), error classes, and a stream closed early."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.live_server import LiveServer, live_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in three words."}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("live")) as server:
        yield server


# --- chat ------------------------------------------------------------------------------------------


def test_chat_completion(live: LiveServer) -> None:
    with live.client() as client:
        completion = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 8
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_chat_stream_with_usage(live: LiveServer) -> None:
    with live.client() as client:
        stream = client.chat.completions.create(
            model=MODEL,
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert 1 <= chunks[-1].usage.completion_tokens <= 8
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text


# --- completions -----------------------------------------------------------------------------------


def test_completion(live: LiveServer) -> None:
    with live.client() as client:
        completion = client.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0
        )
    assert completion.object == "text_completion"
    assert completion.choices[0].text
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 6


def test_completion_stream(live: LiveServer) -> None:
    with live.client() as client:
        chunks = list(
            client.completions.create(
                model=MODEL,
                prompt="The capital of France is",
                max_tokens=6,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert len({chunk.id for chunk in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 6


# --- responses -------------------------------------------------------------------------------------


def test_response(live: LiveServer) -> None:
    with live.client() as client:
        response = client.responses.create(
            model=MODEL, input="Say hello.", max_output_tokens=16, temperature=0
        )
    assert response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output_text
    assert response.usage is not None
    assert response.usage.output_tokens <= 16


def test_response_stream_events(live: LiveServer) -> None:
    with live.client() as client:
        events = list(
            client.responses.create(
                model=MODEL, input="Say hello.", max_output_tokens=16, temperature=0, stream=True
            )
        )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = [e for e in events if e.type == "response.output_text.done"]
    assert [e.text for e in done] == [deltas]


def test_response_stream_helper(live: LiveServer) -> None:
    with (
        live.client() as client,
        client.responses.stream(
            model=MODEL, input="Say hello.", max_output_tokens=128, temperature=0
        ) as stream,
    ):
        deltas = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == deltas
    assert final.output_text


# --- errors ----------------------------------------------------------------------------------------


def test_an_unknown_model_raises_not_found(live: LiveServer) -> None:
    with live.client() as client, pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert raised.value.param == "model"


def test_an_unsupported_parameter_raises_bad_request_naming_it(live: LiveServer) -> None:
    with live.client() as client, pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=HELLO, n=5)  # up to 4
    assert raised.value.param == "n"
    assert raised.value.code == "invalid_request"


def test_a_bad_key_raises_authentication_error(live: LiveServer) -> None:
    with (
        live.client(api_key="batchin_api_not-a-real-key") as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.chat.completions.create(model=MODEL, messages=HELLO)


# --- cancellation ----------------------------------------------------------------------------------


def test_closing_a_stream_early_cancels_the_call(live: LiveServer) -> None:
    max_tokens = 1000
    with live.client() as client:
        stream = client.completions.create(
            model=MODEL,
            prompt="1, 2, 3, 4, 5, 6, 7, 8, 9, 10,",
            max_tokens=max_tokens,
            temperature=0,
            stream=True,
        )
        request_id = stream.response.headers["x-request-id"]
        for _, _chunk in zip(range(2), stream, strict=False):
            pass
        stream.close()

    deadline = time.monotonic() + 10
    log: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        log = next((entry for entry in live.usage_logs() if entry["request_id"] == request_id), None)
        if log is not None:
            break
        time.sleep(0.1)
    assert log is not None, "the call was never settled"
    assert log["status"] == "cancelled"
    assert 2 <= log["output_tokens"] < max_tokens // 4


def test_an_idle_keep_alive_connection_outlives_the_clients_pool_expiry(live: LiveServer) -> None:
    """Clients' pools drop an idle connection after 5 s (httpx, so the SDKs) or 15 s (aiohttp): the
    server must keep it longer, or a request sent on it just as the server closes it fails."""
    host, port = live.base_url.removeprefix("http://").split(":")
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with socket.create_connection((host, int(port)), timeout=10) as conn, conn.makefile("rb") as reply:
        for wait in (0.0, 6.0):  # uvicorn's default closes an idle connection after 5 s
            time.sleep(wait)
            conn.sendall(request)
            status = reply.readline()
            assert status.startswith(b"HTTP/1.1 200"), (wait, status)
            length = 0
            while (line := reply.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            assert len(reply.read(length)) == length


def test_the_server_logged_no_errors(live: LiveServer) -> None:
    """Runs last: nothing above (a stream closed early included) made the server log a failure."""
    text = live.log.read_text()
    assert "Traceback" not in text
    assert " ERROR " not in text
