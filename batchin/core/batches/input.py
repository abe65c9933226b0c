"""Batch input: checking every task before any runs, and turning tasks into rows.

The inline (seed) form is checked in the request: the first problem is a 400 naming the task.
A JSONL file (OpenAI's form) is read twice, line by line, never whole: `scan` checks every line
(JSON, custom_id present and unique, method POST, url equal to the batch's endpoint, body with a
model the catalog has for that endpoint) and collects per-line errors (the batch fails if there is
any, as OpenAI's does); `load` then reads it again into task rows, a chunk at a time. Only the set
of custom_ids is held in memory (tens of MB for a million lines). Blank lines carry no request and
are skipped; line numbers in errors are the file's, 1-based.

The body itself is checked lightly here (object, model, the endpoint's main field, no streaming);
the full check happens when the task runs, and a task refused then fails on its own with a 400 in
the error file, as OpenAI reports it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchin.errors import BatchInError, InvalidRequest
from batchin.models.registry import ModelRegistry
from batchin.protocol.batches import MAX_CUSTOM_ID_LENGTH, BatchError, InlineTask

__all__ = ["MAX_LISTED_ERRORS", "Scan", "TaskChecker", "load_rows", "scan_file"]

MAX_LISTED_ERRORS = 1000  # errors listed on a failed batch; a last one counts the rest
ROWS_PER_CHUNK = 5000

# The catalog kind a model needs for each endpoint, and the body field the endpoint cannot do without.
_KIND = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/completions": "completion",
    "/v1/embeddings": "embedding",
}
_MAIN_FIELD = {
    "/v1/chat/completions": "messages",
    "/v1/responses": "input",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}


class LineError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class TaskChecker:
    """Checks one task's endpoint and body; remembers each model's verdict (a million lines name
    a handful of models)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry
        self._models: dict[tuple[str, str], LineError | None] = {}

    def body(self, endpoint: str, body: object) -> str:
        """The body's model, or LineError."""
        if not isinstance(body, dict):
            raise LineError("invalid_body", "'body' must be a JSON object.", "body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise LineError("missing_model", "'body.model' must name a model.", "body.model")
        verdict = self._models.get((endpoint, model), ...)
        if verdict is ...:
            verdict = self._models[(endpoint, model)] = self._check_model(endpoint, model)
        if verdict is not None:
            raise verdict
        main = _MAIN_FIELD[endpoint]
        if body.get(main) is None:
            raise LineError("invalid_body", f"'body.{main}' is required for {endpoint}.", f"body.{main}")
        if body.get("stream"):
            raise LineError(
                "invalid_body", "Streaming is not available in a batch; omit 'stream'.", "body.stream"
            )
        return model

    def _check_model(self, endpoint: str, model: str) -> LineError | None:
        try:
            entry = self._registry.entry(model)
        except BatchInError:
            return LineError("model_not_found", f"The model '{model}' does not exist.", "body.model")
        if _KIND[endpoint] not in entry.kind:
            return LineError(
                "model_not_supported",
                f"Model '{model}' does not serve {endpoint} (it serves {', '.join(entry.kind)}).",
                "body.model",
            )
        return None

    def inline(self, index: int, task: InlineTask, endpoint: str) -> tuple[str, str, dict[str, Any]]:
        """(endpoint, model, body) of an inline task, or InvalidRequest naming it."""
        url = task.url or endpoint
        body = dict(task.request_body)
        if task.model is not None:
            body["model"] = task.model
        try:
            model = self.body(url, body)
        except LineError as exc:
            where = (exc.param or "request_body").replace("body", "request_body", 1)
            if where == "request_body.model" and task.model is not None:
                where = "model"
            raise InvalidRequest(f"tasks[{index}]: {exc.message}", param=f"tasks[{index}].{where}") from None
        return url, model, body


@dataclass
class Scan:
    lines: int = 0  # requests found (blank lines skipped)
    errors: list[BatchError] = field(default_factory=list)
    error_count: int = 0

    def add(self, number: int, error: LineError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append(
                BatchError(code=error.code, message=error.message, param=error.param, line=number)
            )

    def listed(self) -> list[BatchError]:
        """The errors to show: the first MAX_LISTED_ERRORS, then one counting the rest."""
        hidden = self.error_count - len(self.errors)
        if hidden <= 0:
            return self.errors
        summary = BatchError(code="too_many_errors", message=f"{hidden} more lines have errors (not listed).")
        return [*self.errors, summary]


def _parse(raw: bytes, endpoint: str, checker: TaskChecker) -> tuple[str, str, bytes]:
    """(custom_id, model, body JSON) of one line, or LineError."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise LineError("invalid_json_line", "This line is not valid JSON.") from None
    if not isinstance(item, dict):
        raise LineError("invalid_json_line", "Each line must be a JSON object.")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError("missing_custom_id", "'custom_id' must be a non-empty string.", "custom_id")
    if len(custom_id) > MAX_CUSTOM_ID_LENGTH:
        raise LineError(
            "invalid_custom_id", f"'custom_id' is longer than {MAX_CUSTOM_ID_LENGTH}.", "custom_id"
        )
    if item.get("method") != "POST":
        raise LineError("invalid_method", "'method' must be \"POST\".", "method")
    if item.get("url") != endpoint:
        raise LineError("mismatched_url", f"'url' must be the batch's endpoint, {endpoint}.", "url")
    body = item.get("body")
    model = checker.body(endpoint, body)
    return custom_id, model, orjson.dumps(body)


def _lines(path: Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(0-based line number, content) of every non-blank line from `start` on."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream):
            if number >= start and raw.strip():
                yield number, raw


def scan_file(path: Path, endpoint: str, checker: TaskChecker, *, max_tasks: int) -> Scan:
    """Check every line (blocking: run it in a thread)."""
    scan = Scan()
    seen: set[str] = set()
    for number, raw in _lines(path):
        scan.lines += 1
        try:
            custom_id, _, _ = _parse(raw, endpoint, checker)
        except LineError as exc:
            scan.add(number + 1, exc)
            continue
        if custom_id in seen:
            scan.add(
                number + 1,
                LineError(
                    "duplicate_custom_id", f"custom_id {custom_id!r} is used more than once.", "custom_id"
                ),
            )
        seen.add(custom_id)
    if scan.lines == 0:
        scan.add(1, LineError("empty_file", "The input file has no requests."))
    elif scan.lines > max_tasks:
        scan.add(
            scan.lines,
            LineError(
                "too_many_requests",
                f"A batch may hold at most {max_tasks} requests; this file has {scan.lines}.",
            ),
        )
    return scan


def load_rows(
    path: Path, endpoint: str, checker: TaskChecker, *, start: int, make_row: Any
) -> Iterator[list[tuple[Any, ...]]]:
    """Task rows of a scanned file from line `start` on, ROWS_PER_CHUNK at a time (blocking)."""
    chunk: list[tuple[Any, ...]] = []
    for number, raw in _lines(path, start):
        custom_id, model, body = _parse(raw, endpoint, checker)
        chunk.append(make_row(number, custom_id, endpoint, model, body.decode()))
        if len(chunk) >= ROWS_PER_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
