from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchin.errors import InvalidRequest, NotFound, ServiceUnavailable
from batchin.models.base import RunnerHealth
from batchin.models.catalog import parse_catalog
from batchin.models.registry import ENGINES, ModelRegistry
from tests.models import fakes

FAKE_ENGINES = {
    "fake": "tests.models.fakes:FakeRunner",
    "noload": "tests.models.fakes:NoLoadRunner",
    "factory": "tests.models.fakes:FactoryRunner",
    "broken": "tests.models.no_such_module:Runner",
}

PRICING = "[models.{id}.pricing]\ninput_per_1m = 0.1\noutput_per_1m = 0.2\n"


def _entry(model_id: str, *, engine: str = "fake", status: str = "on_demand", extra: str = "") -> str:
    return (
        f'[models.{model_id}]\nkind = ["chat"]\nengine = "{engine}"\nlicence = "MIT"\n'
        f'context_length = 256\nstatus = "{status}"\n{extra}\n' + PRICING.format(id=model_id)
    )


def _registry(*entries: str, base_dir: Path | None = None) -> ModelRegistry:
    return ModelRegistry(
        parse_catalog("\n".join(entries), source="t", base_dir=base_dir), engines=FAKE_ENGINES
    )


@pytest.fixture(autouse=True)
def _reset_fakes() -> Iterator[None]:
    fakes.LOAD_GATES.clear()
    fakes.LOADS.clear()
    yield
    fakes.LOAD_GATES.clear()


def test_engine_map_names_the_remote_runner() -> None:
    assert ENGINES["remote"] == "batchin.models.remote_kinds:build_remote_runner"
    assert ENGINES["llama_cpp"] == "batchin.models.llama_cpp:LlamaCppRunner"
    assert ENGINES["exllamav2"] == "batchin.models.exllamav2:ExLlamaV2Runner"


async def test_start_loads_always_on_models_only() -> None:
    registry = _registry(_entry("a", status="always_on"), _entry("b"))
    await registry.start()
    assert fakes.LOADS == ["a"]
    assert registry.status("a").status == "always_on"
    assert registry.status("a").extra["loaded"] is True
    assert registry.status("b").status == "on_demand"
    assert registry.status("b").extra == {"loaded": False}
    await registry.close()


async def test_on_demand_model_loads_at_first_use() -> None:
    registry = _registry(_entry("b"))
    await registry.start()
    runner = await registry.text_runner("b")
    assert isinstance(runner, fakes.FakeRunner)
    assert fakes.LOADS == ["b"]
    assert registry.status("b").extra["loaded"] is True
    assert await registry.text_runner("b") is runner
    assert fakes.LOADS == ["b"]
    await registry.close()


async def test_status_is_loading_while_the_engine_loads() -> None:
    gate = fakes.LOAD_GATES["b"] = asyncio.Event()
    registry = _registry(_entry("b"))
    first = asyncio.create_task(registry.text_runner("b"))
    second = asyncio.create_task(registry.text_runner("b"))
    await asyncio.sleep(0.05)
    assert registry.status("b").status == "loading"
    gate.set()
    assert await first is await second
    assert fakes.LOADS == ["b"]
    assert registry.status("b").status == "on_demand"
    await registry.close()


async def test_a_waiter_that_gives_up_does_not_cancel_the_shared_load() -> None:
    gate = fakes.LOAD_GATES["b"] = asyncio.Event()
    registry = _registry(_entry("b"))
    waiter = asyncio.create_task(registry.text_runner("b"))
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    assert isinstance(await registry.text_runner("b"), fakes.FakeRunner)
    await registry.close()


async def test_unknown_model_is_not_found() -> None:
    registry = _registry(_entry("a"))
    with pytest.raises(NotFound) as caught:
        await registry.text_runner("nope")
    assert caught.value.param == "model"
    with pytest.raises(NotFound):
        registry.status("nope")


async def test_sha_mismatch_makes_the_model_unavailable(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"tampered")
    extra = f'[models.a.weights]\npath = "w.bin"\nsha256 = "{hashlib.sha256(b"original").hexdigest()}"\n'
    registry = _registry(_entry("a", status="always_on", extra=extra), base_dir=tmp_path)
    await registry.start()
    health = registry.status("a")
    assert health.status == "unavailable"
    assert health.reason is not None
    assert "sha256 mismatch" in health.reason
    assert fakes.LOADS == []
    with pytest.raises(ServiceUnavailable, match=r"model a is unavailable: .*sha256 mismatch"):
        await registry.text_runner("a")


async def test_verified_weights_path_reaches_the_runner(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"original")
    extra = f'[models.a.weights]\npath = "w.bin"\nsha256 = "{hashlib.sha256(b"original").hexdigest()}"\n'
    registry = _registry(_entry("a", extra=extra), base_dir=tmp_path)
    runner = await registry.text_runner("a")
    assert isinstance(runner, fakes.FakeRunner)
    assert runner.weights == tmp_path / "w.bin"
    await registry.close()


async def test_missing_weights_make_the_model_unavailable(tmp_path: Path) -> None:
    extra = '[models.a.weights]\npath = "absent.bin"\n'
    registry = _registry(_entry("a", extra=extra), base_dir=tmp_path)
    with pytest.raises(ServiceUnavailable, match=r"absent\.bin"):
        await registry.text_runner("a")
    assert registry.status("a").status == "unavailable"


async def test_unavailable_agrees_with_status_without_building_it(tmp_path: Path) -> None:
    """The per-call check says what `status` says about being unavailable, for every slot state."""
    extra = '[models.bad.weights]\npath = "absent.bin"\n'
    registry = _registry(
        _entry("up", status="always_on"), _entry("idle"), _entry("bad", extra=extra), base_dir=tmp_path
    )
    await registry.start()
    with pytest.raises(ServiceUnavailable):
        await registry.text_runner("bad")
    assert registry.unavailable("up") is None  # ready
    assert registry.unavailable("idle") is None  # not loaded: loads at first use
    blocked = registry.unavailable("bad")
    assert blocked is not None
    assert (blocked.status, blocked.reason) == ("unavailable", registry.status("bad").reason)
    runner = await registry.text_runner("up")
    assert isinstance(runner, fakes.FakeRunner)
    # A ready runner whose own health says unavailable (a remote route with no healthy upstream).
    runner.health = lambda: RunnerHealth(status="unavailable", reason="no healthy upstream")  # type: ignore[method-assign]
    assert registry.unavailable("up") == registry.status("up") == runner.health()
    with pytest.raises(NotFound):
        registry.unavailable("nope")
    await registry.close()


async def test_optional_model_without_weights_is_left_out(tmp_path: Path) -> None:
    extra = 'optional = true\n[models.a.weights]\npath = "absent.bin"\n'
    registry = _registry(_entry("a", extra=extra), _entry("b"), base_dir=tmp_path)
    await registry.start()
    assert [entry.id for entry in registry.entries()] == ["b"]
    with pytest.raises(NotFound):
        await registry.text_runner("a")
    await registry.close()


async def test_engine_import_failure_makes_the_model_unavailable() -> None:
    registry = _registry(_entry("a", engine="broken", status="always_on"))
    await registry.start()
    health = registry.status("a")
    assert health.status == "unavailable"
    assert health.reason is not None
    assert health.reason.startswith("engine 'broken' cannot be imported: ModuleNotFoundError")


async def test_unknown_engine_makes_the_model_unavailable() -> None:
    registry = _registry(_entry("a", engine="warp", status="always_on"))
    await registry.start()
    assert registry.status("a").reason == "unknown engine 'warp' (known: broken, factory, fake, noload)"


async def test_engine_unavailable_reason_is_shown_as_is() -> None:
    registry = _registry(_entry("a", status="always_on", extra='engine_options = { fail = "engine" }'))
    await registry.start()
    assert registry.status("a").reason == "no CUDA GPU here"


async def test_crashing_load_is_reported_with_its_error() -> None:
    registry = _registry(_entry("a", extra='engine_options = { fail = "crash" }'))
    with pytest.raises(ServiceUnavailable, match="load failed: RuntimeError: boom"):
        await registry.text_runner("a")


async def test_runner_without_load_is_used_as_built() -> None:
    registry = _registry(_entry("a", engine="noload", status="always_on"))
    await registry.start()
    assert isinstance(await registry.text_runner("a"), fakes.NoLoadRunner)
    assert registry.status("a").status == "always_on"
    await registry.close()


async def test_runner_class_with_from_entry_is_built_through_it() -> None:
    registry = _registry(_entry("a", engine="factory"))
    assert isinstance(await registry.text_runner("a"), fakes.FactoryRunner)
    await registry.close()


async def test_non_text_model_is_refused_as_text_runner() -> None:
    text = (
        '[models.e]\nkind = "embedding"\nengine = "fake"\nlicence = "MIT"\n'
        "[models.e.pricing]\ninput_per_1m = 0.01\n"
    )
    registry = _registry(text)
    with pytest.raises(InvalidRequest, match="model e is not a text model"):
        await registry.text_runner("e")


async def test_close_closes_runners_and_marks_models_unavailable() -> None:
    registry = _registry(_entry("a", status="always_on"))
    await registry.start()
    runner = await registry.text_runner("a")
    assert isinstance(runner, fakes.FakeRunner)
    await registry.close()
    assert runner.closed
    assert registry.status("a").status == "unavailable"
    with pytest.raises(ServiceUnavailable):
        await registry.text_runner("a")
