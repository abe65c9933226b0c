"""scripts/build_llama_cpp.py: llama.cpp's CMake flags follow the CPU's own features, never
-march=native, and AMX stays off unless the operator turns it on."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_llama_cpp.py"

SAPPHIRE_RAPIDS = (
    "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2 avx_vnni avx512f avx512cd avx512dq avx512bw "
    "avx512vl avx512vbmi avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"
)
ZEN3 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2"
ZEN4 = ZEN3 + " avx512f avx512cd avx512dq avx512bw avx512vl avx512vbmi avx512_vnni avx512_bf16"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_llama_cpp", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flags(build: ModuleType, cpu: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    cpuinfo = f"processor\t: 0\nflags\t\t: {cpu}\n\nprocessor\t: 1\nflags\t\t: {cpu}\n"
    args = build.cmake_args("x86_64", build.cpu_flags(cpuinfo), environ or {})
    return dict(arg.removeprefix("-D").split("=", 1) for arg in args)


def test_sapphire_rapids_gets_avx512_but_not_amx(build: ModuleType) -> None:
    flags = _flags(build, SAPPHIRE_RAPIDS)
    assert flags["GGML_NATIVE"] == "OFF"
    assert {k: flags[k] for k in ("GGML_AVX2", "GGML_AVX512", "GGML_AVX512_VNNI", "GGML_AVX_VNNI")} == {
        "GGML_AVX2": "ON",
        "GGML_AVX512": "ON",
        "GGML_AVX512_VNNI": "ON",
        "GGML_AVX_VNNI": "ON",
    }
    assert [flags[k] for k in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")] == ["OFF"] * 3


def test_an_avx2_only_cpu_gets_no_avx512(build: ModuleType) -> None:
    flags = _flags(build, ZEN3)
    assert (flags["GGML_AVX2"], flags["GGML_FMA"], flags["GGML_F16C"]) == ("ON", "ON", "ON")
    assert [flags[k] for k in ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_BF16")] == ["OFF"] * 3
    assert flags["GGML_AVX_VNNI"] == "OFF"


def test_zen4_gets_avx512_and_its_extensions(build: ModuleType) -> None:
    flags = _flags(build, ZEN4)
    assert [flags[k] for k in ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_BF16")] == ["ON"] * 3
    assert flags["GGML_AMX_INT8"] == "OFF"


def test_avx512_needs_every_subset_ggml_compiles_for(build: ModuleType) -> None:
    flags = _flags(build, ZEN3 + " avx512f avx512cd")  # no VL/DQ/BW: -mavx512bw code would not run
    assert flags["GGML_AVX512"] == "OFF"


def test_the_operator_can_turn_amx_back_on(build: ModuleType) -> None:
    flags = _flags(build, SAPPHIRE_RAPIDS, {"BATCHIN_LLAMA_AMX": "1"})
    assert [flags[k] for k in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")] == ["ON"] * 3
    assert _flags(build, ZEN4, {"BATCHIN_LLAMA_AMX": "1"})["GGML_AMX_TILE"] == "OFF"  # not on this CPU


def test_extra_cmake_args_come_last_and_win(build: ModuleType) -> None:
    args = build.cmake_args(
        "x86_64", build.cpu_flags(f"flags : {ZEN4}"), {"BATCHIN_LLAMA_CMAKE_ARGS": "-DGGML_AVX512=OFF -DX=1"}
    )
    assert args[-2:] == ["-DGGML_AVX512=OFF", "-DX=1"]


def test_other_architectures_build_without_native(build: ModuleType) -> None:
    assert build.cmake_args("aarch64", {"asimd"}, {}) == ["-DGGML_NATIVE=OFF"]


def test_the_version_comes_from_pyproject(build: ModuleType) -> None:
    assert "llama-cpp-python==" + build.pinned_version() in (SCRIPT.parents[1] / "pyproject.toml").read_text()
