"""`batchin batch submit|status|results|cancel` against a live server on the embedded model."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import BATCHIN, LiveServer, live_server

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("batch-cli")) as server:
        yield server


def batch_cli(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**live.env, "BATCHIN_BASE_URL": live.base_url, "BATCHIN_API_KEY": live.api_key}
    return subprocess.run(
        [str(BATCHIN), "batch", *args], env=env, capture_output=True, text=True, timeout=300
    )


def write_jsonl(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def request(custom_id: str) -> dict[str, Any]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"Say {custom_id}."}], "max_tokens": 4}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def test_submit_wait_writes_results_and_status_results_read_them_back(
    live: LiveServer, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "docs.jsonl", [request(f"doc-{i}") for i in range(3)])
    output = tmp_path / "out.jsonl"
    done = batch_cli(live, "submit", str(source), "--priority", "high", "--wait", "--output", str(output))
    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert batch["priority"] == "high"
    assert "upload" in done.stderr  # the progress bars go to stderr, never into the JSON
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["doc-0", "doc-1", "doc-2"]
    assert all(line["response"]["status_code"] == 200 for line in lines)

    status = batch_cli(live, "status", batch["id"])
    assert json.loads(status.stdout)["status"] == "completed"
    again = tmp_path / "again.jsonl"
    results = batch_cli(live, "results", batch["id"], "--output", str(again))
    assert results.returncode == 0, results.stderr
    assert again.read_text() == output.read_text()


def test_invalid_lines_fail_the_batch_and_are_reported(live: LiveServer, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "bad.jsonl", [request("ok"), {"custom_id": "no-body", "method": "POST"}])
    done = batch_cli(live, "submit", str(source), "--wait", "--output", str(tmp_path / "r.jsonl"))
    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)
    assert batch["status"] == "failed"
    assert [error["line"] for error in batch["errors"]["data"]] == [2]


def test_cancel_and_unknown_batch(live: LiveServer, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "many.jsonl", [request(f"c-{i}") for i in range(40)])
    submitted = batch_cli(live, "submit", str(source), "--priority", "fill")
    batch_id = json.loads(submitted.stdout)["id"]
    cancelled = batch_cli(live, "cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] in ("cancelling", "cancelled")
    missing = batch_cli(live, "status", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"
