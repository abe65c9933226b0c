"""The clock's texts: `utcnow_text` is `isoformat(utcnow())`, RFC 3339 with a Z."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from batchin.core import clock
from batchin.core.clock import isoformat, utcnow_text


def test_utcnow_text_is_the_isoformat_of_the_same_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = [datetime(2026, 12, 4, 5, 6, 7, 890123, tzinfo=UTC), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)]

    class FixedClock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return readings[0]

    monkeypatch.setattr(clock, "datetime", FixedClock)
    for reading in readings:
        readings[0] = reading
        assert utcnow_text() == isoformat(reading)
    assert utcnow_text() == "2026-01-02T03:04:05Z"  # no fraction when it is zero, as isoformat


def test_utcnow_text_reads_the_clock_in_utc() -> None:
    text = utcnow_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", text)
    assert abs(datetime.fromisoformat(text).timestamp() - datetime.now(UTC).timestamp()) < 5
