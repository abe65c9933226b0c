"""A finished batch's result files, in OpenAI's JSONL form, written a page of rows at a time (a
million-task batch is streamed from the store to disk, never held in memory).

Output file (completed tasks), one line each:
    {"id": "batch_req_…", "custom_id": …, "response": {"status_code": 200, "request_id": …,
     "body": {…}}, "error": null}
Error file (every other task; none is left out):
    failed    "response": {status_code, request_id, body: the error envelope}, "error": {code, message}
    cancelled "response": null, "error": {"code": "batch_cancelled", …}
    expired   "response": null, "error": {"code": "batch_expired", …}
Lines follow the input's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from batchin.core.batches.store import TaskStore
from batchin.core.batches.tasks import task_request_id
from batchin.core.media.files import FileService
from batchin.protocol.batches import BATCH_OUTPUT

__all__ = ["ResultFiles", "Tally", "write_results"]

_PAGE = 5000
_UNRUN = {
    "cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
}


@dataclass
class Tally:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True)
class ResultFiles:
    output_file_id: str | None
    error_file_id: str | None
    tally: Tally


def _line(batch_id: str, row: Any) -> tuple[bool, bytes]:
    """(is an output line, the JSONL line) of one task row."""
    request_id = task_request_id(batch_id, row.line)
    ident = "batch_req_" + request_id[4:]
    if row.status in _UNRUN:
        code, message = _UNRUN[row.status]
        item = {
            "id": ident,
            "custom_id": row.custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
        return False, orjson.dumps(item) + b"\n"
    body = orjson.Fragment(row.response) if row.response else None
    response = (
        None if body is None else {"status_code": row.status_code, "request_id": request_id, "body": body}
    )
    if row.status == "completed":
        item = {"id": ident, "custom_id": row.custom_id, "response": response, "error": None}
        return True, orjson.dumps(item) + b"\n"
    error = {"code": row.error_code or "failed", "message": row.error_message or ""}
    item = {"id": ident, "custom_id": row.custom_id, "response": response, "error": error}
    return False, orjson.dumps(item) + b"\n"


def _write_page(batch_id: str, rows: Sequence[Any], out: IO[bytes], err: IO[bytes], tally: Tally) -> None:
    for row in rows:
        is_output, line = _line(batch_id, row)
        (out if is_output else err).write(line)
        if row.status == "completed":
            tally.completed += 1
        elif row.status == "failed":
            tally.failed += 1
        elif row.status == "cancelled":
            tally.cancelled += 1
        elif row.status == "expired":
            tally.expired += 1


async def write_results(store: TaskStore, files: FileService, batch_id: str, user_id: str) -> ResultFiles:
    """Write both files (a file that would be empty is not made); returns their ids and counts."""
    out_path, err_path = files.staging_path(), files.staging_path()
    tally = Tally()
    try:
        out, err = await asyncio.to_thread(_open_pair, out_path, err_path)
        try:
            after = -1
            while True:
                rows = await store.page(batch_id, after=after, limit=_PAGE)
                if not rows:
                    break
                await asyncio.to_thread(_write_page, batch_id, rows, out, err, tally)
                after = rows[-1].line
        finally:
            await asyncio.to_thread(_close_pair, out, err)
        output_id = await _keep(files, user_id, out_path, f"batch_{batch_id}_output.jsonl", tally.completed)
        unrun = tally.failed + tally.cancelled + tally.expired
        error_id = await _keep(files, user_id, err_path, f"batch_{batch_id}_error.jsonl", unrun)
    finally:
        for path in (out_path, err_path):
            await asyncio.to_thread(path.unlink, missing_ok=True)
    return ResultFiles(output_id, error_id, tally)


async def _keep(files: FileService, user_id: str, path: Path, filename: str, lines: int) -> str | None:
    if lines == 0:
        return None
    # Counted against the user's storage quota but never refused: the tasks are already paid for.
    stored = await files.store_path(
        user_id,
        path,
        filename=filename,
        purpose=BATCH_OUTPUT,
        content_type="application/jsonl",
        enforce_quota=False,
    )
    return stored.id


def _open_pair(out_path: Path, err_path: Path) -> tuple[IO[bytes], IO[bytes]]:
    out_path.parent.mkdir(parents=True, exist_ok=True)
    return out_path.open("wb", buffering=1 << 20), err_path.open("wb", buffering=1 << 20)


def _close_pair(out: IO[bytes], err: IO[bytes]) -> None:
    out.close()
    err.close()
