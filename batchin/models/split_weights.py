"""Weights that ship split across several registry packages (a registry caps a package's size), and
their assembly into one verified file on first load.

An entry names its first part as `[weights]` (so the registry verifies it, and an `optional` entry
is left out when it is missing) and lists every part in `engine_options` under one key prefix, which
the engine chooses (`model_bin` for faster-whisper, `gguf` for llama.cpp):

    <key>_parts = ["package:…/part1", "package:…/part2"]
    <key>_parts_sha256 = ["…", "…"]     # each part is checked before it is used
    <key>_sha256 = "…"                   # the assembled file is checked too

The parts are concatenated into the runner's derived folder (the registry's `derived_dir`, i.e.
`<data dir>/models/<model id>/`, or `engine_options.assemble_dir`/<model id>), hashed while written
and renamed into place only when the hash matches; later loads re-verify the assembled file, so a
truncated or altered file is rebuilt rather than loaded. All of it blocks: call it in a thread.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from batchin.models.catalog import CatalogEntry
from batchin.models.weights import WeightsError, resolve_weights, sha256_file

__all__ = ["SplitWeights", "assemble_dir", "assemble_parts"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SplitWeights:
    parts: tuple[str, ...]
    parts_sha256: tuple[str, ...]
    sha256: str

    @classmethod
    def from_options(cls, entry: CatalogEntry, key: str) -> SplitWeights | None:
        """The parts `entry.engine_options` lists under `key`, or None when it lists none."""
        options = entry.engine_options
        parts = options.get(f"{key}_parts")
        if not parts:
            return None
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise WeightsError(f"model {entry.id}: engine_options.{key}_parts must be a list of paths")
        hashes = options.get(f"{key}_parts_sha256")
        expected = options.get(f"{key}_sha256")
        if (
            not isinstance(hashes, list)
            or len(hashes) != len(parts)
            or not all(isinstance(h, str) for h in hashes)
            or not isinstance(expected, str)
        ):
            raise WeightsError(
                f"model {entry.id}: {key}_parts needs {key}_parts_sha256 (one per part) and {key}_sha256"
            )
        return cls(tuple(parts), tuple(h.lower() for h in hashes), expected.lower())

    def ensure(self, entry: CatalogEntry, target: Path) -> Path:
        """`target`, assembled from the parts unless it is already there with the right hash."""
        if target.is_file() and sha256_file(target) == self.sha256:
            return target
        paths = [resolve_weights(p, entry.base_dir) for p in self.parts]
        assemble_parts(paths, list(self.parts_sha256), self.sha256, target)
        return target


def assemble_dir(entry: CatalogEntry, derived_dir: Path | None) -> Path:
    """Where `entry`'s parts are assembled: `engine_options.assemble_dir`/<id>, else the registry's
    folder for the model."""
    configured = entry.engine_options.get("assemble_dir")
    if configured:
        return Path(str(configured)).expanduser() / entry.id
    if derived_dir is None:
        raise WeightsError(
            f"model {entry.id}: split weights need engine_options.assemble_dir"
            " or a registry that gives the runner a folder"
        )
    return derived_dir


def assemble_parts(parts: list[Path], parts_sha256: list[str], expected_sha256: str, target: Path) -> None:
    """Concatenate verified `parts` into `target` atomically; the result must hash to `expected_sha256`.
    Blocking (hashes and copies hundreds of MB): call it in a thread."""
    for part, digest in zip(parts, parts_sha256, strict=True):
        actual = sha256_file(part)
        if actual != digest:
            raise WeightsError(
                f"weights part {part}: sha256 mismatch (file {actual[:16]}…, catalog {digest[:16]}…)"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    digest_all = hashlib.sha256()
    # A temporary name in the same folder: concurrent loaders (several API processes) each write
    # their own file and the rename is atomic, so no reader ever sees a half-written model.
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest_all.update(chunk)
                        out.write(chunk)
        actual = digest_all.hexdigest()
        if actual != expected_sha256:
            raise WeightsError(
                f"assembled {target.name}: sha256 mismatch"
                f" (file {actual[:16]}…, catalog {expected_sha256[:16]}…)"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
