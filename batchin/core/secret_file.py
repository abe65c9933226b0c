"""Server keys kept in files: made once, mode 0600 from the first byte, shared by every process.

The webhook sealing key and the media-link key live outside the database (a leaked dump alone
yields neither). Both are hex in a file created on first start; this is the one place that makes
and reads such a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

__all__ = ["load_or_create_hex_key"]

log = logging.getLogger("batchin.keys")


def load_or_create_hex_key(path: Path, size: int, *, exact: bool = True) -> bytes:
    """The key in `path` (hex), made of `size` random bytes with mode 0600 when the file is absent.

    With `exact`, the key must be exactly `size` bytes (a cipher key); otherwise at least (an HMAC
    key an operator may have made longer). A damaged file is an error, never silently replaced:
    a new key would revoke every secret or link made under the old one.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: of processes starting at once, the first one's key is everyone's.
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_bytes(size).hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by others than its owner; chmod 600 it", path)
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except ValueError:
        key = b""
    if exact and len(key) != size:
        raise ValueError(f"{path}: expected a {size * 2}-digit hex key")
    if len(key) < size:
        raise ValueError(f"{path}: expected a key of at least {size * 2} hex digits")
    return key
