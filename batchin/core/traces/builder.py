"""The spans of one inference call, built from the timings the inference path already keeps.

    batchin.call            (SERVER; its span id is the one in our `traceparent` response header,
    │                        its parent the caller's span when the caller sent a traceparent)
    ├── batchin.admission   request start → engine slot granted (flow limits, reservation, queue)
    ├── batchin.engine      slot granted → last token (text), or → the engine returned (other kinds)
    │   ├── batchin.first_token   slot granted → first token (time to first token)
    │   └── batchin.completion    first token → last token (decode)
    └── batchin.encode      the engine returned → the output is ready (vectors shaped, audio or
                            MP4 encoded, files stored); kinds other than text only

Every span carries the call's model, route, provider, prompt version, audit record and cost, so
any one of them found in a collector says what call it belongs to.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from batchin import __version__
from batchin.core.billing.money import units_to_cents
from batchin.core.context import CallContext
from batchin.core.trace_context import TraceContext
from batchin.core.traces.otlp import (
    JSON,
    SPAN_KIND_INTERNAL,
    SPAN_KIND_SERVER,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNSET,
    Span,
    any_value,
    key_values,
)

SCOPE_NAME = "batchin"


class CallTimings(Protocol):
    """Instants on `time.monotonic()`, as `GenerationStats` keeps them."""

    queued_seconds: float  # waiting for an engine slot
    admitted_at: float  # 0.0 when the call was never admitted
    first_token_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the spans of one call are built from, captured when the call ends: a few scalars, so
    the hot path allocates one object and the spans are built later, by the background writer."""

    trace: TraceContext
    user_id: str
    request_id: str
    run_id: str
    prompt_version: str
    region: str | None
    endpoint: str
    model_id: str
    route_id: str
    provider: str
    status: str
    record_id: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_units: int
    queued_seconds: float
    start_ns: int
    admitted_ns: int | None
    first_token_ns: int | None
    end_ns: int
    engine_end_ns: int | None = None  # set when encoding the output follows the engine

    @classmethod
    def capture(
        cls,
        ctx: CallContext,
        *,
        endpoint: str,
        model_id: str,
        route_id: str,
        provider: str,
        timings: CallTimings,
        status: str = "succeeded",
        record_id: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost_units: int = 0,
        engine_done_at: float | None = None,
    ) -> CallFacts:
        """`engine_done_at`: when the engine returned, if the output was encoded afterwards."""
        # Monotonic instants have no epoch: map them onto the wall clock as of now.
        wall_ns, mono = time.time_ns(), time.monotonic()
        finished = timings.finished_at or mono
        first = timings.first_token_at
        return cls(
            ctx.trace,
            ctx.principal.user_id,
            ctx.request_id,
            ctx.run_id,
            ctx.prompt_version,
            ctx.region,
            endpoint,
            model_id,
            route_id,
            provider,
            status,
            record_id,
            prompt_tokens,
            completion_tokens,
            cost_units,
            float(timings.queued_seconds),
            int(ctx.started_at * 1e9),
            wall_ns - int((mono - timings.admitted_at) * 1e9) if timings.admitted_at else None,
            wall_ns - int((mono - first) * 1e9) if first and timings.admitted_at else None,
            wall_ns - int((mono - finished) * 1e9),
            wall_ns - int((mono - engine_done_at) * 1e9) if engine_done_at and timings.admitted_at else None,
        )

    def spans(self, environment: str) -> list[Span]:
        """The call's spans; `status` "succeeded", "cancelled" or the failure's name."""
        resource, values = self._packed_values(environment)
        trace_id = self.trace.trace_id
        spans = []
        for span_id, parent, name, kind, start, end, code, message, attributes, *rest in values:
            events, links, trace_state, flags, scope_name, scope_version = rest
            spans.append(
                Span(
                    trace_id,
                    span_id,
                    parent,
                    name,
                    kind,
                    start,
                    end,
                    code,
                    message,
                    attributes,
                    resource,
                    events,
                    links,
                    trace_state,
                    flags,
                    scope_name,
                    scope_version,
                )
            )
        return spans

    def packed(self, user_id: str, environment: str) -> tuple[Any, ...]:
        """The call's trace_call_spans row, as `pack_call(user_id, self.spans(environment))` makes
        it, without building the Span objects it would take apart again (18 of the ~28 us the
        trace writer spent per call)."""
        resource, values = self._packed_values(environment)
        root = values[0]  # its id is the row's key
        first_start = last_start = root[4]
        last_end, status = root[5], root[6]
        for value in values:
            start, end, code = value[4], value[5], value[6]
            if start < first_start:
                first_start = start
            if start > last_start:
                last_start = start
            if end > last_end:
                last_end = end
            if code > status:
                status = code
        trace_id, count = self.trace.trace_id, len(values)
        packed = orjson.dumps([resource, values])
        return (user_id, trace_id, root[0], first_start, last_end, last_start, status, count, packed)

    def _packed_values(self, environment: str) -> tuple[list[JSON], list[list[Any]]]:
        """The resource attributes and each span in packed.py's PACKED_FIELDS order."""
        root_id = self.trace.span_id
        # Built once per call; each span's attributes are these followed by its own. The values'
        # OTLP types are known here (the fields' types), so the attributes are written out as
        # `key_values` would make them, without its per-value dispatch (~18 values a call).
        common = [
            _text("batchin.model_id", self.model_id),
            _text("batchin.route_id", self.route_id),
            _text("batchin.provider", self.provider),
            _text("batchin.prompt_version_id", self.prompt_version),
        ]
        if self.record_id is not None:
            common.append(_text("batchin.record_id", self.record_id))
        common.append(_attribute("batchin.cost_micro_cents", self.cost_units))
        common.append(_attribute("batchin.cost_cents", float(units_to_cents(self.cost_units))))
        resource = _resource(environment, self.region)
        code, message = _status(self.status)

        def span(
            name: str,
            span_id: str,
            parent: str | None,
            begin: int,
            finish: int,
            own: list[JSON],
            status: tuple[int, str] = (STATUS_UNSET, ""),
        ) -> list[Any]:
            return [
                span_id,
                parent,
                name,
                SPAN_KIND_SERVER if span_id == root_id else SPAN_KIND_INTERNAL,
                begin,
                max(begin, finish),
                status[0],
                status[1],
                common + own,
                [],
                [],
                "",
                0,
                SCOPE_NAME,
                __version__,
            ]

        start, end, admitted = self.start_ns, self.end_ns, self.admitted_ns
        input_tokens = _attribute("gen_ai.usage.input_tokens", self.prompt_tokens)
        output_tokens = _attribute("gen_ai.usage.output_tokens", self.completion_tokens)
        own = [
            _text("batchin.endpoint", self.endpoint),
            _text("batchin.status", self.status),
            _text("batchin.run_id", self.run_id),
            _text("batchin.request_id", self.request_id),
            _text("batchin.user_id", self.user_id),
            _text("gen_ai.request.model", self.model_id),
        ]
        root = span(
            "batchin.call",
            root_id,
            self.trace.parent_span_id,
            start,
            end,
            [*own, input_tokens, output_tokens],
            (code, message),
        )
        queue = [
            _attribute("batchin.queue_seconds", self.queued_seconds),
            _attribute("batchin.admitted", admitted is not None),
        ]
        if admitted is None:
            return resource, [
                root,
                span("batchin.admission", new_span_id(), root_id, start, end, queue, (code, message)),
            ]
        spans = [root, span("batchin.admission", new_span_id(), root_id, start, admitted, queue)]
        engine_end = self.engine_end_ns
        tokens = [input_tokens, output_tokens]
        if engine_end is None:
            engine = span("batchin.engine", new_span_id(), root_id, admitted, end, tokens, (code, message))
            spans.append(engine)
        else:  # the engine finished; whatever ended the call happened while encoding
            engine = span(
                "batchin.engine", new_span_id(), root_id, admitted, engine_end, tokens, (STATUS_OK, "")
            )
            spans.append(engine)
            spans.append(span("batchin.encode", new_span_id(), root_id, engine_end, end, [], (code, message)))
        first = self.first_token_ns
        if first is not None:
            engine_id = engine[0]
            ttft = [_attribute("batchin.ttft_seconds", (first - admitted) / 1e9)]
            spans.append(span("batchin.first_token", new_span_id(), engine_id, admitted, first, ttft))
            spans.append(span("batchin.completion", new_span_id(), engine_id, first, end, [output_tokens]))
        return resource, spans


def call_spans(
    ctx: CallContext,
    *,
    endpoint: str,
    model_id: str,
    route_id: str,
    provider: str,
    timings: CallTimings,
    environment: str,
    status: str = "succeeded",
    record_id: str | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cost_units: int = 0,
) -> list[Span]:
    """The call's spans at once (for callers that add spans of their own before `record_call`)."""
    facts = CallFacts.capture(
        ctx,
        endpoint=endpoint,
        model_id=model_id,
        route_id=route_id,
        provider=provider,
        timings=timings,
        status=status,
        record_id=record_id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_units=cost_units,
    )
    return facts.spans(environment)


def new_span_id() -> str:
    # Like OpenTelemetry's RandomIdGenerator: span ids need to be unique, not secret, and
    # os.urandom costs a system call per span on the hot path.
    return f"{random.getrandbits(64) or 1:016x}"


def _attribute(key: str, value: object) -> JSON:
    """One attribute as `key_values` makes it (for values that are never None)."""
    return {"key": key, "value": any_value(value)}


def _text(key: str, value: str | None) -> JSON:
    """A string attribute as `key_values` makes it (any other value through `any_value`: a field
    typed `str` may hold a str subclass or, from an old caller, something else)."""
    if type(value) is str:
        return {"key": key, "value": {"stringValue": value}}
    return _attribute(key, value)


@functools.lru_cache(maxsize=64)
def _resource(environment: str, region: str | None) -> list[JSON]:
    return key_values(
        {
            "service.name": "batchin",
            "service.version": __version__,
            "deployment.environment.name": environment,
            "batchin.region": region,
        }
    )


def _status(status: str) -> tuple[int, str]:
    if status == "succeeded":
        return STATUS_OK, ""
    if status == "cancelled":
        return STATUS_UNSET, "cancelled by the client"
    return STATUS_ERROR, status
