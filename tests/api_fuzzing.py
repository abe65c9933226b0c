"""Schemathesis against a live server's own `/openapi.json`, authenticated, and what it found.

The pinned `st` CLI (schemathesis, [dev] extra) runs its examples, coverage and fuzzing phases
with its own conformance checks, and writes every request and response to an NDJSON report. This
module reads that report back into plain figures, so the slow test (tests/http_api/test_fuzz_openapi.py)
and the longer run (bench/fuzz_api.py) judge the same things:

- a **server error**: any 5xx response (the API answers bad input with a 4xx, never a 5xx);
- an **unenveloped error**: a 4xx/5xx whose body is not the error envelope
  `{"error": {"message": str, "type": str, "code": str, "param": ...}}` (DESIGN.md);
- a **check failure**: one of schemathesis's conformance checks (documented status codes, content
  types, response schemas) failing against what the document promises;
- a **transport error**: a request that got no response (a crashed or hung server).

An error inside the fuzzer itself (schemathesis reports those apart, as non-fatal errors; CPython
3.11's parser has a thread race that shows up as one now and then with two workers) is counted as a
**fuzzer error**: it says nothing about the server.

`fuzz_server` is the server these runs use: `batchin serve` as `make serve` runs it, with the
embedded models, Stripe configured against the fake Stripe API (so the top-up routes run rather than
answer 503 "not configured"), and a key whose RPM limit does not turn the run into 429s.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.stripe_server import running_fake_stripe
from tests.live_server import LiveServer, create_user, live_server

ST = Path(sys.executable).parent / "st"

# Left out of every run, each for its reason (a regex on "METHOD /path", as schemathesis labels them).
EXCLUDED = {
    # The fuzzer lists keys (GET /v1/keys) and would revoke the very key it runs with; key
    # revocation has its own tests (tests/http_api/test_accounts.py).
    r"^DELETE /v1/keys/\{id\}$": "would revoke the fuzzing key itself",
}

# What a run checks besides the envelope: no 5xx, and the document's promises (status codes, media
# types, response schemas).
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)

_STRIPE_KEY = "sk_test_fuzzing"
_STRIPE_WEBHOOK_SECRET = "whsec_fuzzing"


@dataclass(frozen=True)
class Finding:
    operation: str
    status: int | None
    detail: str
    request: str


@dataclass
class FuzzReport:
    operations: set[str] = field(default_factory=set)  # "METHOD /path" of each operation exercised
    cases: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[Finding] = field(default_factory=list)
    unenveloped: list[Finding] = field(default_factory=list)
    check_failures: list[Finding] = field(default_factory=list)
    transport_errors: list[Finding] = field(default_factory=list)
    fuzzer_errors: list[Finding] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "operations": len(self.operations),
            "cases": self.cases,
            "server_errors_5xx": len(self.server_errors),
            "non_envelope_errors": len(self.unenveloped),
            "check_failures": len(self.check_failures),
            "transport_errors": len(self.transport_errors),
            "fuzzer_errors": len(self.fuzzer_errors),
            "seconds": round(self.seconds, 1),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }

    def problems(self) -> list[Finding]:
        return [*self.server_errors, *self.unenveloped, *self.check_failures, *self.transport_errors]


@contextlib.contextmanager
def fuzz_server(data: Path) -> Iterator[LiveServer]:
    """A live server configured like production (Stripe included), with an unthrottled key."""
    data.mkdir(parents=True, exist_ok=True)
    with running_fake_stripe(_STRIPE_KEY) as stripe:
        env = {
            "BATCHIN_STRIPE_SECRET_KEY": _STRIPE_KEY,
            "BATCHIN_STRIPE_WEBHOOK_SECRET": _STRIPE_WEBHOOK_SECRET,
            "BATCHIN_STRIPE_API_BASE": stripe.url,
        }
        with live_server(data, env) as server:
            key = create_user(server.env, credit_cents=10**7, rate_limit_rpm=1_000_000)
            yield LiveServer(server.base_url, key, server.log, server.env)


def fuzz(
    server: LiveServer,
    report_dir: Path,
    *,
    max_examples: int,
    phases: tuple[str, ...] = ("examples", "coverage", "fuzzing"),
    workers: int = 2,
    seed: int | None = None,
    excluded: dict[str, str] | None = None,
    max_time: float | None = None,
    checks: tuple[str, ...] = CHECKS,
) -> FuzzReport:
    """Run the `st` CLI against `server` and read its report."""
    shutil.rmtree(report_dir, ignore_errors=True)
    command = [
        str(ST),
        "run",
        f"{server.base_url}/openapi.json",
        *("--header", f"Authorization: Bearer {server.api_key}"),
        *("--phases", ",".join(phases)),
        *("--max-examples", str(max_examples)),
        *("--workers", str(workers)),
        *("--checks", ",".join(checks)),
        *("--request-timeout", "120"),
        "--continue-on-failure",
        *("--max-failures", "10000"),
        *("--report", "ndjson", "--report-dir", str(report_dir)),
        *(["--seed", str(seed)] if seed is not None else []),
        *(["--max-time", str(max_time)] if max_time is not None else []),
    ]
    for pattern in excluded if excluded is not None else EXCLUDED:
        command += ["--exclude-name-regex", pattern]
    started = time.monotonic()
    # Run in the report's folder: the CLI keeps a cache of past failures in its working directory
    # and replays them first, so each run starts from a clean one.
    report_dir.mkdir(parents=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=report_dir)
    seconds = time.monotonic() - started
    reports = sorted(report_dir.glob("*.ndjson"))
    if done.returncode not in (0, 1) or not reports:  # 1: failures found; anything else: it broke
        raise RuntimeError(
            f"schemathesis did not run ({done.returncode}):\n{done.stdout[-4000:]}{done.stderr}"
        )
    report = read_report(reports[-1])
    report.seconds = seconds
    return report


def read_report(path: Path) -> FuzzReport:
    report = FuzzReport()
    with path.open() as lines:
        for line in lines:
            event = json.loads(line)
            if "NonFatalError" in event:
                _read_error(report, event["NonFatalError"])
            finished = event.get("ScenarioFinished")
            if finished is None:
                continue
            recorder = finished["recorder"]
            label = recorder["label"]
            interactions = recorder.get("interactions") or {}
            if interactions:
                report.operations.add(label)
            for interaction in interactions.values():
                _read_interaction(report, label, interaction)
            for results in (recorder.get("checks") or {}).values():
                for check in results:
                    if check["status"] != "success" and check["name"] != "not_a_server_error":
                        failure = (check.get("failure_info") or {}).get("failure") or {}
                        detail = f"{check['name']}: {failure.get('title', '')} {failure.get('message', '')}"
                        report.check_failures.append(Finding(label, None, detail[:800], ""))
    return report


_TRANSPORT_ERRORS = ("Connection", "Timeout", "RemoteDisconnected", "ProtocolError", "ChunkedEncoding")


def _read_error(report: FuzzReport, error: dict[str, Any]) -> None:
    value = error.get("value") or {}
    finding = Finding(error.get("label", "?"), None, json.dumps(value or error)[:500], "")
    kind = str(value.get("type", "")) if isinstance(value, dict) else ""
    transport = any(name in kind for name in _TRANSPORT_ERRORS)
    (report.transport_errors if transport else report.fuzzer_errors).append(finding)


def _read_interaction(report: FuzzReport, label: str, interaction: dict[str, Any]) -> None:
    request = interaction.get("request") or {}
    described = f"{request.get('method')} {request.get('uri')}"
    response = interaction.get("response")
    report.cases += 1
    if response is None:
        report.transport_errors.append(Finding(label, None, "no response", described))
        return
    status = int(response["status_code"])
    report.statuses[status] += 1
    if status < 400:
        return
    body = _body(response)
    if status >= 500:
        report.server_errors.append(Finding(label, status, body[:500].decode(errors="replace"), described))
    if not is_error_envelope(body):
        report.unenveloped.append(Finding(label, status, body[:500].decode(errors="replace"), described))


def _body(response: dict[str, Any]) -> bytes:
    content = response.get("content") or {}
    if "$base64" in content:
        return base64.b64decode(content["$base64"])
    return str(content.get("$text", "")).encode()


def is_error_envelope(body: bytes) -> bool:
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return (
        isinstance(error, dict)
        and all(isinstance(error.get(name), str) and error[name] for name in ("message", "type", "code"))
        and "param" in error
    )


def new_report_dir(root: Path) -> Path:
    return root / f"fuzz-{uuid.uuid4().hex[:8]}"
