"""Can the natively built engines run on this CPU? Each check decodes one token in a child
process, so a native crash (SIGSEGV from an unsafe kernel, SIGILL from an instruction the CPU
lacks) is reported with its signal instead of killing the caller. `make install` runs it
(`batchin models check`) and fails loudly when an engine cannot decode.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchin.models.catalog import Catalog
from batchin.models.split_weights import SplitWeights
from batchin.models.weights import resolve_weights

__all__ = ["EngineCheck", "check_catalog", "check_llama_cpp", "run_check"]

_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True, slots=True)
class EngineCheck:
    model_id: str
    ok: bool
    detail: str  # the decoded token and the engine's CPU features, or what went wrong


def check_llama_cpp(model_id: str, weights: Path, *, timeout: float = _TIMEOUT_SECONDS) -> EngineCheck:
    command = [sys.executable, "-m", "batchin.models.engine_check", "llama_cpp", str(weights)]
    return run_check(model_id, command, timeout=timeout)


def run_check(model_id: str, command: list[str], *, timeout: float) -> EngineCheck:
    """Run one engine's check in a child process and say how it ended."""
    try:
        # The command is ours (this interpreter and module, or a test's), never user input.
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except subprocess.TimeoutExpired:
        return EngineCheck(model_id, False, f"decoding one token took over {timeout:.0f} s")
    if done.returncode == 0:
        return EngineCheck(model_id, True, done.stdout.strip())
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        return EngineCheck(
            model_id,
            False,
            f"the engine crashed with {name} while decoding one token: its build is not safe on this "
            "CPU; rebuild it (scripts/build_llama_cpp.py says which flags and how to change them)",
        )
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return EngineCheck(model_id, False, f"exited with code {done.returncode}: {tail}")


def check_catalog(catalog: Catalog) -> list[EngineCheck]:
    """Every llama.cpp model of the catalog whose weights are here (optional ones may be absent)."""
    results = []
    for entry in catalog.entries:
        if entry.engine != "llama_cpp" or entry.weights is None:
            continue
        if SplitWeights.from_options(entry, "gguf") is not None:
            # Its weights name only the first slice, not a loadable GGUF; the build is what this
            # checks, and the catalog's single-file models check it without assembling 0.5 GB.
            continue
        try:
            weights = resolve_weights(entry.weights.path, entry.base_dir)
        except Exception as exc:
            if not entry.optional:
                results.append(EngineCheck(entry.id, False, f"weights not found: {exc}"))
            continue
        results.append(check_llama_cpp(entry.id, weights))
    return results


def _decode_one_token(weights: str) -> None:
    """In the child: load the model and decode one token; print it and the CPU features in use."""
    import llama_cpp

    model = llama_cpp.Llama(model_path=weights, n_ctx=256, verbose=False)
    output: Any = model.create_completion("The capital of France is", max_tokens=1, temperature=0.0)
    token = output["choices"][0]["text"]
    features = llama_cpp.llama_print_system_info().decode()
    print(f"decoded {token!r}; {features.strip()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["llama_cpp"] and len(sys.argv) == 3:
        _decode_one_token(sys.argv[2])
    else:
        sys.exit("usage: python -m batchin.models.engine_check llama_cpp WEIGHTS.gguf")
