"""The decode loop of a llama.cpp runner (llama_cpp.py): one request at a time on the runner's decode
thread, from the evaluated prompt to the last delta, with grammars, log probabilities and tool calls
in one loop, and the bounded hand-off that carries the deltas to the event loop."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from batchin.models.base import PreparedPrompt, SamplingParams, TextDelta, TokenLogprob, Usage
from batchin.models.grammars import JSON_OBJECT_SCHEMA, schema_grammar
from batchin.models.llama_sampling import GrammarCache, TokenSampler
from batchin.models.text_stream import LogprobAligner
from batchin.models.tool_calls import ReplyReader, ToolCallStream
from batchin.models.tool_prompt import CALL_OPEN

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["CallPlan", "Handoff", "LlamaDecoder", "PromptTokens"]

_HANDOFF_SLOTS = 64  # deltas the decode thread may run ahead of a slow consumer
_POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How a request with tools decodes: the grammar of its calls, and whether the prompt already
    ends in the call opener (`forced`: tool_choice required or named)."""

    grammar: str
    forced: bool


@dataclass(frozen=True, slots=True)
class PromptTokens:
    ids: tuple[int, ...]
    calls: CallPlan | None = None


class Handoff:
    """Decode thread → event loop, bounded: the thread waits for a free slot (or cancellation)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[TextDelta | BaseException] = asyncio.Queue()
        self._slots = threading.Semaphore(_HANDOFF_SLOTS)
        self.cancelled = threading.Event()

    def put(self, item: TextDelta | BaseException) -> bool:
        """From the thread; False when the consumer is gone (stop decoding)."""
        while not self._slots.acquire(timeout=_POLL_SECONDS):
            if self.cancelled.is_set():
                return False
        if self.cancelled.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed
            self.cancelled.set()
            return False
        return True

    async def get(self) -> TextDelta | BaseException:
        item = await self._queue.get()
        self._slots.release()
        return item


class LlamaDecoder:
    """Decodes requests on one `Llama` (not thread-safe: the runner calls `run` under its engine
    lock, always from its one decode thread, which also makes the grammar samplers on first use)."""

    def __init__(self, lib: Any, llama: Llama, *, prompt_cache: bool) -> None:
        self._lib = lib
        self._llama = llama
        self._prompt_cache = prompt_cache
        self._grammars: GrammarCache | None = None
        # The prompt's evaluation stops when its request is cancelled: llama.cpp asks this between
        # the nodes of the graph it computes (on its compute thread). Installed only around the
        # prompt's eval, so the per-token evals pay nothing; kept referenced, as C holds only the
        # pointer. Its body is one attribute read and one flag test: it takes the GIL per node.
        self._cancelled: threading.Event | None = None
        self._abort = lib.ggml_abort_callback(self._should_abort)
        self._no_abort = lib.ggml_abort_callback()  # NULL: llama.cpp asks nothing

    def _should_abort(self, _data: object) -> bool:
        cancelled = self._cancelled
        return cancelled is not None and cancelled.is_set()

    def close(self) -> None:
        if self._grammars is not None:
            self._grammars.close()
            self._grammars = None

    def run(self, prepared: PreparedPrompt, handoff: Handoff) -> None:
        """Decode one request on the calling (decode) thread, handing each delta to `handoff`."""
        lib, llama = self._lib, self._llama
        sampling = prepared.sampling
        payload: PromptTokens = prepared.payload
        if not self._feed_prompt(payload.ids, handoff.cancelled):
            return  # cancelled while the prompt was being evaluated
        vocab = llama._model.vocab
        plan = payload.calls
        calls = ToolCallStream(in_calls=plan.forced) if plan is not None else None
        reader = ReplyReader(sampling.stop, calls)
        if plan is not None and plan.forced:
            grammar = self._grammar_of(plan.grammar, param="tools")
        else:
            grammar = self._grammar(sampling)
        sampler = TokenSampler(lib, llama._ctx.ctx, vocab, llama.n_vocab(), sampling, grammar)
        # Log probabilities follow the text (tools and logprobs together are refused up front).
        aligner = LogprobAligner() if sampling.logprobs is not None else None
        completion_tokens, finish = 0, "length"
        try:
            while True:
                token = sampler.sample()
                completion_tokens += 1
                if lib.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                piece = llama.detokenize([token])
                delta = reader.feed(piece)
                if aligner is not None:
                    aligner.add(self._token_logprob(sampler, token, piece, reader.decoded, sampling.logprobs))
                if delta is not None and not handoff.put(_with_logprobs(delta, aligner)):
                    return
                if reader.stopped or (calls is not None and calls.repeated):
                    finish = "stop"
                    break
                if handoff.cancelled.is_set() or completion_tokens >= sampling.max_tokens:
                    break
                if calls is not None and calls.triggered and plan is not None:
                    # A free reply opened a call: evaluate its text so far and the opener after the
                    # prompt (whose KV is kept), then go on under the calls' grammar.
                    opened = (calls.shown + CALL_OPEN + "\n").encode("utf-8")
                    llama.n_tokens = len(payload.ids)  # eval() drops the KV cache past this point
                    llama.eval(llama.tokenize(opened, add_bos=False, special=True))
                    sampler.close()
                    grammar = self._grammar_of(plan.grammar, param="tools")
                    sampler = TokenSampler(lib, llama._ctx.ctx, vocab, llama.n_vocab(), sampling, grammar)
                    reader.restart()
                    continue
                llama.eval([token])
        finally:
            sampler.close()
        if handoff.cancelled.is_set():
            return
        tail = reader.finish()
        if reader.stopped:
            finish = "stop"
        if calls is not None and calls.completed and (finish == "stop" or calls.calls_whole):
            finish = "tool_calls"
        usage = Usage(prompt_tokens=prepared.prompt_tokens, completion_tokens=completion_tokens)
        logprobs = aligner.finish(tail.text) if aligner is not None else None
        handoff.put(
            TextDelta(
                tail.text, finish_reason=finish, usage=usage, logprobs=logprobs, tool_calls=tail.tool_calls
            )
        )

    def _feed_prompt(self, ids: tuple[int, ...], cancelled: threading.Event) -> bool:
        """Evaluate the prompt; False when `cancelled` stopped it midway. By default from scratch:
        reusing the previous request's KV prefix evaluates the prompt in a different batch shape,
        which changes logits enough to flip greedy choices. With `prompt_cache`, the shared prefix
        is kept (one token is always evaluated again, so the next token's logits are this
        prompt's).

        A cancel aborts llama_decode between two nodes of its graph (the batch is the same one,
        so the logits of a prompt evaluated to its end do not change). The aborted batch's KV
        positions are dropped by llama.cpp; the model is then reset, so the next request evaluates
        its prompt from scratch (with `prompt_cache` too: nothing of this one is trusted)."""
        llama = self._llama
        keep = 0
        if self._prompt_cache and llama.n_tokens > 0:
            cached = llama._input_ids
            while keep < min(len(cached), len(ids) - 1) and cached[keep] == ids[keep]:
                keep += 1
        if keep:
            llama.n_tokens = keep  # eval() drops the KV cache past this point
        else:
            cast(Any, llama).reset()  # untyped in llama-cpp-python
        ctx = llama._ctx.ctx
        self._cancelled = cancelled
        self._lib.llama_set_abort_callback(ctx, self._abort, None)
        try:
            llama.eval(list(ids[keep:]))
        except RuntimeError:  # "llama_decode returned 2": aborted (anything else is raised)
            if not cancelled.is_set():
                raise
            cast(Any, llama).reset()
            return False
        finally:
            self._lib.llama_set_abort_callback(ctx, self._no_abort, None)
            self._cancelled = None
        return True

    def _grammar(self, sampling: SamplingParams) -> Any:
        """The grammar sampler for this request's `response_format` (None without one)."""
        output = sampling.json_output
        if output is None:
            return None
        text = output.schema or JSON_OBJECT_SCHEMA
        return self._grammar_of(text, gbnf=schema_grammar(text), param="response_format")

    def _grammar_of(self, key: str, *, gbnf: str | None = None, param: str) -> Any:
        """A cached grammar sampler, reset for a new request (`gbnf` defaults to `key` itself)."""
        if self._grammars is None:
            self._grammars = GrammarCache(self._lib, self._llama._model.vocab)
        return self._grammars.get(key, key if gbnf is None else gbnf, param=param)

    def _token_logprob(
        self, sampler: TokenSampler, token: int, piece: bytes, decoded: str, top: int | None
    ) -> TokenLogprob:
        logprob, best = sampler.logprob(token, top or 0)
        return TokenLogprob(
            decoded, logprob, piece, tuple((self._llama.detokenize([i]), lp) for i, lp in best)
        )


def _with_logprobs(delta: TextDelta, aligner: LogprobAligner | None) -> TextDelta:
    if aligner is None:
        return delta
    return TextDelta(delta.text, logprobs=aligner.release(delta.text), tool_calls=delta.tool_calls)
