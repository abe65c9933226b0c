"""/verify/{id} in real headless Chromium against a live `batchin serve`: the page's own JS
(TweetNaCl Ed25519, JCS, SHA-256, RFC 6962) verifies the evidence pack, and catches a tampered one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
)
_SCRIPT = Path(sys.executable).with_name("batchin")
COMMAND = (
    [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from batchin.cli import main; main()"]
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    if CHROMIUM is None:
        pytest.skip(
            "chromium is not installed (apt-get install -y chromium): the page test needs a real browser"
        )
    data_dir = tmp_path_factory.mktemp("verify-page") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    env["BATCHIN_DATA_DIR"] = str(data_dir)
    created = subprocess.run(
        [
            *COMMAND,
            "users",
            "create",
            "--email",
            "page@example.com",
            "--name",
            "page",
            "--credit-cents",
            "100",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    port = _free_port()
    process = subprocess.Popen(
        [
            *COMMAND,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            "1",
        ],
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("batchin serve did not come up")
        yield base, api_key, data_dir / "batchin.db"
    finally:
        process.terminate()
        process.wait(timeout=20)


def render(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def create_record(base: str, api_key: str, output_text: str) -> str:
    body = {"input_text": "What is a zero-knowledge proof?", "output_text": output_text, "model_id": "m"}
    response = httpx2.post(f"{base}/v1/vaas", json=body, headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200, response.text
    return str(response.json()["audit_id"])


def test_page_verifies_a_record_in_chromium(live_server: tuple[str, str, Path], tmp_path: Path) -> None:
    base, api_key, _ = live_server
    for i in range(3):  # a few leaves, so the inclusion proof has a real path
        create_record(base, api_key, f"warm-up {i}")
    audit_id = create_record(base, api_key, "A cryptographic method… ünïcødé ✓")
    dom = render(f"{base}/verify/{audit_id}", tmp_path / "profile")
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
    live_server: tuple[str, str, Path], tmp_path: Path, kind: str
) -> None:
    base, api_key, _ = live_server
    audit_id = served_record(base, api_key, kind)
    dom = render(f"{base}/verify/{audit_id}", tmp_path / "profile")
    assert 'id="verdict" data-state="valid"' in dom, dom[-3000:]
    assert 'data-attestation="served"' in dom


def test_page_flags_a_tampered_record(live_server: tuple[str, str, Path], tmp_path: Path) -> None:
    base, api_key, database = live_server
    audit_id = create_record(base, api_key, "original output")
    with sqlite3.connect(database) as conn:
        (payload,) = conn.execute("SELECT payload FROM vaas_records WHERE id = ?", (audit_id,)).fetchone()
        forged = payload.replace(json.loads(payload)["output_hash"], "sha256:" + "0" * 64)
        conn.execute("UPDATE vaas_records SET payload = ? WHERE id = ?", (forged, audit_id))
    dom = render(f"{base}/verify/{audit_id}", tmp_path / "profile")
    assert 'id="verdict" data-state="invalid"' in dom, dom[-3000:]
    assert 'data-check="signature" data-ok="false"' in dom
    assert 'data-check="inclusion" data-ok="false"' in dom


def test_page_reports_an_unknown_record(live_server: tuple[str, str, Path], tmp_path: Path) -> None:
    base, _, _ = live_server
    dom = render(f"{base}/verify/00000000-0000-4000-8000-000000000000", tmp_path / "profile")
    assert 'data-state="error"' in dom
    assert "No audit record" in dom
