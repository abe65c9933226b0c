"""Same-run A/B of the SQL a paid call's ledger writes cost, main's indexes against this tree's.

Two stores made by this tree's migrations, one taken back to 0018 (main's indexes: the usage logs'
request id index, every reservation in the status index), the other at head (no request id index,
only held reservations indexed), both holding the same `--prefill` past calls. One thread runs the
ledger's own scripts (LedgerWrites: the reservation, then the settlement), one transaction each, as
the group-commit writer does for a lone call, with random request ids as the HTTP front makes them.
Rounds alternate A/B. Per round: the thread's CPU per call (SQLite's work, plus the same Python
on both sides) and the WAL frames per call (pages the two commits write: no load blurs it).

    python bench/ab_call_indexes.py [--rounds 7] [--calls 1000] [--prefill 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ab_store_c1 import _prefill
from bench.harness import ab_figure

BASE_REVISION = "0018_receipts_by_user"  # main's indexes


async def _make_store(data_dir: Path) -> tuple[str, str]:
    from batchin.app import build_services
    from batchin.config import Settings
    from batchin.protocol.accounts import KeyCreateRequest

    services = await build_services(Settings(data_dir=data_dir))
    try:
        user = await services.accounts.create_user("ab@example.com", "ab", 10**12)
        key = await services.accounts.create_key(user.id, KeyCreateRequest())
    finally:
        await services.close()
    return user.id, key.id


def _downgrade(db_file: Path, revision: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    from batchin.store.migrate import alembic_config

    engine = create_engine(f"sqlite:///{db_file}")
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), revision)
    engine.dispose()


def _round(db_file: Path, user_id: str, key_id: str, calls: int) -> dict[str, float]:
    from batchin.core.billing.ledger_records import Reservation, UsageRecord
    from batchin.core.billing.ledger_writes import LedgerWrites
    from batchin.core.clock import month_of, utcnow
    from batchin.core.random_ids import uuid7_text
    from batchin.store.database import SQLITE_PRAGMAS
    from batchin.store.statements import run_script

    writes = LedgerWrites("sqlite")
    conn = sqlite3.connect(db_file, isolation_level=None)
    for pragma in (*SQLITE_PRAGMAS, "PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=0"):
        conn.execute(pragma)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    cur = conn.cursor()

    def transaction(script: object) -> None:
        cur.execute("BEGIN IMMEDIATE")
        run_script(cur, script)  # type: ignore[arg-type]
        cur.execute("COMMIT")

    def call() -> None:
        now = utcnow()
        reservation = Reservation(uuid7_text(), user_id, key_id, month_of(now), 157)
        transaction(writes.reserve(reservation, None, now))
        request = "req_" + uuid.uuid4().hex
        usage = UsageRecord(request, "m", "chat", 116, 100, input_tokens=12, output_tokens=20)
        transaction(writes.settle(reservation, usage, 116, utcnow()))

    for _ in range(50):  # warm: statements compiled, pages cached
        call()
    wal = Path(f"{db_file}-wal")
    wal_before = wal.stat().st_size
    cpu = time.thread_time()
    for _ in range(calls):
        call()
    cpu = time.thread_time() - cpu
    frames = (wal.stat().st_size - wal_before) / (page + 24)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"sql_cpu_us": cpu * 1e6 / calls, "wal_frames_per_call": frames / calls}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--prefill", type=int, default=50000)
    args = parser.parse_args()
    stores: dict[str, tuple[Path, str, str]] = {}
    for side in ("A", "B"):
        data_dir = Path(tempfile.mkdtemp(prefix=f"ab-call-indexes-{side}-"))
        user_id, key_id = asyncio.run(_make_store(data_dir))
        db_file = data_dir / "batchin.db"
        if side == "A":
            _downgrade(db_file, BASE_REVISION)
        _prefill(db_file, user_id, key_id, args.prefill)
        stores[side] = (db_file, user_id, key_id)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    rounds: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for round_no in range(args.rounds):
        for side in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
            rounds[side].append(_round(*stores[side], args.calls))
    result: dict[str, object] = {
        "bench": "call_indexes_ab",
        "A": f"indexes of {BASE_REVISION} (main)",
        "B": "head",
        "rounds": args.rounds,
        "calls": args.calls,
        "prefill": args.prefill,
    }
    for figure in ("sql_cpu_us", "wal_frames_per_call"):
        result[figure] = ab_figure([r[figure] for r in rounds["A"]], [r[figure] for r in rounds["B"]])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
