"""Embedding runners on the packaged weights (slow), plus the pieces of the embeddings path that need
no engine: input validation, Matryoshka shortening, base64 encoding and the `dimensions` check."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from batchin.core.media.embeddings import _check_dimensions, shape_vectors
from batchin.errors import InvalidRequest
from batchin.models.catalog import CatalogEntry, load_catalog
from batchin.models.hosted_embeddings import HostedEmbeddingRunner
from batchin.models.registry import ModelRegistry
from batchin.protocol.embeddings import MAX_EMBEDDING_INPUTS, EmbeddingRequest
from tests.audio_fixtures import E5, MINILM

# -- request validation ------------------------------------------------------------------------


def request(value: object, **fields: object) -> EmbeddingRequest:
    return EmbeddingRequest.model_validate({"model": MINILM, "input": value, **fields})


def test_a_string_is_one_input() -> None:
    assert request("hello").texts() == ["hello"]


def test_an_array_keeps_its_order() -> None:
    assert request(["a", "b", "c"]).texts() == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "'input' must not be an empty string."),
        ([], "'input' must not be an empty array."),
        (["ok", ""], "'input[1]' must not be an empty string."),
        (["ok", None], "'input[1]' must be a string."),
        ([1, 2, 3], "Token-id arrays are not supported"),
        ([[1, 2], [3]], "Token-id arrays are not supported"),
        (["x"] * (MAX_EMBEDDING_INPUTS + 1), f"at most {MAX_EMBEDDING_INPUTS} are allowed"),
    ],
)
def test_bad_inputs_are_refused_naming_input(value: object, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request(value).texts()
    assert caught.value.param == "input"
    assert message in caught.value.message


def test_the_full_2048_inputs_are_accepted() -> None:
    assert len(request(["x"] * MAX_EMBEDDING_INPUTS).texts()) == MAX_EMBEDDING_INPUTS


# -- shaping -----------------------------------------------------------------------------------


def unit_rows(rows: int, dims: int) -> np.ndarray:
    vectors = np.random.default_rng(7).normal(size=(rows, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_float_output_is_the_vectors() -> None:
    vectors = unit_rows(2, 8)
    out = shape_vectors(vectors, None, "float")
    assert np.array_equal(np.array(out, dtype=np.float32), vectors)


def test_base64_is_little_endian_float32_of_the_same_vectors() -> None:
    vectors = unit_rows(3, 16)
    out = shape_vectors(vectors, None, "base64")
    decoded = np.stack([np.frombuffer(base64.b64decode(str(s)), dtype="<f4") for s in out])
    assert np.array_equal(decoded, vectors)


def test_matryoshka_keeps_the_prefix_renormalised() -> None:
    vectors = unit_rows(2, 16)
    out = np.array(shape_vectors(vectors, 4, "float"), dtype=np.float32)
    assert out.shape == (2, 4)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    expected = vectors[:, :4] / np.linalg.norm(vectors[:, :4], axis=1, keepdims=True)
    assert np.allclose(out, expected, atol=1e-7)


class _Runner:
    def __init__(self, matryoshka: bool) -> None:
        self.dimensions = 384
        self.max_input_tokens = 256
        self.matryoshka = matryoshka

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return [1] * len(texts)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 384), np.float32)


def _entry() -> CatalogEntry:
    entry = load_catalog(None).get(MINILM)
    assert entry is not None
    return entry


@pytest.mark.parametrize("dimensions", [None, 384])
def test_the_native_size_is_always_accepted(dimensions: int | None) -> None:
    _check_dimensions(_entry(), _Runner(matryoshka=False), dimensions)


def test_shortening_is_refused_for_models_not_trained_for_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        _check_dimensions(_entry(), _Runner(matryoshka=False), 128)
    assert caught.value.param == "dimensions"
    assert "only returns 384-dimensional embeddings" in caught.value.message


def test_matryoshka_models_accept_a_shorter_size_but_not_a_longer_one() -> None:
    _check_dimensions(_entry(), _Runner(matryoshka=True), 128)
    with pytest.raises(InvalidRequest) as caught:
        _check_dimensions(_entry(), _Runner(matryoshka=True), 512)
    assert caught.value.param == "dimensions"


# -- engines (slow) ----------------------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.slow
async def test_minilm_gives_unit_384_vectors_and_a_256_token_window(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(MINILM)
    assert isinstance(runner, HostedEmbeddingRunner)
    assert (runner.dimensions, runner.max_input_tokens, runner.matryoshka) == (384, 256, False)
    vectors = await runner.embed(["a cat sits on the mat", "stock markets fell today"])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
async def test_minilm_batches_give_the_same_vectors_as_single_calls(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(MINILM)
    assert isinstance(runner, HostedEmbeddingRunner)
    texts = ["short", "a somewhat longer sentence about embeddings and batching"]
    batch = await runner.embed(texts)
    singles = np.concatenate([await runner.embed([t]) for t in texts])
    assert np.allclose(batch, singles, atol=1e-5)


@pytest.mark.slow
async def test_minilm_counts_tokens_with_its_tokenizer(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(MINILM)
    assert isinstance(runner, HostedEmbeddingRunner)
    # [CLS] hello world [SEP]; [CLS] [SEP] around 300 "word" tokens
    assert await runner.count_tokens(["hello world", "word " * 300]) == [4, 302]


@pytest.mark.slow
async def test_minilm_puts_similar_sentences_closer(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(MINILM)
    assert isinstance(runner, HostedEmbeddingRunner)
    cat, kitten, market = await runner.embed(
        ["A cat is sleeping on the sofa.", "A kitten naps on the couch.", "The stock market crashed."]
    )
    assert cosine(cat, kitten) > cosine(cat, market) + 0.3


@pytest.mark.slow
async def test_e5_is_multilingual(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(E5)
    assert isinstance(runner, HostedEmbeddingRunner)
    assert (runner.dimensions, runner.max_input_tokens) == (384, 512)
    english, german, other = await runner.embed(
        ["Where is the train station?", "Wo ist der Bahnhof?", "I like chocolate cake."]
    )
    assert cosine(english, german) > cosine(english, other)
    assert np.isclose(np.linalg.norm(english), 1.0, atol=1e-4)


@pytest.mark.slow
async def test_e5_counts_tokens_including_its_query_prefix(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(E5)
    assert isinstance(runner, HostedEmbeddingRunner)
    # "query: " is part of what the model reads, so it is counted (and billed), as are <s> and </s>.
    assert await runner.count_tokens(["hello world", "hello world hello world"]) == [8, 11]
