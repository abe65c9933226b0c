"""A user's own audit records (the console's receipts page): newest first, or one by id. Another
user's record reads as absent, exactly like one that does not exist, so ids cannot be probed."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from batchin.errors import InvalidRequest, NotFound
from batchin.store.database import Database
from batchin.store.tables import vaas_records

__all__ = ["MAX_OWNED", "OwnedRecord", "newest_records", "owned_record"]

MAX_OWNED = 200


@dataclass(frozen=True, slots=True)
class OwnedRecord:
    """What a receipt's row in the console shows, read from its signed payload."""

    record_id: str
    model_id: str
    trace_id: str | None
    attestation: str | None  # served | caller_asserted | None (records older than the field)
    input_tokens: int
    output_tokens: int
    units: float
    unit: str
    created_at: datetime
    payload: dict[str, Any]


async def newest_records(database: Database, user_id: str, limit: int) -> list[OwnedRecord]:
    if not 1 <= limit <= MAX_OWNED:
        raise InvalidRequest(f"limit must be between 1 and {MAX_OWNED}.", param="limit")
    query = (
        select(vaas_records.c.payload, vaas_records.c.created_at)
        .where(vaas_records.c.user_id == user_id)
        .order_by(vaas_records.c.created_at.desc(), vaas_records.c.id.desc())
        .limit(limit)
    )
    async with database.read() as conn:
        rows = (await conn.execute(query)).all()
    return [_owned(row.payload, row.created_at) for row in rows]


async def owned_record(database: Database, user_id: str, record_id: str) -> OwnedRecord:
    """The user's record by id; NotFound for anyone else's, as for an unknown id."""
    missing = NotFound(f"Audit record '{record_id[:100]}' does not exist.")
    try:
        uuid.UUID(record_id)
    except ValueError:
        raise missing from None
    query = select(vaas_records.c.payload, vaas_records.c.created_at).where(
        vaas_records.c.id == record_id, vaas_records.c.user_id == user_id
    )
    async with database.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        raise missing
    return _owned(row.payload, row.created_at)


def _owned(text: str, created_at: datetime) -> OwnedRecord:
    payload: dict[str, Any] = json.loads(text)
    return OwnedRecord(
        record_id=payload["record_id"],
        model_id=str(payload.get("model_id", "")),
        trace_id=payload.get("trace_id") or None,
        attestation=payload.get("attestation"),
        input_tokens=int(payload.get("input_tokens", 0)),
        output_tokens=int(payload.get("output_tokens", 0)),
        units=int(payload.get("units_milli", 0)) / 1000,
        unit=str(payload.get("unit", "tokens")),
        created_at=created_at,
        payload=payload,
    )
