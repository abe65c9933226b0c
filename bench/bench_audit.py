"""Audit costs: signing + log append CPU per call, signatures per second, evidence verification time.

Targets (issue 7): ≤ 0.1 ms CPU per call for signing and log append, ≥ 10,000 signatures/s,
≤ 1 ms to verify an evidence pack. The baseline, measured in the same run, is what a naive
design costs: one write transaction per record instead of group commit. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from batchin.config import Settings
from batchin.core.audit.canonical import canonical
from batchin.core.audit.service import AuditService
from batchin.core.audit.verify import verify_evidence
from batchin.core.clock import utcnow
from batchin.core.context import CallContext, Principal
from batchin.store.database import Database
from batchin.store.migrate import upgrade
from batchin.store.tables import vaas_keys

CALLS = 5000
CONCURRENCY = 200


async def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="batchin-bench-audit-"))
    settings = Settings(data_dir=data_dir)
    database = Database(settings.resolved_database_url)
    await upgrade(database)
    audit = await AuditService.open(settings, database, None)
    ctx = CallContext(principal=Principal("bench-user", "k", "p", 10**6, None), request_id="r")

    async def burst(n: int) -> None:
        for start in range(0, n, CONCURRENCY):
            await asyncio.gather(
                *(
                    audit.record_call(ctx, model_id="m", input_text=f"prompt {i}", output_text="answer " * 20)
                    for i in range(start, min(n, start + CONCURRENCY))
                )
            )

    await burst(500)  # warm-up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await burst(CALLS)
    cpu_per_call_ms = (time.process_time() - cpu0) / CALLS * 1000
    wall = time.perf_counter() - wall0

    # Baseline: one write transaction per record (no group commit), same row shape.
    cpu0 = time.process_time()
    for i in range(500):
        async with database.write() as conn:
            await conn.execute(
                insert(vaas_keys).values(key_id=f"b{i}", public_key="0" * 64, created_at=utcnow())
            )
    baseline_cpu_ms = (time.process_time() - cpu0) / 500 * 1000

    key = audit._key
    message = canonical((await audit.record_call(ctx, model_id="m", input_text="x", output_text="y")).payload)
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0:
        for _ in range(200):
            key.sign(message)
        count += 200
    signatures_per_second = count / (time.perf_counter() - t0)

    receipt = await audit.record_call(ctx, model_id="m", input_text="q", output_text="a")
    pack = json.loads((await audit.evidence(receipt.record_id)).model_dump_json())
    assert verify_evidence(pack)["valid"]
    rounds = 500
    t0 = time.perf_counter()
    for _ in range(rounds):
        verify_evidence(pack)
    verify_ms = (time.perf_counter() - t0) / rounds * 1000

    await audit.close()
    await database.dispose()
    print(
        json.dumps(
            {
                "bench": "audit",
                "calls": CALLS,
                "concurrency": CONCURRENCY,
                "sign_and_append_cpu_ms_per_call": round(cpu_per_call_ms, 4),
                "records_per_second": round(CALLS / wall),
                "baseline_one_txn_per_record_cpu_ms": round(baseline_cpu_ms, 4),
                "cpu_ratio_vs_baseline": round(cpu_per_call_ms / baseline_cpu_ms, 3),
                "signatures_per_second": round(signatures_per_second),
                "evidence_verify_ms": round(verify_ms, 4),
                "targets": {"cpu_ms_per_call": 0.1, "signatures_per_second": 10000, "verify_ms": 1.0},
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
