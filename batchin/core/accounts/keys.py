"""API key secrets: generated once, stored only as a SHA-256 hash.

The secret carries 256 random bits, so a fast hash is as safe as a slow one here (nothing to brute
force) and keeps authentication off the CPU budget; lookups go by hash and the final comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "batchin_api_"
_DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 4


def generate_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def display_prefix(secret: str) -> str:
    """What lists show so a user can tell keys apart: `batchin_api_` and four characters."""
    return secret[:_DISPLAY_PREFIX_LEN]


def hashes_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and 16 < len(secret) < 128 and secret.isascii()
