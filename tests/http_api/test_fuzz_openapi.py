"""Schemathesis against our own /openapi.json on a real server, authenticated (issue 13): no request
gets a 5xx, every error is the envelope, responses conform to the document.

Bounded for `make test`: 5 generated cases per operation and phase (examples, coverage, fuzzing),
about 2,700 requests in total, with a fixed seed so a failure reproduces. The embedded engines are
small enough that no operation needs leaving out for time (images and videos are tiny random
pipelines, and most generated bodies are refused before any engine runs); the one operation left out
is key revocation, which would revoke the fuzzing key itself (tests/api_fuzzing.py: EXCLUDED).
`bench/fuzz_api.py` runs the same with as many cases as you like.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx2
import pytest

from tests.api_fuzzing import EXCLUDED, FuzzReport, fuzz, fuzz_server
from tests.live_server import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SEED = 20261203


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fuzz_server(tmp_path_factory.mktemp("fuzz-server")) as live:
        yield live


@pytest.fixture(scope="module")
def report(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> FuzzReport:
    # One worker: the test's time is small either way, and it keeps the fuzzer clear of CPython
    # 3.11's parser thread race (tests/api_fuzzing.py).
    return fuzz(server, tmp_path_factory.mktemp("fuzz-report"), max_examples=5, seed=SEED, workers=1)


def test_every_documented_operation_is_exercised(server: LiveServer, report: FuzzReport) -> None:
    document = httpx2.get(f"{server.base_url}/openapi.json", timeout=10).json()
    documented = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    excluded = {label for label in documented if any(re.search(p, label) for p in EXCLUDED)}
    # Schemathesis leaves out the operation that serves the document it was loaded from.
    assert report.operations == documented - excluded - {"GET /openapi.json"}
    assert report.cases > 1000
    assert report.statuses[200] > 100  # not only refusals: many generated requests were served


def test_no_request_gets_a_server_error(report: FuzzReport) -> None:
    assert report.server_errors == []


def test_every_error_response_is_the_envelope(report: FuzzReport) -> None:
    assert report.unenveloped == []


def test_responses_conform_to_the_document(report: FuzzReport) -> None:
    """Documented status codes, content types and response schemas (schemathesis's checks)."""
    assert report.check_failures == []


def test_every_request_got_an_answer(report: FuzzReport) -> None:
    assert report.transport_errors == []


def test_the_server_logged_no_errors(server: LiveServer, report: FuzzReport) -> None:
    text = server.log.read_text()
    assert "Traceback" not in text
    assert " ERROR " not in text
