"""GPU text models on ExLlamaV2's dynamic generator (continuous batching, paged cache).

ExLlamaV2 is an optional, GPU-only extra: it is imported inside `load()`, and an ImportError or the
OSError it raises at import on a machine without CUDA makes the model `unavailable` with that reason.

Shape: one generator thread per runner owns the `ExLlamaV2DynamicGenerator` (it is not thread-safe).
Requests reach it through an inbox (enqueue a job / cancel a job); each `generator.iterate()` round
advances every active job by a token and its results are routed by the job's `identifier` to the
request's queue on the event loop. Closing a request's iterator early cancels its job, which frees
its cache pages for the others.

The generator, tokenizer and the job/settings classes can be injected (tests use fakes; no GPU).
Counting: `new_tokens` from the final result, the stop token included, as the llama.cpp runner does.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import json
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchin.errors import BatchInError, InvalidRequest, ServiceUnavailable
from batchin.models.base import (
    ChatParams,
    CompletionParams,
    EngineUnavailable,
    PreparedPrompt,
    RunnerHealth,
    SamplingParams,
    TextDelta,
    Usage,
)
from batchin.models.catalog import CatalogEntry
from batchin.models.text_stream import ChatTemplate, check_context

__all__ = ["ExLlamaV2Parts", "ExLlamaV2Runner", "finish_reason", "job_arguments"]

log = logging.getLogger("batchin.models")

_IDLE_WAIT_SECONDS = 0.1
_PAGE = 256  # the dynamic generator's cache is allocated in pages of this many tokens

_FINISH_REASONS = {
    "stop_token": "stop",
    "stop_string": "stop",
    "end_filter": "stop",
    "max_new_tokens": "length",
}


@dataclass(frozen=True, slots=True)
class ExLlamaV2Parts:
    """What the runner drives: the real exllamav2 objects, or fakes with the same methods."""

    generator: Any  # enqueue(job) -> int, cancel(job), iterate() -> list[dict], num_remaining_jobs() -> int
    tokenizer: Any  # encode(text, add_bos=, encode_special_tokens=) -> tensor (1, n); eos_token_id
    job_class: Callable[..., Any]  # ExLlamaV2DynamicJob
    settings_class: Callable[[], Any]  # ExLlamaV2Sampler.Settings
    chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""


def job_arguments(
    sampling: SamplingParams, *, settings_class: Callable[[], Any], stop_token_ids: tuple[int, ...]
) -> dict[str, Any]:
    """ExLlamaV2DynamicJob keyword arguments (besides input_ids/identifier) for these sampling params."""
    settings = settings_class()
    settings.top_k = 0
    settings.min_p = 0.0
    settings.token_repetition_penalty = 1.0
    if sampling.temperature <= 0.0:  # greedy: keep only the most likely token
        settings.temperature = 1.0
        settings.top_k = 1
        settings.top_p = 1.0
    else:
        settings.temperature = sampling.temperature
        settings.top_p = sampling.top_p
    return {
        "max_new_tokens": sampling.max_tokens,
        "gen_settings": settings,
        "seed": sampling.seed,
        "stop_conditions": [*stop_token_ids, *sampling.stop],
        "decode_special_tokens": False,
    }


def finish_reason(result: dict[str, Any]) -> str:
    """The OpenAI finish_reason for a generator result with eos=True."""
    return _FINISH_REASONS.get(str(result.get("eos_reason")), "stop")


@dataclass(eq=False)
class _Request:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[TextDelta | BaseException]
    prompt_tokens: int
    job: Any = None
    done: bool = False

    def send(self, item: TextDelta | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening
            self.done = True


class ExLlamaV2Runner:
    supports_tools = False  # no grammar-constrained decoding here yet: requests with tools get a 400

    def __init__(self, entry: CatalogEntry, *, parts: ExLlamaV2Parts | None = None) -> None:
        if entry.context_length is None:
            raise ValueError(f"model {entry.id}: exllamav2 needs a context_length")
        self.entry = entry
        self.context_length: int = entry.context_length
        self.max_concurrency = entry.max_concurrency
        self.supports_fim = entry.fim is not None
        self._parts = parts
        self._template: ChatTemplate | None = None
        self._stop_ids: tuple[int, ...] = ()
        self._inbox: list[tuple[str, _Request]] = []
        self._inbox_lock = threading.Lock()
        self._wake = threading.Event()
        self._requests: dict[int, _Request] = {}
        self._serials = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._closed = False
        if parts is not None:
            self._adopt(parts)

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self, weights: Path | None) -> None:
        if self._parts is None:
            if weights is None:
                raise ValueError(f"model {self.entry.id}: exllamav2 needs [weights] (a model folder)")
            self._adopt(await asyncio.to_thread(self._build, weights))
        self._start_thread()

    def _adopt(self, parts: ExLlamaV2Parts) -> None:
        self._parts = parts
        if parts.chat_template:
            self._template = ChatTemplate(
                parts.chat_template, bos_token=parts.bos_token, eos_token=parts.eos_token
            )
        extra_stops = self.entry.engine_options.get("stop_token_ids", [])
        eos = parts.tokenizer.eos_token_id
        ids = ([eos] if isinstance(eos, int) else []) + [int(i) for i in _as_list(extra_stops)]
        self._stop_ids = tuple(dict.fromkeys(ids))

    def _build(self, folder: Path) -> ExLlamaV2Parts:
        try:  # imported by name: optional, GPU-only, and untyped to mypy on machines without it
            torch = importlib.import_module("torch")
            exl = importlib.import_module("exllamav2")
            exl_generator = importlib.import_module("exllamav2.generator")
        except (ImportError, OSError) as exc:
            raise EngineUnavailable(f"exllamav2 cannot be imported: {type(exc).__name__}: {exc}") from exc
        if not torch.cuda.is_available():
            raise EngineUnavailable("exllamav2 needs a CUDA GPU and none is available")
        config = exl.ExLlamaV2Config(str(folder))
        config.max_seq_len = self.context_length
        model = exl.ExLlamaV2(config)
        wanted = int(
            str(self.entry.engine_options.get("cache_tokens", self.context_length * self.max_concurrency))
        )
        cache = exl.ExLlamaV2Cache(model, max_seq_len=-(-wanted // _PAGE) * _PAGE, lazy=True)
        model.load_autosplit(cache)
        tokenizer = exl.ExLlamaV2Tokenizer(config)
        generator = exl_generator.ExLlamaV2DynamicGenerator(
            model=model, cache=cache, tokenizer=tokenizer, max_batch_size=self.max_concurrency
        )
        template, bos, eos = _tokenizer_config(folder)
        return ExLlamaV2Parts(
            generator=generator,
            tokenizer=tokenizer,
            job_class=exl_generator.ExLlamaV2DynamicJob,
            settings_class=exl_generator.ExLlamaV2Sampler.Settings,
            chat_template=template,
            bos_token=bos,
            eos_token=eos,
        )

    def _start_thread(self) -> None:
        if self._parts is None:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        self._thread = threading.Thread(
            target=self._run, args=(self._parts.generator,), name=f"exllamav2-{self.entry.id}", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        self._closed = True
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def health(self) -> RunnerHealth:
        if self._closed:
            return RunnerHealth(status="unavailable", reason="closed")
        return RunnerHealth(
            status=self.entry.status,
            extra={"loaded": self._thread is not None, "active": len(self._requests)},
        )

    # -- preparing prompts -------------------------------------------------------------------

    def _encode(self, text: str, *, add_bos: bool) -> Any:
        if self._parts is None or self._closed:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        return self._parts.tokenizer.encode(text, add_bos=add_bos, encode_special_tokens=True)

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt:
        if self._template is None:
            raise InvalidRequest(f"model {self.entry.id} has no chat template", param="model")
        if not params.messages:
            raise InvalidRequest("messages must not be empty", param="messages")
        ids = self._encode(self._template.render(params.messages), add_bos=False)
        return self._prepared(ids, params.sampling, prompt_param="messages")

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt:
        if params.suffix is not None:
            fim = self.entry.fim
            if fim is None:
                raise InvalidRequest(
                    f"model {self.entry.id} has no fill-in-the-middle support", param="suffix"
                )
            text = f"{fim.prefix}{params.prompt}{fim.suffix}{params.suffix}{fim.middle}"
            ids = self._encode(text, add_bos=True)
        else:
            ids = self._encode(params.prompt, add_bos=True)
        return self._prepared(ids, params.sampling, prompt_param="prompt")

    def _prepared(self, ids: Any, sampling: SamplingParams, *, prompt_param: str) -> PreparedPrompt:
        count = int(ids.shape[-1])
        if count == 0:
            raise InvalidRequest("the prompt is empty", param=prompt_param)
        check_context(count, sampling.max_tokens, self.context_length, prompt_param=prompt_param)
        return PreparedPrompt(prompt_tokens=count, sampling=sampling, payload=ids)

    # -- generating --------------------------------------------------------------------------

    async def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]:
        parts = self._parts
        if parts is None or self._thread is None or self._closed:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        loop = asyncio.get_running_loop()
        request = _Request(loop=loop, queue=asyncio.Queue(), prompt_tokens=prepared.prompt_tokens)
        serial = next(self._serials)
        arguments = job_arguments(
            prepared.sampling, settings_class=parts.settings_class, stop_token_ids=self._stop_ids
        )
        request.job = parts.job_class(input_ids=prepared.payload, identifier=serial, **arguments)
        self._post("enqueue", request)
        try:
            while True:
                item = await request.queue.get()
                if isinstance(item, BatchInError):
                    raise item
                if isinstance(item, BaseException):
                    raise BatchInError(f"model {self.entry.id} failed while generating") from item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            if not request.done:
                self._post("cancel", request)

    def _post(self, command: str, request: _Request) -> None:
        with self._inbox_lock:
            self._inbox.append((command, request))
        self._wake.set()

    # -- the generator thread ----------------------------------------------------------------

    def _run(self, generator: Any) -> None:
        while not self._stopping.is_set():
            self._apply_inbox(generator)
            if not generator.num_remaining_jobs():
                self._wake.wait(_IDLE_WAIT_SECONDS)
                self._wake.clear()
                continue
            try:
                results = generator.iterate()
            except Exception as exc:  # the engine broke: fail every request in flight
                log.exception("model %s: generator iteration failed", self.entry.id)
                for request in list(self._requests.values()):
                    self._cancel(generator, request)
                    request.send(exc)
                continue
            for result in results:
                self._route(result)
        with self._inbox_lock:
            late, self._inbox = self._inbox, []
        waiting = [request for command, request in late if command == "enqueue"]
        for request in [*self._requests.values(), *waiting]:
            self._cancel(generator, request)
            request.send(ServiceUnavailable(f"model {self.entry.id} was shut down"))

    def _apply_inbox(self, generator: Any) -> None:
        with self._inbox_lock:
            commands, self._inbox = self._inbox, []
        for command, request in commands:
            if command == "enqueue":
                self._requests[request.job.identifier] = request
                generator.enqueue(request.job)
            elif not request.done:
                self._cancel(generator, request)

    def _cancel(self, generator: Any, request: _Request) -> None:
        request.done = True
        self._requests.pop(request.job.identifier, None)
        generator.cancel(request.job)

    def _route(self, result: dict[str, Any]) -> None:
        identifier = result.get("identifier")
        request = self._requests.get(identifier) if isinstance(identifier, int) else None
        if request is None or result.get("stage") != "streaming":
            return
        text = str(result.get("text", ""))
        if not result.get("eos"):
            if text:
                request.send(TextDelta(text))
            return
        request.done = True
        del self._requests[request.job.identifier]
        usage = Usage(prompt_tokens=request.prompt_tokens, completion_tokens=int(result.get("new_tokens", 0)))
        request.send(TextDelta(text, finish_reason=finish_reason(result), usage=usage))


def _as_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _tokenizer_config(folder: Path) -> tuple[str | None, str, str]:
    """The chat template and BOS/EOS strings from a Hugging Face model folder."""
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None, "", ""

    def token(name: str) -> str:
        value = config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else ""

    template = config.get("chat_template")
    return (template if isinstance(template, str) else None), token("bos_token"), token("eos_token")
