"""examples/seed-catalog.toml: the seed's model names mapped onto the engines an operator would use
for them. It must load with the catalog loader, and no seed name may reach an embedded CPU default
(a tiny model must never answer under a big model's name). tests/test_openai_sdk_remote.py serves
it against a fake upstream and calls each model."""

from __future__ import annotations

from pathlib import Path

from batchin.models.catalog import load_catalog

SEED_CATALOG = Path(__file__).resolve().parents[2] / "examples" / "seed-catalog.toml"
# Each seed LLM and the upstream model that really serves it.
LLMS = {"qwen3-32b": "Qwen/Qwen3-32B", "qwen3.5-27b": "Qwen/Qwen3.5-27B", "glm-5.1": "zai-org/GLM-5.1"}
SEED_MODELS = set(LLMS) | {"bge-m3", "cosyvoice", "whisper-large-v3-turbo", "flux-schnell", "wan-2.2"}


def test_the_seed_catalog_loads_and_names_every_seed_model() -> None:
    catalog = load_catalog(SEED_CATALOG)
    assert set(catalog.ids) == SEED_MODELS


def test_cosyvoice_is_a_remote_tts_upstream() -> None:
    entry = load_catalog(SEED_CATALOG).get("cosyvoice")
    assert entry is not None
    assert (entry.kind, entry.engine) == (("speech",), "remote")
    assert entry.upstream is not None
    assert entry.upstream.api_key_env == "COSYVOICE_API_KEY"
    voices = entry.engine_options["voices"]
    assert isinstance(voices, dict)
    assert entry.engine_options["default_voice"] in voices


def test_only_the_multimodal_llm_takes_images() -> None:
    catalog = load_catalog(SEED_CATALOG)
    assert [e.id for e in catalog.entries if "vision" in e.capabilities] == ["qwen3.5-27b"]


def test_seed_llms_are_remote_upstreams_under_their_own_names() -> None:
    catalog = load_catalog(SEED_CATALOG)
    for model_id, upstream_model in LLMS.items():
        entry = catalog.get(model_id)
        assert entry is not None
        assert entry.engine == "remote"
        assert entry.upstream is not None
        assert entry.upstream.model == upstream_model
        assert entry.aliases == (upstream_model,)


def test_seed_models_without_an_upstream_are_optional_weights_from_a_folder() -> None:
    catalog = load_catalog(SEED_CATALOG)
    for entry in catalog.entries:
        if entry.engine == "remote":
            continue
        assert entry.optional, entry.id
        assert entry.weights is not None
        assert Path(entry.weights.path).is_absolute(), entry.id


def test_no_seed_name_reaches_an_embedded_default() -> None:
    defaults = load_catalog(None)
    seed = load_catalog(SEED_CATALOG)
    for entry in seed.entries:
        assert "builtin" not in entry.engine_options, entry.id  # no random-weights pipeline
        assert entry.weights is None or not entry.weights.path.startswith("package:"), entry.id
        for name in entry.names:
            default = defaults.get(name)
            # Only the GPU entries the default catalog also lists optionally share a name, and
            # they are the same model from the same folder.
            assert default is None or default.weights == entry.weights, name
