"""Soak: mixed traffic at saturation against one real server for a long while (default 10 minutes).

Starts `batchin serve` (bench/harness.py: the embedded models, one user with a high-RPM key) and
keeps it saturated from several clients at once: chat and streaming chat through the official
openai SDK, embeddings, file batches (upload, create, poll until done), and MCP tool calls (`chat`,
`embed`) through the official `mcp` client over Streamable HTTP. Every client starts its next call
as soon as the last one ends, so the engines' queues stay full (a 429 for a full queue is expected
and counted; a 5xx is a failure).

Measured:
- RSS of the server and all its descendants (engine workers) every `--sample-seconds`: the RSS at
  the end of warm-up, at the end, and the least-squares slope after warm-up (MiB per minute);
- money: once the traffic has stopped and every call has settled, the ledger's debits (the user's
  starting balance minus its balance) against the sum of the usage logs' costs, the usage rollups
  and the key's monthly spend, all in exact micro-cents from the store; reservations still held;
- responses by kind and status, 5xx and transport errors (must both be 0).

Prints one JSON line. `--seconds 60` for a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Server, batchin_server

CHAT_MODEL = "smollm2-135m-instruct"
EMBEDDING_MODEL = "multilingual-e5-small"
CREDIT_CENTS = 10**8
UNITS_PER_CENT = 1_000_000
QUESTIONS = ("Describe the sea.", "Name three trees.", "What do cats like?", "Why is the sky blue?")


class Tally:
    """Outcomes by (kind, status); status is the HTTP status, or 'transport' when none came back."""

    def __init__(self) -> None:
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.examples: dict[tuple[str, str], str] = {}
        self.seconds: dict[str, list[float]] = {}
        self.batch_tasks: Counter[str] = Counter()  # completed / failed / total, over every batch

    def record(self, kind: str, status: int | str, detail: str = "") -> None:
        key = (kind, str(status))
        self.outcomes[key] += 1
        if detail and key not in self.examples:
            self.examples[key] = detail[:300]

    def server_errors(self) -> int:
        return sum(n for (_, status), n in self.outcomes.items() if status.isdigit() and int(status) >= 500)

    def transport_errors(self) -> int:
        return sum(n for (_, status), n in self.outcomes.items() if status == "transport")


async def guarded(tally: Tally, kind: str, call: Callable[[], Awaitable[None]]) -> None:
    """One call; its outcome and duration recorded whatever happens."""
    started = time.monotonic()
    try:
        await call()
        tally.record(kind, 200)
    except openai.APIStatusError as exc:
        tally.record(kind, exc.status_code, str(exc.body))
    except (openai.APIConnectionError, httpx2.TransportError) as exc:
        tally.record(kind, "transport", repr(exc))
    except ToolError as exc:
        tally.record(kind, exc.status, exc.detail)
    finally:
        tally.seconds.setdefault(kind, []).append(time.monotonic() - started)


class ToolError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def chat_body(i: int) -> dict[str, Any]:
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        "max_tokens": 16,
    }


async def chat_client(sdk: openai.AsyncOpenAI, tally: Tally, until: float, *, stream: bool) -> None:
    i = 0
    while time.monotonic() < until:
        i += 1

        async def call(body: dict[str, Any] = chat_body(i)) -> None:
            if not stream:
                await sdk.chat.completions.create(**body)
                return
            chunks = await sdk.chat.completions.create(
                **body, stream=True, stream_options={"include_usage": True}
            )
            async for _ in chunks:
                pass

        await guarded(tally, "chat_stream" if stream else "chat", call)


async def embeddings_client(sdk: openai.AsyncOpenAI, tally: Tally, until: float) -> None:
    while time.monotonic() < until:

        async def call() -> None:
            await sdk.embeddings.create(model=EMBEDDING_MODEL, input=list(QUESTIONS))

        await guarded(tally, "embeddings", call)


async def batch_client(sdk: openai.AsyncOpenAI, tally: Tally, until: float, *, tasks: int = 6) -> None:
    """Submits a file batch, follows it to its end, and again: the batch worker never idles."""
    lines = [
        json.dumps(
            {"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions", "body": chat_body(i)}
        )
        for i in range(tasks)
    ]
    data = ("\n".join(lines) + "\n").encode()
    while time.monotonic() < until:

        async def call() -> None:
            uploaded = await sdk.files.create(file=("soak.jsonl", data), purpose="batch")
            batch = await sdk.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            while batch.status not in ("completed", "failed", "expired", "cancelled"):
                if time.monotonic() > until and batch.status not in ("cancelling", "cancelled"):
                    batch = await sdk.batches.cancel(batch.id)  # time is up: what ran is billed
                    tally.record("batch_cancelled_at_end", 200)
                await asyncio.sleep(0.5)
                batch = await sdk.batches.retrieve(batch.id)
            counts = batch.request_counts
            if counts is not None:
                tally.batch_tasks.update(
                    {"completed": counts.completed, "failed": counts.failed, "total": counts.total}
                )
            if batch.status not in ("completed", "cancelled"):
                raise ToolError(599, f"batch ended {batch.status}")  # counted as a failure

        await guarded(tally, "batch", call)


async def mcp_client(server: Server, tally: Tally, until: float) -> None:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=300) as http,
        streamable_http_client(f"{server.base}/v1/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        i = 0
        while time.monotonic() < until:
            i += 1
            name, arguments = (
                ("chat", chat_body(i))
                if i % 2
                else ("embed", {"model": EMBEDDING_MODEL, "input": QUESTIONS[0]})
            )

            async def call(name: str = name, arguments: dict[str, Any] = arguments) -> None:
                result = await session.call_tool(name, arguments)
                if result.is_error:
                    text = getattr(result.content[0], "text", "{}")
                    error = json.loads(text).get("error", {})
                    raise ToolError(int(error.get("status", 500)), text)

            await guarded(tally, f"mcp_{name}", call)


# -- memory ---------------------------------------------------------------------------------------


def tree_rss_bytes(root: int) -> int:
    """RSS of `root` and every descendant (engine workers, their helpers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, []))
        total += process_rss_bytes(pid)
    return total


def process_rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


async def sample_rss(
    root: int, every: float, until: float, samples: list[tuple[float, int]], api: list[tuple[float, int]]
) -> None:
    """The whole tree's RSS into `samples`, the API process's own into `api`."""
    start = time.monotonic()
    while time.monotonic() < until:
        now = time.monotonic() - start
        samples.append((now, tree_rss_bytes(root)))
        api.append((now, process_rss_bytes(root)))
        await asyncio.sleep(every)


def slope_mib_per_minute(samples: list[tuple[float, int]]) -> float:
    if len(samples) < 3:
        return float("nan")
    seconds = [t for t, _ in samples]
    mib = [rss / 2**20 for _, rss in samples]
    return statistics.linear_regression(seconds, mib).slope * 60


# -- money ----------------------------------------------------------------------------------------


def money(data_dir: str) -> dict[str, int]:
    """Exact figures from the store (micro-cents), read once everything has settled."""
    with sqlite3.connect(f"file:{Path(data_dir) / 'batchin.db'}?mode=ro", uri=True) as db:
        (balance,) = db.execute("SELECT balance_units FROM users").fetchone()
        return {
            "ledger_debits": CREDIT_CENTS * UNITS_PER_CENT - balance,
            "usage_logs": db.execute("SELECT COALESCE(SUM(cost_units), 0) FROM usage_logs").fetchone()[0],
            "usage_rollups": db.execute("SELECT COALESCE(SUM(cost_units), 0) FROM usage_rollups").fetchone()[
                0
            ],
            "key_spend": db.execute("SELECT COALESCE(SUM(spent_units), 0) FROM key_spend").fetchone()[0],
            "usage_log_rows": db.execute("SELECT COUNT(*) FROM usage_logs").fetchone()[0],
            "held_reservations": db.execute(
                "SELECT COUNT(*) FROM reservations WHERE status = 'held'"
            ).fetchone()[0],
        }


async def settled(data_dir: str, timeout: float = 120.0) -> dict[str, int]:
    """The money figures once no reservation is held (calls that outlived the traffic settle)."""
    deadline = time.monotonic() + timeout
    while True:
        figures = money(data_dir)
        if figures["held_reservations"] == 0 or time.monotonic() > deadline:
            return figures
        await asyncio.sleep(1)


# -- the run --------------------------------------------------------------------------------------


def budgeted_key(server: Server) -> str:
    """The key the traffic runs with: a monthly budget (never reached) makes the store keep its
    spend (key_spend), a third account of the same money."""
    response = httpx2.post(
        f"{server.base}/v1/keys",
        json={"name": "soak", "rate_limit_rpm": 1_000_000, "monthly_budget_cents": CREDIT_CENTS},
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=30,
    )
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


async def soak(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    server.api_key = budgeted_key(server)
    sdk = openai.AsyncOpenAI(base_url=f"{server.base}/v1", api_key=server.api_key, max_retries=0, timeout=300)
    started = time.monotonic()
    until = started + args.seconds
    samples: list[tuple[float, int]] = []
    api_samples: list[tuple[float, int]] = []
    sampler = asyncio.create_task(
        sample_rss(server.process.pid, args.sample_seconds, until, samples, api_samples)
    )
    clients = [
        *(chat_client(sdk, tally, until, stream=False) for _ in range(args.chat)),
        *(chat_client(sdk, tally, until, stream=True) for _ in range(args.stream)),
        *(embeddings_client(sdk, tally, until) for _ in range(args.embeddings)),
        *(batch_client(sdk, tally, until) for _ in range(args.batches)),
        *(mcp_client(server, tally, until) for _ in range(args.mcp)),
    ]
    await asyncio.gather(*clients)  # each finishes the call it has started when time is up
    print(f"traffic over after {time.monotonic() - started:.0f}s", file=sys.stderr)
    traffic_seconds = time.monotonic() - started
    await sampler
    await asyncio.sleep(1)  # the server's last write-behind flushes
    end_rss = tree_rss_bytes(server.process.pid)
    ledger = await settled(server.data_dir)
    await sdk.close()
    warm = [(t, rss) for t, rss in samples if t >= args.warmup_seconds] or samples
    api_warm = [(t, rss) for t, rss in api_samples if t >= args.warmup_seconds] or api_samples
    return {
        "bench": "soak",
        "seconds": round(traffic_seconds, 1),
        "requests": sum(tally.outcomes.values()),
        "by_kind_status": {f"{k} {s}": n for (k, s), n in sorted(tally.outcomes.items())},
        "batch_tasks": dict(tally.batch_tasks),
        "server_errors_5xx": tally.server_errors(),
        "transport_errors": tally.transport_errors(),
        "rss_warm_mib": round(warm[0][1] / 2**20, 1),
        "rss_end_mib": round(end_rss / 2**20, 1),
        "rss_max_mib": round(max(rss for _, rss in samples) / 2**20, 1),
        "rss_slope_mib_per_min": round(slope_mib_per_minute(warm), 3),
        "rss_samples": len(samples),
        "rss_api_process_warm_mib": round(api_warm[0][1] / 2**20, 1),
        "rss_api_process_end_mib": round(process_rss_bytes(server.process.pid) / 2**20, 1),
        "rss_api_process_slope_mib_per_min": round(slope_mib_per_minute(api_warm), 3),
        **{
            f"micro_cents_{name}": value
            for name, value in ledger.items()
            if name.endswith(("debits", "logs", "rollups", "spend"))
        },
        "usage_log_rows": ledger["usage_log_rows"],
        "held_reservations": ledger["held_reservations"],
        "ledger_equals_usage": ledger["ledger_debits"]
        == ledger["usage_logs"]
        == ledger["usage_rollups"]
        == ledger["key_spend"],
        "seconds_p50_max": {
            kind: [round(statistics.median(times), 2), round(max(times), 2)]
            for kind, times in sorted(tally.seconds.items())
        },
        "error_examples": {f"{k} {s}": d for (k, s), d in tally.examples.items() if s != "429"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long the traffic runs")
    parser.add_argument("--warmup-seconds", type=float, default=None, help="default: min(60, seconds/5)")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--chat", type=int, default=3, help="non-streaming chat clients")
    parser.add_argument("--stream", type=int, default=3, help="streaming chat clients")
    parser.add_argument("--embeddings", type=int, default=2)
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--mcp", type=int, default=2, help="MCP sessions calling chat and embed")
    args = parser.parse_args()
    if args.warmup_seconds is None:
        args.warmup_seconds = min(60.0, args.seconds / 5)
    with batchin_server(core=-1, credit_cents=CREDIT_CENTS) as server:
        result = asyncio.run(soak(server, args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
