"""Standard Webhooks signing, judged by the reference `standardwebhooks` library, and the server key
that seals secrets at rest."""

from __future__ import annotations

import base64
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from batchin.core.webhooks.secrets import load_or_create_key
from batchin.core.webhooks.signing import new_secret, secret_bytes, sign, signed_headers

Tamper = Callable[[dict[str, str], bytes], tuple[dict[str, str], bytes]]
BODY = b'{"id":"msg_1","object":"event","type":"batch.completed","created_at":1,"data":{"id":"b"}}'


def test_a_new_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert secret_bytes(first) == base64.b64decode(first[6:])
    assert first != second


def test_signed_headers_verify_with_the_reference_library() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "msg_abc", int(time.time()), BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_abc"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == {
        "id": "msg_1",
        "object": "event",
        "type": "batch.completed",
        "created_at": 1,
        "data": {"id": "b"},
    }


def test_our_signature_equals_the_reference_signature() -> None:
    from datetime import UTC, datetime

    secret, timestamp = new_secret(), 1_700_000_000
    reference = Webhook(secret).sign("msg_x", datetime.fromtimestamp(timestamp, UTC), BODY.decode())
    assert sign(secret, "msg_x", timestamp, BODY) == reference


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: ({**h, "webhook-id": "msg_other"}, b),
        lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
        lambda h, b: (h, b.replace(b"completed", b"cancelled")),
    ],
)
def test_a_changed_id_timestamp_or_body_does_not_verify(tamper: Tamper) -> None:
    secret = new_secret()
    headers, body = tamper(signed_headers(secret, "msg_abc", int(time.time()), BODY), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_another_secret_does_not_verify() -> None:
    headers = signed_headers(new_secret(), "msg_abc", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)


def test_the_server_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "webhooks" / "secret_key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key


def test_a_damaged_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="64-digit hex key"):
        load_or_create_key(path)
