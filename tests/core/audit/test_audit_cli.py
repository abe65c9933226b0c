"""`batchin vaas verify EVIDENCE.json` (offline, exit 0/1 and a JSON verdict) and `rotate-key`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchin.core.context import CallContext, Principal
from batchin.services import Services
from tests.conftest import MakeUser

pytestmark = pytest.mark.slow

_SCRIPT = Path(sys.executable).with_name("batchin")
COMMAND = (
    [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from batchin.cli import main; main()"]
)


def run(*args: str, data_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHIN_")}
    if data_dir is not None:
        env["BATCHIN_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [*COMMAND, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
async def pack_file(services: Services, make_user: MakeUser, tmp_path: Path) -> Path:
    user = await make_user()
    ctx = CallContext(principal=Principal(user.id, "k", "p", 60, None), request_id="r")
    receipt = await services.audit.record_call(ctx, model_id="m", input_text="question", output_text="answer")
    path = tmp_path / "evidence.json"
    path.write_text((await services.audit.evidence(receipt.record_id)).model_dump_json())
    (tmp_path / "in.txt").write_text("question")
    (tmp_path / "out.txt").write_text("answer")
    return path


async def test_valid_pack_exits_zero(pack_file: Path) -> None:
    done = run(
        "vaas",
        "verify",
        str(pack_file),
        "--input-file",
        str(pack_file.with_name("in.txt")),
        "--output-file",
        str(pack_file.with_name("out.txt")),
    )
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["valid"] is True
    assert verdict["errors"] == []
    assert (verdict["attestation"], verdict["asserted_by"]) == ("served", None)
    assert set(verdict["checks"]) == {
        "signature",
        "key_id",
        "attestation",
        "envelope",
        "hashes",
        "leaf_hash",
        "inclusion",
        "checkpoint_signature",
    }


async def test_tampered_pack_or_wrong_text_exits_one(pack_file: Path, tmp_path: Path) -> None:
    pack = json.loads(pack_file.read_text())
    pack["payload"]["model_id"] = "another-model"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(pack))
    done = run("vaas", "verify", str(forged))
    assert done.returncode == 1
    verdict = json.loads(done.stdout)
    assert verdict["valid"] is False
    assert verdict["checks"]["signature"] is False
    assert verdict["checks"]["inclusion"] is False

    wrong = run("vaas", "verify", str(pack_file), "--output-file", str(pack_file.with_name("in.txt")))
    assert wrong.returncode == 1
    assert json.loads(wrong.stdout)["checks"]["hashes"] is False

    untrusted = run("vaas", "verify", str(pack_file), "--trusted-key", "00" * 32)
    assert untrusted.returncode == 1
    assert json.loads(untrusted.stdout)["checks"]["trusted_key"] is False


def test_unreadable_pack_exits_one(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("[1, 2")
    done = run("vaas", "verify", str(tmp_path / "bad.json"))
    assert done.returncode == 1
    assert json.loads(done.stdout)["valid"] is False


def test_rotate_key_replaces_the_key_and_keeps_the_old_one_registered(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = run("vaas", "rotate-key", data_dir=data_dir)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert created["previous_key_id"] is None
    second = json.loads(run("vaas", "rotate-key", data_dir=data_dir).stdout)
    assert second["previous_key_id"] == created["key_id"]
    assert second["key_id"] != created["key_id"]
    assert (data_dir / "vaas" / "signing_key").stat().st_mode & 0o777 == 0o600
