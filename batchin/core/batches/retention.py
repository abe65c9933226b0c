"""What batches hold back from the retention purge: the input file of every batch that has not
ended (any status but completed, failed, expired or cancelled) stays stored, however old, so a
batch still validating or running never loses it. Once the batch ends the file ages like any other
(core/media/retention.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from batchin.protocol.batches import TERMINAL_STATUSES
from batchin.store.tables import batches

__all__ = ["input_files_in_use"]


def input_files_in_use() -> Select[Any]:
    """The ids of the input files of batches not yet ended (never NULL: NOT IN a set holding NULL
    would keep every file)."""
    return select(batches.c.input_file_id).where(
        batches.c.input_file_id.is_not(None), batches.c.status.not_in(TERMINAL_STATUSES)
    )
