"""Same-run A/B of one paid call's store writes at c=1: a baseline checkout against this one.

What a chat call asks of the store, without the HTTP front or the upstream: the reservation (the
call waits for its commit before the engine runs), then the settlement and the signed receipt's
log append together (the response waits for both), then the call's trace (write-behind), one call
after another as one client would send them, with a short pause between calls (the upstream's
time: the writer idles as it does at c=1). Each side runs in its own process (`PYTHONPATH` on its
tree) on a fresh SQLite data dir, pinned to one core; rounds alternate A/B. Per round: the
process's CPU per call (every thread: getrusage) and the wall time from the reserve to the
settlement's return, less the pause (what the call's latency pays for its writes: the two awaits
timed on their own), and the context switches per call (every thread), medians compared.

Request ids are random, as the HTTP front makes them. `--prefill N` first writes N past calls'
reservations and usage logs (plain INSERTs, the same on both sides): a store that has served
calls, whose indexes no longer fit in one page (an index keyed on a random value then dirties a
leaf page of its own per call).

    python bench/ab_store_c1.py --base /tmp/base-checkout [--rounds 5] [--calls 300] [--prefill 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

PAUSE_S = 0.002  # between a call's reservation and its settlement, and between calls


def _prefill(db_file: Path, user_id: str, key_id: str, rows: int) -> None:
    """`rows` settled calls of the last days: their reservations and usage logs."""
    if rows <= 0:
        return
    start = datetime.now(UTC) - timedelta(days=3)
    reservations, logs = [], []
    for n in range(rows):
        at = (start + timedelta(milliseconds=10 * n)).strftime("%Y-%m-%d %H:%M:%S.%f")
        reservation = str(uuid.uuid4())
        reservations.append((reservation, user_id, key_id, at[:7], 157, "settled", at, at, at))
        request = "req_" + uuid.uuid4().hex
        logs.append((str(uuid.uuid4()), request, reservation, user_id, key_id, at))
    conn = sqlite3.connect(db_file)
    with conn:
        conn.executemany(
            "INSERT INTO reservations (id, user_id, key_id, month, amount_units, status, created_at, "
            "renewed_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            reservations,
        )
        conn.executemany(
            "INSERT INTO usage_logs (id, request_id, reservation_id, user_id, key_id, model, endpoint, "
            "input_tokens, output_tokens, units, unit, cost_units, latency_ms, status, created_at) "
            "VALUES (?, ?, ?, ?, ?, 'm', 'chat', 12, 20, 32, 'tokens', 116, 100, 'succeeded', ?)",
            logs,
        )
    conn.close()


async def _one_side(calls: int, prefill: int) -> dict[str, float]:
    from batchin.app import build_services
    from batchin.config import Settings
    from batchin.core.audit.service import AuditUsage
    from batchin.core.billing.ledger_records import UsageRecord
    from batchin.core.context import CallContext, Principal
    from batchin.protocol.accounts import KeyCreateRequest

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="ab-store-c1-")))
    services = await build_services(settings)
    try:
        user = await services.accounts.create_user("ab@example.com", "ab", 10**8)
        key = await services.accounts.create_key(user.id, KeyCreateRequest())
        principal = Principal(user.id, key.id, key.key_prefix, key.rate_limit_rpm, None)
        _prefill(settings.data_dir / "batchin.db", user.id, key.id, prefill)

        async def call(n: int) -> float:
            request_id = "req_" + uuid.uuid4().hex  # random, as the HTTP front makes them
            ctx = CallContext(principal=principal, request_id=request_id)
            start = time.perf_counter()
            reservation = await services.ledger.reserve(principal, 157)
            waited = time.perf_counter() - start
            await asyncio.sleep(PAUSE_S)
            start = time.perf_counter()
            pending = services.audit.begin_call(ctx, model_id="m", input_text=b"benchmark prompt")
            usage = UsageRecord(request_id, "m", "chat", 116, 100, input_tokens=12, output_tokens=20)
            settled, _ = await asyncio.gather(
                services.ledger.settle(reservation, usage),
                services.audit.finish(pending, output_text="x" * 80, usage=AuditUsage(12, 20)),
                return_exceptions=False,
            )
            waited += time.perf_counter() - start
            services.traces.record_generation(
                ctx, endpoint="chat", model_id="m", timings=_Timings(), status="succeeded", cost_units=settled
            )
            await asyncio.sleep(PAUSE_S)
            return waited

        for n in range(50):  # warm-up: statements compiled, caches filled
            await call(-n - 1)
        await services.traces.flush()
        before = resource.getrusage(resource.RUSAGE_SELF)
        waits = [await call(n) for n in range(calls)]
        await services.traces.flush()
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        await services.close()
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    waits.sort()
    return {
        "cpu_ms": cpu * 1000 / calls,
        "wait_p50_ms": waits[len(waits) // 2] * 1000,
        # Context switches of the process's threads per call: voluntary (a thread went to sleep:
        # the loop in epoll, the writer on its queue) and involuntary (a woken thread took the
        # core: the writer thread woken by the loop's queue put), counts the load does not blur.
        "sleeps_per_call": (after.ru_nvcsw - before.ru_nvcsw) / calls,
        "preempted_per_call": (after.ru_nivcsw - before.ru_nivcsw) / calls,
    }


class _Timings:
    """The trace builder's CallTimings of a call that just ended."""

    def __init__(self) -> None:
        now = time.monotonic()
        self.received_at = now - 0.003
        self.admitted_at = now - 0.002
        self.first_token_at = now - 0.001
        self.finished_at = now
        self.queued_seconds = 0.0
        self.ttft_seconds = 0.002


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--side":
        print(json.dumps(asyncio.run(_one_side(int(sys.argv[2]), int(sys.argv[3])))))
        return
    # The driver only: a side must import `batchin` from its own PYTHONPATH, not from this tree.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.harness import ROOT, ab_figure, pinned

    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--prefill", type=int, default=0, help="past calls' rows written first")
    args = parser.parse_args()
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    rounds: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    for round_no in range(args.rounds):
        for side in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
            env = {**os.environ, "PYTHONPATH": sides[side]}
            command = [*pinned(0), sys.executable, __file__, "--side", str(args.calls), str(args.prefill)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            rounds[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    result: dict[str, object] = {"bench": "store_c1_ab", "base": sides["A"], "rounds": args.rounds}
    result["prefill"] = args.prefill
    for figure in ("cpu_ms", "wait_p50_ms", "sleeps_per_call", "preempted_per_call"):
        a = [r[figure] for r in rounds["A"]]
        b = [r[figure] for r in rounds["B"]]
        result[figure] = ab_figure(a, b, unit="")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
