"""Isolated µs per call of the per-call pieces branch `core9` changed, old way against new, in one
process (thread CPU clock, best of several repeats). Prints one JSON line.

- `lookups`: a chat call's model lookups: `registry.entry` + `unavailable(id)` + `text_runner(id)`
  (two lookups) + the audit record's two (`entry` for the provider and the energy class), against
  `slot` once with `unavailable(slot)` + `text_runner(slot)`;
- `canonical`: a sealed record's payload through `canonical` against `canonical_of_our_keys`;
- `times`: the record's start and end, `isoformat(utcnow())` twice against `utcnow_text()` twice;
- `datetimes`: a settlement's closed_at and usage log created_at bound for SQLite, formatted per
  column (the old per-statement cache, each its first use) against the shared one;
- `metrics`: a finished call's four histogram observations and outcome count, prometheus_client's
  `Histogram`/`Counter` against `call_metrics`;
- `frontier`: the transparency log's frontier after an append (once per append batch) at a
  million-leaf log, `subtree_keys(0, size)` (main) against `frontier_keys`;
- `batch_of_two`: a transaction of two operations (a call's settlement and receipt append at c=1),
  each one INSERT here, on a WAL file: main's savepoints (SAVEPOINT/RELEASE each) against
  `GroupCommitWriter._run` (none for the first, the last left to COMMIT).

    python bench/micro_core9.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, Counter, Histogram

from batchin.core.audit import transparency as mt
from batchin.core.audit.canonical import canonical, canonical_of_our_keys
from batchin.core.audit.records import AuditUsage, PendingRecord, sha256_ref
from batchin.core.clock import isoformat, utcnow, utcnow_text
from batchin.core.random_ids import uuid7_text
from batchin.core.serving.metrics import _ITL_BUCKETS, _LATENCY_BUCKETS, _TPS_BUCKETS, InferenceMetrics
from batchin.models.catalog import parse_catalog
from batchin.models.registry import ModelRegistry
from batchin.store import statements
from batchin.store.database import SQLITE_PRAGMAS
from batchin.store.group_commit import GroupCommitWriter
from batchin.store.tables import TS

REPEATS, LOOPS = 7, 20_000


def per_call_us(work: Callable[[], Any], loops: int = 0) -> float:
    loops = loops or LOOPS
    best = float("inf")
    for _ in range(REPEATS):
        start = time.thread_time_ns()
        for _ in range(loops):
            work()
        best = min(best, (time.thread_time_ns() - start) / loops / 1000)
    return round(best, 3)


def lookups() -> tuple[float, float]:
    entry = (
        '[models.m]\nkind = ["chat"]\nengine = "fake"\nlicence = "MIT"\ncontext_length = 256\n'
        'status = "on_demand"\n[models.m.pricing]\ninput_per_1m = 0.1\noutput_per_1m = 0.2\n'
    )
    registry = ModelRegistry(
        parse_catalog(entry, source="bench"), engines={"fake": "tests.models.fakes:FakeRunner"}
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(registry.text_runner("m"))  # loaded once, as a served model is

    async def old() -> None:
        entry = registry.entry("m")
        registry.unavailable(entry.id)
        await registry.text_runner("m")
        registry.entry("m")  # the audit record's provider
        registry.entry("m")  # and its energy class, at seal

    async def new() -> None:
        slot = registry.slot("m")
        registry.unavailable(slot)
        await registry.text_runner(slot, called="m")

    def drive(make: Callable[[], Any]) -> Callable[[], None]:
        def step() -> None:
            with contextlib.suppress(StopIteration):
                make().send(None)

        return step

    return per_call_us(drive(old)), per_call_us(drive(new))


def payload() -> dict[str, Any]:
    """A sealed chat call's payload, as `AuditService.seal` builds it."""
    pending = PendingRecord(
        record_id=uuid7_text(),
        user_id=uuid7_text(),
        run_id="run_" + "0" * 24,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        route_id="default-route",
        provider="upstream",
        environment="production",
        prompt_version_id="default",
        model_id="remote-bench",
        gpu_id=None,
        input_hash=sha256_ref("Say hello"),
        started_at=utcnow_text(),
        key_id="k" * 16,
        public_key_hex="0" * 64,
        signer=lambda _document: "",
    )
    energy = {
        "energy_uwh": 3996,
        "carbon_ug_co2e": 1546,
        "carbon_offset_ug_co2e": 0,
        "energy_source": "Unspecified grid mix (US average assumed)",
        "energy_method": "estimate:gpu-llm",
    }
    usage = AuditUsage(input_tokens=12, output_tokens=20)
    return pending.payload(
        output_hash=sha256_ref("hello " * 20), usage=usage, energy=energy, finished_at=utcnow_text()
    )


def datetimes() -> tuple[float, float]:
    process = TS.dialect_impl(statements._SQLITE).bind_processor(statements._SQLITE)
    closed_at, created_at = statements._fast_datetime(process), statements._fast_datetime(process)
    clock = [datetime.now(UTC)]

    def per_column() -> None:  # the old caches: one per column, so each formats the new instant
        now = clock[0] = clock[0].replace(microsecond=(clock[0].microsecond + 1) % 1_000_000)
        statements._last_formatted[0] = (object(), "")
        closed_at(now)
        statements._last_formatted[0] = (object(), "")
        created_at(now)

    def shared() -> None:
        now = clock[0] = clock[0].replace(microsecond=(clock[0].microsecond + 1) % 1_000_000)
        statements._last_formatted[0] = (object(), "")
        closed_at(now)
        created_at(now)

    return per_call_us(per_column), per_call_us(shared)


def metrics() -> tuple[float, float]:
    registry = CollectorRegistry()
    labels = ["model", "endpoint"]
    old_histograms = [
        Histogram(name, name, labels, buckets=buckets, registry=registry).labels("m", "chat.completions")
        for name, buckets in (
            ("q", _LATENCY_BUCKETS),
            ("t", _LATENCY_BUCKETS),
            ("i", _ITL_BUCKETS),
            ("s", _TPS_BUCKETS),
        )
    ]
    counter = Counter("r", "r", [*labels, "status"], registry=registry).labels(
        "m", "chat.completions", "succeeded"
    )
    values = (0.0001, 0.02, 0.0052, 190.0)

    def old() -> None:
        counter.inc()
        for histogram, value in zip(old_histograms, values, strict=True):
            histogram.observe(value)

    ours = InferenceMetrics()

    def new() -> None:
        ours.count_request("m", "chat.completions", "succeeded")
        series = ours.series("m", "chat.completions")
        series.queue_seconds.observe(values[0])
        series.ttft_seconds.observe(values[1])
        series.inter_token_seconds.observe(values[2])
        series.tokens_per_second.observe(values[3])

    return per_call_us(old), per_call_us(new)


def batch_of_two() -> tuple[float, float]:
    folder = tempfile.mkdtemp(prefix="micro-core9-")
    conn = sqlite3.connect(Path(folder) / "b.db", isolation_level=None, check_same_thread=False)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(pragma)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    keys = iter(range(10**9))

    def operation(cur: sqlite3.Cursor) -> None:
        cur.execute("INSERT INTO t (k, v) VALUES (?, 'x')", (next(keys),))

    def mains() -> None:  # group_commit._run at main, for two operations
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.cursor()
        for op in (operation, operation):
            cur.execute("SAVEPOINT op")
            op(cur)
            cur.execute("RELEASE op")
        cur.execute("COMMIT")
        cur.close()

    def ours() -> None:
        conn.execute("BEGIN IMMEDIATE")
        GroupCommitWriter._run(conn, [operation, operation])

    try:
        return per_call_us(mains, loops=2_000), per_call_us(ours, loops=2_000)
    finally:
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    document = payload()
    figures = {
        "lookups": lookups(),
        "canonical": (
            per_call_us(lambda: canonical(document)),
            per_call_us(lambda: canonical_of_our_keys(document)),
        ),
        "times": (
            per_call_us(lambda: (isoformat(utcnow()), isoformat(utcnow()))),
            per_call_us(lambda: (utcnow_text(), utcnow_text())),
        ),
        "datetimes": datetimes(),
        "metrics": metrics(),
        "frontier": (
            per_call_us(lambda: mt.subtree_keys(0, 1_048_575)),
            per_call_us(lambda: mt.frontier_keys(1_048_575)),
        ),
        "batch_of_two": batch_of_two(),
    }
    print(json.dumps({name: {"old_us": old, "new_us": new} for name, (old, new) in figures.items()}))


if __name__ == "__main__":
    main()
