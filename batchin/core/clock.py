"""Time in one place, so the ledger's calendar month and every timestamp agree (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_text() -> str:
    """`isoformat(utcnow())` without its checks: the reading is UTC already (a signed record's
    start and end, twice a call)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def month_of(moment: datetime) -> str:
    # strftime("%Y-%m")'s text for any year from 1000 on, without strftime's cost (~2 µs, a few
    # times per call).
    return f"{moment.year:04d}-{moment.month:02d}"


def isoformat(moment: datetime | None) -> str | None:
    """RFC 3339 with a Z, as the seed shows; SQLite hands back naive datetimes that are UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def epoch_seconds(moment: datetime) -> float:
    """Unix seconds; SQLite hands back naive datetimes that are UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
