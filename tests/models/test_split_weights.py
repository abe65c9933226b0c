"""Split weights: parts verified and assembled in order, atomically; the catalog's options read;
an assembled file that no longer matches is rebuilt, not loaded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from batchin.models.catalog import CatalogEntry, load_catalog, parse_catalog
from batchin.models.split_weights import SplitWeights, assemble_dir, assemble_parts
from batchin.models.weights import WeightsError, sha256_file

QWEN = "qwen2.5-coder-0.5b-instruct"


def _parts(tmp_path: Path) -> tuple[list[Path], list[str], str]:
    blobs = [b"first part " * 1000, b"second part " * 1000]
    paths = []
    for index, blob in enumerate(blobs):
        path = tmp_path / f"model.bin.part{index + 1}"
        path.write_bytes(blob)
        paths.append(path)
    return paths, [hashlib.sha256(b).hexdigest() for b in blobs], hashlib.sha256(b"".join(blobs)).hexdigest()


def test_parts_are_assembled_in_order_and_verified(tmp_path: Path) -> None:
    paths, hashes, whole = _parts(tmp_path)
    target = tmp_path / "out" / "model.bin"
    assemble_parts(paths, hashes, whole, target)
    assert sha256_file(target) == whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.bin"]


def test_a_tampered_part_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    paths, hashes, whole = _parts(tmp_path)
    paths[1].write_bytes(b"tampered")
    target = tmp_path / "out" / "model.bin"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        assemble_parts(paths, hashes, whole, target)
    assert not target.exists()


def test_a_wrong_whole_leaves_no_file_behind(tmp_path: Path) -> None:
    paths, hashes, _ = _parts(tmp_path)
    target = tmp_path / "out" / "model.bin"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        assemble_parts(paths, hashes, "0" * 64, target)
    assert list(target.parent.iterdir()) == []


def _entry(tmp_path: Path, options: str) -> CatalogEntry:
    text = f"""
[models.m]
kind = "transcription"
engine = "faster_whisper"
licence = "MIT"
pricing = {{ per_audio_second = 0.1 }}
engine_options = {{ {options} }}
"""
    entry = parse_catalog(text, source="t.toml", base_dir=tmp_path).get("m")
    assert entry is not None
    return entry


def test_an_altered_assembled_file_is_rebuilt(tmp_path: Path) -> None:
    paths, hashes, whole = _parts(tmp_path)
    names = ", ".join(f'"{p.name}"' for p in paths)
    digests = ", ".join(f'"{h}"' for h in hashes)
    entry = _entry(tmp_path, f'm_parts = [{names}], m_parts_sha256 = [{digests}], m_sha256 = "{whole}"')
    split = SplitWeights.from_options(entry, "m")
    assert split is not None
    target = assemble_dir(entry, tmp_path / "derived") / "whole.bin"
    split.ensure(entry, target)
    target.write_bytes(b"truncated")
    split.ensure(entry, target)
    assert sha256_file(target) == whole


def test_parts_without_their_hashes_are_refused(tmp_path: Path) -> None:
    entry = _entry(tmp_path, 'm_parts = ["a", "b"], m_parts_sha256 = ["x"], m_sha256 = "y"')
    with pytest.raises(WeightsError, match="one per part"):
        SplitWeights.from_options(entry, "m")


def test_no_parts_listed_means_one_file(tmp_path: Path) -> None:
    assert SplitWeights.from_options(_entry(tmp_path, ""), "m") is None


def test_the_default_catalog_names_the_installed_qwen_parts() -> None:
    entry = load_catalog(None).get(QWEN)
    assert entry is not None
    split = SplitWeights.from_options(entry, "gguf")
    assert split is not None
    assert len(split.parts) == 6
    assert entry.weights is not None
    assert (entry.weights.path, entry.weights.sha256) == (split.parts[0], split.parts_sha256[0])
