"""Token sampling on a llama.cpp context, for the llama.cpp runner: the sampler chain a request's
settings call for, a JSON grammar checked lazily, and the model's log probabilities.

Why not `Llama.generate`: it builds its own chain, which cannot take a native logit bias, and it
applies a grammar to the whole vocabulary at every step (tens of thousands of candidates: the
largest cost of constrained decoding on a small model). Here, as llama.cpp's own `common` sampler
does, the chain draws a token first and the grammar only checks that one; only when it refuses
does the grammar mask the whole vocabulary and the chain draw again. Greedy picks the same token
as masking first would, and so does a plain temperature draw in distribution (a token is kept with
p/V overall, V the allowed mass: what the mask gives it; with top_p < 1 the nucleus is taken before
the mask, as in llama.cpp), at a fraction of the cost, since a model asked for JSON mostly writes
JSON anyway. Without penalties the first draw runs wholly in C (`llama_sampler_sample`).

Grammar samplers are parsed once per schema and kept (`GrammarCache`), reset before each use; the
runner decodes one request at a time, so one sampler per schema is enough.
"""

from __future__ import annotations

import ctypes
import math
from collections import OrderedDict
from typing import Any

import numpy as np

from batchin.errors import InvalidRequest
from batchin.models.base import SamplingParams

__all__ = ["GrammarCache", "TokenSampler"]

_GRAMMARS_KEPT = 16


class GrammarCache:
    """Parsed grammar samplers, one per schema text, least recently used dropped (and freed)."""

    def __init__(self, lib: Any, vocab: Any) -> None:
        self._lib = lib
        self._vocab = vocab
        self._samplers: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str, gbnf: str, *, param: str = "response_format") -> Any:
        """The sampler for `gbnf`, reset; `param`: the request parameter a parse failure names."""
        sampler = self._samplers.pop(key, None)
        if sampler is None:
            sampler = self._lib.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
            if not sampler:
                raise InvalidRequest(f"The grammar built from {param} could not be parsed.", param=param)
        else:
            self._lib.llama_sampler_reset(sampler)
        self._samplers[key] = sampler
        while len(self._samplers) > _GRAMMARS_KEPT:
            _, old = self._samplers.popitem(last=False)
            self._lib.llama_sampler_free(old)
        return sampler

    def close(self) -> None:
        for sampler in self._samplers.values():
            self._lib.llama_sampler_free(sampler)
        self._samplers.clear()


class TokenSampler:
    """One request's sampling: `sample()` draws the next token from the context's current logits
    and commits it to the chain (and grammar); `logprob(token)` reads the model's distribution for
    that same step. Call `close()` when the request ends (it frees the chain)."""

    def __init__(
        self, lib: Any, ctx: Any, vocab: Any, n_vocab: int, sampling: SamplingParams, grammar: Any = None
    ) -> None:
        self._lib = lib
        self._ctx = ctx
        self._vocab = vocab
        self._n_vocab = n_vocab
        self._grammar = grammar
        self._chain = _chain(lib, n_vocab, sampling)
        self._penalised = bool(sampling.presence_penalty or sampling.frequency_penalty)
        self._buffer = (lib.llama_token_data * n_vocab)()
        self._view = np.frombuffer(self._buffer, dtype=_TOKEN_DATA)
        self._candidates = lib.llama_token_data_array(
            data=ctypes.cast(self._buffer, lib.llama_token_data_p), size=n_vocab, selected=-1, sorted=False
        )
        self._one = (lib.llama_token_data * 1)()
        self._one_array = lib.llama_token_data_array(
            data=ctypes.cast(self._one, lib.llama_token_data_p), size=1, selected=-1, sorted=False
        )

    def logits(self) -> np.ndarray[Any, np.dtype[np.float32]]:
        """The model's logits for the next token (a view: valid until the next decode)."""
        pointer = self._lib.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def sample(self) -> int:
        lib, chain, grammar = self._lib, self._chain, self._grammar
        if grammar is None or not self._penalised:
            # Candidates built, drawn and committed in C. Committing a draw the grammar then refuses
            # is harmless here: without penalties the chain keeps no history.
            token = int(lib.llama_sampler_sample(chain, self._ctx, -1))
            if grammar is None:
                return token
        else:
            token = self._draw(self.logits(), masked=False)
        if not self._allowed(token):
            token = self._draw(self.logits(), masked=True)
        if not lib.llama_vocab_is_eog(self._vocab, token):
            lib.llama_sampler_accept(grammar, token)
        if self._penalised:
            lib.llama_sampler_accept(chain, token)
        return token

    def _draw(self, logits: np.ndarray[Any, np.dtype[np.float32]], *, masked: bool) -> int:
        view, candidates = self._view, self._candidates
        view["id"] = _ids(self._n_vocab)
        view["logit"] = logits
        view["p"] = 0.0
        candidates.data = ctypes.cast(self._buffer, self._lib.llama_token_data_p)
        candidates.size, candidates.selected, candidates.sorted = self._n_vocab, -1, False
        if masked:
            self._lib.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        self._lib.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)

    def _allowed(self, token: int) -> bool:
        one, array = self._one, self._one_array
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        array.data = ctypes.cast(one, self._lib.llama_token_data_p)
        array.size, array.selected, array.sorted = 1, -1, False
        self._lib.llama_sampler_apply(self._grammar, ctypes.byref(array))
        return math.isfinite(one[0].logit)

    def logprob(self, token: int, top: int) -> tuple[float, list[tuple[int, float]]]:
        """The sampled token's log probability and the `top` most likely tokens' (id, logprob)."""
        logits = self.logits().astype(np.float64)
        peak = float(logits.max())
        total = peak + math.log(float(np.exp(logits - peak).sum()))
        best: list[tuple[int, float]] = []
        if top > 0:
            ids = np.argpartition(-logits, top - 1)[:top]
            ids = ids[np.argsort(-logits[ids], kind="stable")]
            best = [(int(i), min(0.0, float(logits[i]) - total)) for i in ids]
        return min(0.0, float(logits[token]) - total), best

    def close(self) -> None:
        self._lib.llama_sampler_free(self._chain)


_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
_ID_CACHE: dict[int, np.ndarray[Any, np.dtype[np.int32]]] = {}


def _ids(n_vocab: int) -> np.ndarray[Any, np.dtype[np.int32]]:
    ids = _ID_CACHE.get(n_vocab)
    if ids is None:
        ids = _ID_CACHE[n_vocab] = np.arange(n_vocab, dtype=np.int32)
    return ids


def _chain(lib: Any, n_vocab: int, sampling: SamplingParams) -> Any:
    """penalties → logit bias → (greedy | top-p → temperature → seeded draw), as llama.cpp orders them."""
    chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        lib.llama_sampler_chain_add(chain, sampler)

    if sampling.presence_penalty or sampling.frequency_penalty:
        # Over every token generated so far (OpenAI's penalties); prompt tokens are never accepted.
        add(
            lib.llama_sampler_init_penalties(
                n_vocab, sampling.max_tokens, 1.0, sampling.frequency_penalty, sampling.presence_penalty
            )
        )
    if sampling.logit_bias:
        biases = (lib.llama_logit_bias * len(sampling.logit_bias))()
        for slot, (token, bias) in zip(biases, sampling.logit_bias, strict=True):
            slot.token, slot.bias = token, bias
        add(lib.llama_sampler_init_logit_bias(n_vocab, len(sampling.logit_bias), biases))
    if sampling.temperature <= 0.0:
        add(lib.llama_sampler_init_greedy())
    else:
        add(lib.llama_sampler_init_top_p(sampling.top_p, 1))
        add(lib.llama_sampler_init_temp(sampling.temperature))
        add(lib.llama_sampler_init_dist(sampling.seed if sampling.seed is not None else _random_seed()))
    return chain


def _random_seed() -> int:
    import secrets

    return secrets.randbits(31)
