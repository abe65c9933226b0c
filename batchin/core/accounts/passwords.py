"""Console passwords as argon2id hashes (argon2-cffi's defaults: RFC 9106's low-memory profile).

Verification of an unknown email still spends one hash's time against a fixed dummy hash, so the
answer's timing does not tell which emails have accounts."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from batchin.errors import InvalidRequest

__all__ = ["MIN_PASSWORD_LENGTH", "hash_password", "password_matches"]

MIN_PASSWORD_LENGTH = 10
_MAX_PASSWORD_LENGTH = 1024


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id


@cache
def _dummy_hash() -> str:
    return _hasher().hash("not a password of anyone")


async def hash_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= _MAX_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"A password has {MIN_PASSWORD_LENGTH} to {_MAX_PASSWORD_LENGTH} characters.", param="password"
        )
    # Hashing takes tens of milliseconds of CPU: off the event loop.
    return await asyncio.to_thread(_hasher().hash, password)


async def password_matches(stored_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher().verify(stored_hash or _dummy_hash(), password[:_MAX_PASSWORD_LENGTH])
        except (VerificationError, InvalidHashError):
            return False

    matched = await asyncio.to_thread(check)
    return matched and stored_hash is not None
