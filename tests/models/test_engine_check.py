"""The install-time engine check: a child that decodes, crashes or fails is reported as such, and
the packaged llama.cpp model decodes one token with the build on this machine."""

from __future__ import annotations

import sys

import pytest

from batchin.models.catalog import load_catalog
from batchin.models.engine_check import check_catalog, run_check


def test_a_child_that_succeeds_is_ok_with_its_output() -> None:
    result = run_check("m", [sys.executable, "-c", "print('decoded 42')"], timeout=60)
    assert (result.ok, result.detail) == (True, "decoded 42")


def test_a_native_crash_is_reported_with_its_signal_not_raised() -> None:
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    result = run_check("m", [sys.executable, "-c", crash], timeout=60)
    assert result.ok is False
    assert result.detail.startswith("the engine crashed with SIGSEGV while decoding one token")


def test_an_error_exit_is_reported_with_its_last_line() -> None:
    result = run_check("m", [sys.executable, "-c", "raise SystemExit('no such file')"], timeout=60)
    assert (result.ok, result.detail) == (False, "exited with code 1: no such file")


def test_a_hung_child_is_stopped_at_the_timeout() -> None:
    result = run_check("m", [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
    assert (result.ok, result.detail) == (False, "decoding one token took over 0 s")


@pytest.mark.slow
def test_the_packaged_llama_cpp_model_decodes_one_token_on_this_cpu() -> None:
    results = check_catalog(load_catalog(None))
    assert [r.model_id for r in results] == ["smollm2-135m-instruct"]
    assert results[0].ok, results[0].detail
    assert results[0].detail.startswith("decoded ")
    assert "AMX_INT8 = 1" not in results[0].detail  # the unsafe kernels are not built in
