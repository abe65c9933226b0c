"""Build llama-cpp-python for this machine's CPU, portably and safely, into a wheel cache keyed by
the flags (so a wheel built for one CPU is never installed on another).

Why: the registry ships llama-cpp-python as source only, and its default build is
`GGML_NATIVE=ON` (`-march=native`), which turns on every instruction set the builder has,
including the AMX kernels that segfault on the first decode on virtualised Sapphire Rapids
Xeons (llama.cpp's `ggml_backend_amx_mul_mat`). pip's wheel cache ignores CMAKE_ARGS, so a
native wheel once built keeps being reinstalled. Here instead:

- `GGML_NATIVE=OFF`, and each x86 fast path turned on only when /proc/cpuinfo shows the CPU has
  it: AVX, AVX2, FMA, F16C, BMI2, AVX-VNNI, AVX-512 (F, CD, VL, DQ, BW together) and its VBMI,
  VNNI and BF16 extensions.
- AMX stays off whatever the CPU says, until llama.cpp fixes it. An operator turns it back on
  with `BATCHIN_LLAMA_AMX=1`, or passes any CMake flag with `BATCHIN_LLAMA_CMAKE_ARGS`
  (appended last, so it wins), e.g. `BATCHIN_LLAMA_CMAKE_ARGS="-DGGML_AVX512=OFF"`.
- On other architectures (aarch64) `GGML_NATIVE=OFF` with ggml's defaults.

Usage: `python scripts/build_llama_cpp.py PIP` builds the version pyproject.toml pins (once per
flag set) and prints the wheel's path; `--print-flags` prints the CMake arguments it would use.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

# (ggml option, the /proc/cpuinfo flags the CPU must all have)
X86_FAST_PATHS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GGML_AVX", ("avx",)),
    ("GGML_AVX2", ("avx2",)),
    ("GGML_FMA", ("fma",)),
    ("GGML_F16C", ("f16c",)),
    ("GGML_BMI2", ("bmi2",)),
    ("GGML_AVX_VNNI", ("avx_vnni",)),
    ("GGML_AVX512", ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw")),
    ("GGML_AVX512_VBMI", ("avx512f", "avx512vbmi")),
    ("GGML_AVX512_VNNI", ("avx512f", "avx512_vnni")),
    ("GGML_AVX512_BF16", ("avx512f", "avx512_bf16")),
)
AMX_OPTIONS = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
CACHE = Path(os.environ.get("BATCHIN_WHEEL_CACHE", Path.home() / ".cache" / "batchin" / "wheels"))


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first processor listed in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cmake_args(machine: str, flags: set[str], environ: dict[str, str]) -> list[str]:
    args = ["-DGGML_NATIVE=OFF"]
    if machine in ("x86_64", "amd64", "AMD64"):
        for option, needed in X86_FAST_PATHS:
            args.append(f"-D{option}={'ON' if all(f in flags for f in needed) else 'OFF'}")
        amx = environ.get("BATCHIN_LLAMA_AMX") == "1" and "amx_tile" in flags
        args.append(f"-DGGML_AMX_TILE={'ON' if amx else 'OFF'}")
        args.append(f"-DGGML_AMX_INT8={'ON' if amx and 'amx_int8' in flags else 'OFF'}")
        args.append(f"-DGGML_AMX_BF16={'ON' if amx and 'amx_bf16' in flags else 'OFF'}")
    args.extend(shlex.split(environ.get("BATCHIN_LLAMA_CMAKE_ARGS", "")))
    return args


def this_machine_args() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpu_flags(cpuinfo.read_text()) if cpuinfo.exists() else set()
    return cmake_args(platform.machine(), flags, dict(os.environ))


def pinned_version() -> str:
    """The llama-cpp-python version pyproject.toml pins (one place for it)."""
    for requirement in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        name, _, version = requirement.partition("==")
        if name.strip() == "llama-cpp-python":
            return version.strip()
    raise SystemExit("pyproject.toml pins no llama-cpp-python version")


def build(pip: str, version: str, args: list[str]) -> Path:
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    key = hashlib.sha256(" ".join([version, platform.machine(), python, *args]).encode()).hexdigest()[:16]
    folder = CACHE / f"llama-cpp-python-{version}-{key}"
    wheels = sorted(folder.glob("llama_cpp_python-*.whl"))
    if wheels:
        return wheels[-1]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cmake-args.txt").write_text(" ".join(args) + "\n")
    env = {**os.environ, "CMAKE_ARGS": " ".join(args), "FORCE_CMAKE": "1"}
    print(
        f"building llama-cpp-python {version} with {' '.join(args)} (once per CPU flag set)", file=sys.stderr
    )
    subprocess.run(  # noqa: S603 (pip and a pinned requirement: no outside input)
        [pip, "wheel", "--quiet", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python",
         f"llama-cpp-python=={version}", "--wheel-dir", str(folder)],
        env=env,
        check=True,
    )  # fmt: skip
    return sorted(folder.glob("llama_cpp_python-*.whl"))[-1]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--print-flags"]:
        print(" ".join(this_machine_args()))
        return 0
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(build(argv[0], pinned_version(), this_machine_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
