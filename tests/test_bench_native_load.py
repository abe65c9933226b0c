"""bench/native_load.py, which bench_workers.py's figures rest on: nginx answers as the fake upstream
with the canned completion, wrk's answers are counted by status, and anything but a 200 or any
socket error fails the run instead of counting as served. Needs the wrk and nginx binaries."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from bench.light_http import MODELS, chat_body, completion
from bench.native_load import native_tools, nginx_upstream, require_all_200, run_wrk

TOOLS = native_tools()
needs_tools = pytest.mark.skipif(isinstance(TOOLS, str), reason=f"{TOOLS} (apt-get install wrk nginx-light)")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    assert not isinstance(TOOLS, str)
    with nginx_upstream(TOOLS[1], completion(3), MODELS) as (url, _):
        yield url


@needs_tools
def test_nginx_answers_a_post_with_the_canned_completion(upstream: str) -> None:
    answer = httpx.post(f"{upstream}/chat/completions", content=chat_body("m"), timeout=5)

    assert (answer.status_code, answer.headers["content-type"]) == (200, "application/json")
    assert answer.json() == json.loads(completion(3))


@needs_tools
def test_nginx_lists_the_fake_model(upstream: str) -> None:
    answer = httpx.get(f"{upstream}/models", timeout=5)

    assert answer.json()["data"][0]["id"] == "fake-model"


@needs_tools
def test_wrk_counts_the_200s_it_was_answered(upstream: str) -> None:
    assert not isinstance(TOOLS, str)
    port = int(upstream.rsplit(":", 1)[1].split("/")[0])

    run = run_wrk(TOOLS[0], [(port, "key", chat_body("m"))], threads=1, connections=4, seconds=1)

    assert run.ok > 0
    assert 0.9 < run.seconds < 3
    assert run.cpu_seconds >= 0


def _result(**errors: int) -> dict[str, int]:
    clean = {"ok": 10, "other_status": 0, "requests": 10, "duration_us": 1, "status": 0}
    return {**clean, "connect": 0, "read": 0, "write": 0, "timeout": 0, **errors}


def test_a_clean_wrk_result_passes() -> None:
    require_all_200(_result(), 1)


@pytest.mark.parametrize(
    "errors",
    [
        {"other_status": 1, "ok": 9},
        {"status": 1},
        {"read": 1},
        {"connect": 1},
        {"timeout": 1},
        {"ok": 0, "requests": 0},
    ],
)
def test_a_wrk_result_with_anything_but_200s_fails_the_run(errors: dict[str, int]) -> None:
    with pytest.raises(RuntimeError, match="not only 200s"):
        require_all_200(_result(**errors), 1)
