"""Push our own spans to an external OTLP/HTTP collector (`BATCHIN_OTLP_ENDPOINT`).

`offer` only appends to a bounded buffer; a background task posts protobuf batches, retrying
429/502/503/504 and network failures with exponential backoff (honouring `Retry-After`), as the
OTLP/HTTP spec asks. Nothing a request does ever waits on the collector: when it is down, spans
queue up to `buffer_spans`, then the oldest are dropped and counted. Spans received through
/v1/otlp/traces are not forwarded (they are the caller's own, and forwarding could loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Sequence
from urllib.parse import unquote

import httpx2

from batchin.core.traces.otlp import PROTOBUF, Span
from batchin.core.traces.otlp_encode import encode_protobuf
from batchin.core.write_behind import BufferStats, warn_on_drop

log = logging.getLogger("batchin.traces.export")

_RETRYABLE = frozenset({429, 502, 503, 504})


def traces_url(endpoint: str) -> str:
    """A base URL gets OTLP's `/v1/traces`; a URL already ending in it is used as given."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def parse_headers(raw: str | None) -> dict[str, str]:
    """`key=value,key2=value2` with URL-encoded values (the OTEL_EXPORTER_OTLP_HEADERS format)."""
    headers: dict[str, str] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"BATCHIN_OTLP_HEADERS: expected key=value, got {part.strip()!r}")
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


class OtlpHttpExporter:
    def __init__(
        self,
        endpoint: str,
        *,
        headers: dict[str, str] | None = None,
        buffer_spans: int = 20_000,
        batch_spans: int = 512,
        interval: float = 1.0,
        max_attempts: int = 6,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = traces_url(endpoint)
        self._headers = {**(headers or {}), "Content-Type": PROTOBUF}
        self._capacity = buffer_spans
        self._batch = batch_spans
        self._interval = interval
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._pending: deque[Span] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx2.AsyncClient | None = None
        self._closed = False
        self.exported_spans = 0
        self.overflow_spans = 0  # dropped from a full buffer, never sent
        self.failed_spans = 0  # sent, and given up after retries or refused
        self.rejected_spans = 0  # the collector's partialSuccess count

    def offer(self, spans: Sequence[Span]) -> None:
        overflow = len(self._pending) + len(spans) - self._capacity
        for _ in range(max(0, overflow)):
            if not self._pending:
                break
            self._pending.popleft()
            self.overflow_spans += 1
            warn_on_drop(log, self.overflow_spans, "spans for the OTLP collector", "it is not keeping up")
        self._pending.extend(spans[-self._capacity :])
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._pending) >= self._batch:
            self._wake.set()

    async def _run(self) -> None:
        while not self._closed:
            # Post when a batch is full or the interval has passed, whichever comes first.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            while self._pending and not self._closed:
                batch = self._take()
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    self._pending.extendleft(reversed(batch))  # close() gives it one more try
                    raise

    def _take(self) -> list[Span]:
        return [self._pending.popleft() for _ in range(min(self._batch, len(self._pending)))]

    async def _send(self, spans: list[Span], *, attempts: int | None = None) -> None:
        body = encode_protobuf(spans)
        client = self._client or httpx2.AsyncClient(timeout=self._timeout)
        self._client = client
        for attempt in range(attempts or self._max_attempts):
            delay = min(self._max_backoff, self._backoff * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            try:
                response = await client.post(self.url, content=body, headers=self._headers)
            except httpx2.HTTPError as exc:
                log.warning("OTLP export to %s failed (%s); attempt %d", self.url, exc, attempt + 1)
            else:
                if response.status_code < 300:
                    self.exported_spans += len(spans)
                    self._note_partial(response.content)
                    return
                if response.status_code not in _RETRYABLE:
                    log.error("OTLP collector refused %d spans: HTTP %d", len(spans), response.status_code)
                    break
                delay = _retry_after(response.headers.get("retry-after"), delay, self._max_backoff)
            if self._closed or attempt + 1 == (attempts or self._max_attempts):
                break
            await asyncio.sleep(delay)
        self.failed_spans += len(spans)

    def _note_partial(self, content: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        response = ExportTraceServiceResponse()
        try:
            response.ParseFromString(content)
        except Exception:  # a collector answering something else is not our failure
            return
        if response.partial_success.rejected_spans:
            self.rejected_spans += response.partial_success.rejected_spans
            log.warning(
                "OTLP collector rejected %d spans: %s",
                response.partial_success.rejected_spans,
                response.partial_success.error_message,
            )

    async def close(self) -> None:
        """One last attempt for what is queued, then stop."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()  # it may be sleeping out a long backoff
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._pending:
            await self._send(self._take(), attempts=1)
        if self._client is not None:
            await self._client.aclose()

    @property
    def dropped_spans(self) -> int:
        """Every span that never reached the collector."""
        return self.overflow_spans + self.failed_spans

    def buffer_stats(self) -> BufferStats:
        return BufferStats(pending=len(self._pending), dropped=self.overflow_spans, failed=self.failed_spans)

    def stats(self) -> dict[str, int]:
        return {
            "pending_spans": len(self._pending),
            "exported_spans": self.exported_spans,
            "dropped_spans": self.dropped_spans,
            "rejected_spans": self.rejected_spans,
        }


def _retry_after(header: str | None, default: float, cap: float) -> float:
    if header and header.strip().isdigit():
        return min(cap, float(header.strip()))
    return default
