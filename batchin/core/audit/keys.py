"""The audit signing key: an Ed25519 seed in a file (mode 0600), created when missing, with a key id.

The private key never leaves the file; its public half is registered in the store by key id, so
records signed before a rotation still verify after it (the verifier looks the key up by the id
the record names). Rotation writes a new seed atomically; a running server keeps signing with the
key it loaded until it restarts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

__all__ = ["AuditKey", "key_id_of", "load_or_create", "rotate", "verify_signature"]

_SEED_BYTES = 32


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class AuditKey:
    secret_key: bytes = field(repr=False)  # libsodium's 64-byte form (seed || public key)
    key_id: str
    public_key_hex: str

    @classmethod
    def from_seed(cls, seed: bytes) -> AuditKey:
        public, secret = crypto_sign_seed_keypair(seed)
        return cls(secret, key_id_of(public), public.hex())

    def sign(self, message: bytes) -> bytes:
        # The binding directly: SigningKey.sign's wrapper objects cost a third of the signature.
        return bytes(crypto_sign(message, self.secret_key)[:64])


def _read(path: Path) -> AuditKey:
    text = path.read_text(encoding="ascii").strip()
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path}: expected a 64-digit hex Ed25519 seed") from None
    if len(seed) != _SEED_BYTES:
        raise ValueError(f"{path}: expected a 64-digit hex Ed25519 seed")
    return AuditKey.from_seed(seed)


def _write_atomically(path: Path, seed: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL + 0600 from the start: the seed is never readable by others, not even briefly.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(seed.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def load_or_create(path: Path) -> AuditKey:
    """The key in `path`, generating one (mode 0600) when the file does not exist."""
    if not path.exists():
        # FileExistsError: another process created it first; use theirs.
        with contextlib.suppress(FileExistsError):
            _write_new(path, bytes(SigningKey.generate()))
    return _read(path)


def _write_new(path: Path, seed: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(seed.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def rotate(path: Path) -> tuple[AuditKey | None, AuditKey]:
    """Replace the key in `path` with a new one; returns (old, new)."""
    old = _read(path) if path.exists() else None
    _write_atomically(path, bytes(SigningKey.generate()))
    return old, _read(path)


def verify_signature(public_key_hex: str, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(bytes.fromhex(public_key_hex)).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True
