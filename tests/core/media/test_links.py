"""Signed media links (core/media/links.py): the URL's shape, what a signature covers, expiry, and
the key file."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from batchin.core.media.links import LinkSigner, load_or_create_link_key, media_id_of
from batchin.errors import PermissionDenied

NOW = 1_800_000_000


def signer(key: bytes = b"k" * 32, ttl: int = 3600) -> LinkSigner:
    return LinkSigner(key, ttl, "http://127.0.0.1:9000")


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    query = parse_qs(split.query)
    return split.path.rsplit("/", 1)[1], query["expires"][0], query["signature"][0]


def test_a_link_names_the_base_the_id_and_when_it_expires() -> None:
    url = signer().url("file-abc", "https://media.example.com/", now=NOW)

    assert url.startswith("https://media.example.com/v1/media/file-abc?expires=1800003600&signature=")
    assert media_id_of(url) == "file-abc"


def test_without_a_base_a_link_names_the_servers_own() -> None:
    assert signer().url("file-abc", None, now=NOW).startswith("http://127.0.0.1:9000/v1/media/file-abc?")


def test_a_genuine_link_checks_out_until_it_expires() -> None:
    media_id, expires, signature = parts(signer().url("file-abc", now=NOW))

    assert signer().check(media_id, expires, signature, now=NOW + 3599) == NOW + 3600
    with pytest.raises(PermissionDenied, match="expired"):
        signer().check(media_id, expires, signature, now=NOW + 3600)


@pytest.mark.parametrize(
    "change",
    [
        lambda m, e, s: ("file-abd", e, s),  # another file
        lambda m, e, s: (m, str(int(e) + 86400), s),  # a later expiry
        lambda m, e, s: (m, e, s[:-1] + ("A" if s[-1] != "A" else "B")),  # an altered signature
        lambda m, e, s: (m, e, ""),
        lambda m, e, s: (m, None, s),
        lambda m, e, s: (m, "12e9", s),
        lambda m, e, s: (m, e, "é" * 43),  # not ASCII: refused, not a crash
    ],
)
def test_an_altered_link_is_refused(change: object) -> None:
    media_id, expires, signature = parts(signer().url("file-abc", now=NOW))

    with pytest.raises(PermissionDenied) as refused:
        signer().check(*change(media_id, expires, signature), now=NOW)  # type: ignore[operator]

    assert refused.value.status == 403
    assert "expired" not in refused.value.message


def test_a_link_signed_under_another_key_is_refused() -> None:
    media_id, expires, signature = parts(signer(b"x" * 32).url("file-abc", now=NOW))

    with pytest.raises(PermissionDenied, match="signature"):
        signer(b"y" * 32).check(media_id, expires, signature, now=NOW)


def test_the_key_file_is_made_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "media" / "link_key"

    first = load_or_create_link_key(path)
    again = load_or_create_link_key(path)

    assert first == again
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
