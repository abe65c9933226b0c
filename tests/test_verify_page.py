"""/verify/{id} in real headless Chromium against a live `batchin serve`: the page's own JS
(TweetNaCl Ed25519, JCS, SHA-256, RFC 6962) verifies the evidence pack, and catches a tampered one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.console.chromium import CHROMIUM, Browser
from tests.live_server import create_user, free_port, serve_command, wait_healthy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    if CHROMIUM is None:
        pytest.skip(
            "chromium is not installed (apt-get install -y chromium): the page test needs a real browser"
        )
    root = tmp_path_factory.mktemp("verify-page")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env["BATCHIN_DATA_DIR"] = str(root / "data")
    api_key = create_user(env, credit_cents=100)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = root / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(serve_command(port), env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base, process, log)
            yield base, api_key, root / "data" / "batchin.db"
        finally:
            process.terminate()
            process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    opened = Browser(tmp_path_factory.mktemp("verify-page-browser") / "profile")
    try:
        yield opened
    finally:
        opened.close()


def render(browser: Browser, url: str) -> str:
    """The page once its script has reached a verdict, as the DOM then stands."""
    browser.goto(url)
    browser.wait_for("document.getElementById('verdict').dataset.state !== 'pending'", timeout=60)
    return browser.html()


def create_record(base: str, api_key: str, output_text: str) -> str:
    body = {"input_text": "What is a zero-knowledge proof?", "output_text": output_text, "model_id": "m"}
    response = httpx2.post(f"{base}/v1/vaas", json=body, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200, response.text
    return str(response.json()["audit_id"])


def test_page_verifies_a_record_in_chromium(live_server: tuple[str, str, Path], browser: Browser) -> None:
    base, api_key, _ = live_server
    for i in range(3):  # a few leaves, so the inclusion proof has a real path
        create_record(base, api_key, f"warm-up {i}")
    audit_id = create_record(base, api_key, "A cryptographic method… ünïcødé ✓")
    dom = render(browser, f"{base}/verify/{audit_id}")
    assert 'id="verdict" data-state="valid"' in dom, dom[-3000:]
    for check in (
        "signature",
        "key_id",
        "envelope",
        "hashes",
        "leaf_hash",
        "inclusion",
        "checkpoint_signature",
        "attestation",
    ):
        assert f'data-check="{check}" data-ok="true"' in dom, check
    assert audit_id in dom
    # POST /v1/vaas texts are the caller's: the page must not let them pass for a served call.
    assert 'data-attestation="caller_asserted"' in dom
    assert "Caller-asserted: user " in dom


def served_record(base: str, api_key: str, kind: str) -> str:
    """A call of `kind` served by the live server; the id of the audit record its response names."""
    with httpx2.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=300) as http:
        if kind == "transcription":
            speech = http.post(
                "/v1/audio/speech",
                json={"model": "piper-en-us-joe-medium", "input": "Hello.", "response_format": "wav"},
            )
            files = {"file": ("hello.wav", speech.content, "audio/wav")}
            response = http.post("/v1/audio/transcriptions", data={"model": "whisper-tiny.en"}, files=files)
        elif kind == "video":
            body = {"model": "tiny-random-video", "prompt": "waves", "seconds": "1", "size": "64x64"}
            response = _finished(http, http.post("/v1/videos", json=body).json()["id"])
        else:
            path, body = _SERVED_CALLS[kind]
            response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.headers["X-VaaS-Record-Id"]


def _finished(http: httpx2.Client, video_id: str) -> httpx2.Response:
    """The job once it has ended (a completed job's response carries its receipt headers)."""
    deadline = time.monotonic() + 300
    while (response := http.get(f"/v1/videos/{video_id}")).json()["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the video job did not finish"
        time.sleep(0.2)
    return response


_SERVED_CALLS: dict[str, tuple[str, dict[str, object]]] = {
    "text": (
        "/v1/chat/completions",
        {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    ),
    "embedding": ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": "a receipt"}),
    "speech": ("/v1/audio/speech", {"model": "piper-en-us-joe-medium", "input": "Hello."}),
    "image": (
        "/v1/images",
        {"model": "tiny-random-image", "prompt": "a tree", "response_format": "b64_json"},
    ),
}


@pytest.mark.parametrize("kind", ["text", "embedding", "speech", "transcription", "image", "video"])
def test_page_verifies_a_served_record_of_every_kind(
    live_server: tuple[str, str, Path], browser: Browser, kind: str
) -> None:
    base, api_key, _ = live_server
    audit_id = served_record(base, api_key, kind)
    dom = render(browser, f"{base}/verify/{audit_id}")
    assert 'id="verdict" data-state="valid"' in dom, dom[-3000:]
    assert 'data-attestation="served"' in dom


def test_page_flags_a_tampered_record(live_server: tuple[str, str, Path], browser: Browser) -> None:
    base, api_key, database = live_server
    audit_id = create_record(base, api_key, "original output")
    with sqlite3.connect(database) as conn:
        (payload,) = conn.execute("SELECT payload FROM vaas_records WHERE id = ?", (audit_id,)).fetchone()
        forged = payload.replace(json.loads(payload)["output_hash"], "sha256:" + "0" * 64)
        conn.execute("UPDATE vaas_records SET payload = ? WHERE id = ?", (forged, audit_id))
    dom = render(browser, f"{base}/verify/{audit_id}")
    assert 'id="verdict" data-state="invalid"' in dom, dom[-3000:]
    assert 'data-check="signature" data-ok="false"' in dom
    assert 'data-check="inclusion" data-ok="false"' in dom


def test_page_reports_an_unknown_record(live_server: tuple[str, str, Path], browser: Browser) -> None:
    base, _, _ = live_server
    dom = render(browser, f"{base}/verify/00000000-0000-4000-8000-000000000000")
    assert 'data-state="error"' in dom
    assert "No audit record" in dom
