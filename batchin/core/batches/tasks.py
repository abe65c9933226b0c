"""What a batch task is, apart from its row: the ids derived from it (so a restart finds the same
request id and ledger reservation), its times in epoch milliseconds, the admission priority of its
batch, and the task as a worker claimed it."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchin.core.random_ids import uuid_text
from batchin.core.serving.admission import Priority

__all__ = [
    "PRIORITY_RANK",
    "ClaimedTask",
    "epoch_ms",
    "now_ms",
    "ordered_ids",
    "reservation_id",
    "task_request_id",
]

# A batch's priority as its tasks' admission priority (also their claiming order).
PRIORITY_RANK = {"high": int(Priority.BATCH_HIGH), "low": int(Priority.BATCH_LOW), "fill": int(Priority.FILL)}
_IDS = uuid.UUID("5f0c2d1e-8a4b-4c3d-9e2f-b47a6c1d0e93")  # namespace of the ids derived below
_NAMESPACE = _IDS.bytes


def now_ms() -> int:
    return int(time.time() * 1000)


def epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:  # SQLite hands back naive datetimes that are UTC
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def reservation_id(batch_id: str, task_id: int, attempt: int) -> str:
    """The ledger reservation of a task's attempt: derived, so a restart can find and release it.
    For a batch with a time-ordered id (ordered_ids): a version 8 UUID led by the task id, so the
    reservations' and usage logs' indexes take each task's row at their end; for an older batch the
    version 5 UUID it always had (an upgrade finds the reservations made before it)."""
    digest = _sha1(f"task:{task_id}:{attempt}")
    if ordered_ids(batch_id):
        return uuid_text((task_id & 0xFFFF_FFFF_FFFF).to_bytes(6, "big") + digest, 8)
    return uuid_text(digest, 5)


def task_request_id(batch_id: str, line: int) -> str:
    """The request id of every attempt of a task (its usage logs, traces and audit records, and its
    line in the output). For a batch with a time-ordered id: the batch's milliseconds, the line and
    a hash of both (48 + 32 + 48 bits), sorting as the tasks do (made for the usage logs' request id
    index, which migration 0019 dropped; the ids given out stay as they are); for an older batch the
    version 5 UUID it always had."""
    if ordered_ids(batch_id):
        digest = _sha1(f"{batch_id}:{line}")[:6].hex()
        return f"req_{batch_id[:8]}{batch_id[9:13]}{line & 0xFFFFFFFF:08x}{digest}"
    return "req_" + uuid_text(_sha1(f"{batch_id}:{line}"), 5).replace("-", "")


def ordered_ids(batch_id: str) -> bool:
    """Whether the batch's id is a version 7 UUID (batches made since ids are time-ordered): its
    tasks' derived ids are ordered too. Older batches keep the ids they were made with."""
    return len(batch_id) == 36 and batch_id[14] == "7" and batch_id[8] == "-"


def _sha1(name: str) -> bytes:
    """The hash of a name-based (version 5) UUID in our namespace: `uuid.uuid5(_IDS, name)` without
    its UUID object (6 → 2.4 µs; two per claimed task)."""
    return hashlib.sha1(_NAMESPACE + name.encode(), usedforsecurity=False).digest()


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    id: int
    batch_id: str
    line: int
    custom_id: str
    endpoint: str
    model: str
    body: str
    priority: int
    next_attempt_at: int
    attempt: int
    failures: int
    request_id: str = ""  # derived (task_request_id, reservation_id) when claimed
    reservation_id: str = ""

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ClaimedTask:
        """A claimed row: the fields above in their order, up to `failures`; the ids are derived."""
        task_id, batch_id, line, custom_id, endpoint, model, body, priority, due, attempt, failures = row
        return cls(
            task_id,
            batch_id,
            line,
            custom_id,
            endpoint,
            model,
            body,
            priority,
            due,
            attempt,
            failures,
            task_request_id(batch_id, line),
            reservation_id(batch_id, task_id, attempt),
        )
