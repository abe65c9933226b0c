"""Both MCP transports against real processes: Streamable HTTP at /v1/mcp on a running `batchin
serve` (Bearer keys, 401 without one, Host checks), stdio by launching `batchin mcp`, and the
official MCP Inspector (npm) as a third-party client over stdio."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.conftest import assert_error
from tests.live_server import BATCHIN, LiveServer, live_server

pytestmark = pytest.mark.slow

CHAT_MODEL = "smollm2-135m-instruct"
HELLO = [{"role": "user", "content": "Say hello."}]
INSPECTOR_DIR = Path(__file__).parent / "inspector"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("mcp-live")) as server:
        yield server


def stdio_transport(live: LiveServer, api_key: str | None) -> StdioTransport:
    env = dict(live.env)
    if api_key is not None:
        env["BATCHIN_API_KEY"] = api_key
    return StdioTransport(command=str(BATCHIN), args=["mcp"], env=env, keep_alive=False)


# --- Streamable HTTP ---------------------------------------------------------------------------


def _initialize(live: LiveServer, headers: dict[str, str]) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    return httpx2.post(
        f"{live.base_url}/v1/mcp",
        json=body,
        headers={"Accept": "application/json, text/event-stream", **headers},
        timeout=10,
    )


def test_http_without_a_key_is_401(live: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer batchin_api_not-a-real-key"}):
        refused = _initialize(live, headers)
        assert_error(refused, 401, "unauthorized")  # the API's envelope, not an empty body
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert _initialize(live, {"Authorization": f"Bearer {live.api_key}"}).status_code == 200


def test_http_refuses_a_foreign_host_header(live: LiveServer) -> None:
    """DNS-rebinding protection: a page on evil.example resolving to our address is not served."""
    response = _initialize(live, {"Authorization": f"Bearer {live.api_key}", "Host": "evil.example"})
    assert response.status_code == 421
    origin = _initialize(live, {"Authorization": f"Bearer {live.api_key}", "Origin": "http://evil.example"})
    assert origin.status_code == 403


async def test_http_tools_with_the_fastmcp_client(live: LiveServer) -> None:
    async with Client(f"{live.base_url}/v1/mcp", auth=live.api_key) as client:
        names = {tool.name for tool in await client.list_tools()}
        models = await client.call_tool("list_models", {})
        chat = await client.call_tool("chat", {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 6})
    assert {"chat", "embed", "transcribe", "list_models"} <= names
    assert CHAT_MODEL in [m["id"] for m in (models.structured_content or {})["data"]]
    assert (chat.structured_content or {})["choices"][0]["message"]["content"]
    receipt = (chat.meta or {})["batchin.tech/receipt"]
    # The same usage log an HTTP call writes, under the request id of the MCP HTTP request.
    logs = live.usage_logs()
    assert any(log["request_id"] == receipt["X-Request-Id"] and log["model"] == CHAT_MODEL for log in logs)


# --- stdio -------------------------------------------------------------------------------------


async def test_stdio_serves_tools_with_the_key_from_the_environment(live: LiveServer) -> None:
    async with Client(stdio_transport(live, live.api_key)) as client:
        names = {tool.name for tool in await client.list_tools()}
        chat = await client.call_tool("chat", {"model": CHAT_MODEL, "messages": HELLO, "max_tokens": 6})
        summary = await client.call_tool("usage_summary", {})
    assert "chat" in names
    assert (chat.structured_content or {})["object"] == "chat.completion"
    assert (summary.structured_content or {})["total_requests"] >= 1


async def test_stdio_without_a_key_refuses_tool_calls(live: LiveServer) -> None:
    async with Client(stdio_transport(live, None)) as client:
        result = await client.call_tool("list_models", {}, raise_on_error=False)
    assert result.is_error
    assert json.loads(result.content[0].text)["error"]["code"] == "unauthorized"


# --- the official MCP Inspector, CLI mode --------------------------------------------------------


@pytest.fixture(scope="module")
def inspector() -> Path:
    """The Inspector from the npm registry, installed (pinned in package.json) on first use."""
    npm = shutil.which("npm")
    assert npm is not None, "Node.js/npm is required for the MCP Inspector test (.ci/run installs it)"
    binary = INSPECTOR_DIR / "node_modules" / ".bin" / "mcp-inspector"
    if not binary.exists():
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INSPECTOR_DIR,
            check=True,
            timeout=600,
        )
    return binary


def _inspect(inspector: Path, live: LiveServer, *args: str) -> Any:
    env = {**os.environ, "HOME": str(live.log.parent), "MCP_CATALOG_PATH": str(live.log.parent / "mcp.json")}
    command = [
        *(str(inspector), "--cli", str(BATCHIN), "mcp"),
        *("-e", f"BATCHIN_API_KEY={live.api_key}"),
        *(f"-e{name}={value}" for name, value in live.env.items() if name.startswith("BATCHIN_")),
        *args,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"inspector failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_inspector_lists_tools_and_calls_one_over_stdio(inspector: Path, live: LiveServer) -> None:
    listed = _inspect(inspector, live, "--method", "tools/list")
    names = {tool["name"] for tool in listed["tools"]}
    assert {"chat", "complete", "respond", "embed", "speak", "transcribe", "list_models"} <= names
    called = _inspect(inspector, live, "--method", "tools/call", "--tool-name", "list_models")
    assert not called.get("isError")
    assert CHAT_MODEL in [m["id"] for m in called["structuredContent"]["data"]]
