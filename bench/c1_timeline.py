"""Where one chat call's time goes at c=1: a timeline of the call's steps and thread hand-offs.

Starts `batchin serve` (pinned to core 0, a remote model on the fake upstream of bench_gateway)
under this file's `--serve` mode, which wraps the steps of the call path in time stamps (monotonic
ns, the thread's CPU clock, which thread) without changing what they do; sends `--calls` chat
calls one after another; then prints, per step, the median offset from the request's first byte
(parsed by uvicorn) and the thread CPU the step took, plus per call: group-commit transactions,
writer-thread wake-ups (queue puts), loop wake-ups from another thread (`_write_to_self`) and the
writer thread's CPU.

    python bench/c1_timeline.py [--calls 200] > bench/profiles/c1_timeline_NAME.txt
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (module, attribute path, label): coroutine functions get "label>" on entry and "label<" on exit.
_ASYNC_STEPS = [
    ("batchin.core.accounts.auth", "AuthService.admit", "auth+rpm(key)"),
    ("batchin.core.serving.flow", "FlowPolicy.admit", "flow.admit"),
    ("batchin.core.billing.ledger", "LedgerService.reserve", "ledger.reserve"),
    ("batchin.core.billing.ledger", "LedgerService.settle", "ledger.settle"),
    ("batchin.core.audit.service", "AuditService.finish", "audit.finish(sign+append)"),
    ("batchin.core.audit.log", "TransparencyLog.append", "log.append"),
    ("batchin.core.traces.store", "TraceStore.write", "trace rows"),
    ("batchin.core.serving.text_producer", "TextProducer._pump", "upstream (runner)"),
    # The same step in base trees from before the producer had its own module:
    ("batchin.core.serving.inference", "InferenceService._pump", "upstream (runner)"),
]
# Plain functions: "label" once, when called.
_SYNC_STEPS = [
    ("batchin.core.traces.service", "TraceService.record_generation", "trace.record_generation"),
    ("batchin.store.group_commit", "GroupCommitWriter.submit", "writer.submit"),
    ("batchin.store.group_commit", "GroupCommitWriter._on_thread", "writer.queue_put(thread wake)"),
    ("batchin.store.group_commit", "_settle", "loop: writer outcome delivered"),
    ("asyncio.selector_events", "BaseSelectorEventLoop._write_to_self", "self-pipe write"),
]
# Run on the writer thread: "label>" / "label<" with that thread's CPU clock.
_THREAD_STEPS = [("batchin.store.group_commit", "GroupCommitWriter._apply", "writer txn")]

_EVENTS: list[tuple[int, int, str, str]] = []  # (monotonic ns, thread CPU ns, thread name, label)


def _stamp(label: str) -> None:
    _EVENTS.append((time.monotonic_ns(), time.thread_time_ns(), threading.current_thread().name, label))


def _owner(module: str, path: str) -> tuple[Any, str]:
    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def _wrap_async(function: Callable[..., Any], label: str) -> Callable[..., Any]:
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        _stamp(label + ">")
        try:
            return await function(*args, **kwargs)
        finally:
            _stamp(label + "<")

    return wrapped


def _wrap_sync(function: Callable[..., Any], label: str, *, around: bool) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _stamp(label + (">" if around else ""))
        try:
            return function(*args, **kwargs)
        finally:
            if around:
                _stamp(label + "<")

    return wrapped


def _instrument() -> None:
    for module, path, label in _ASYNC_STEPS:
        try:
            owner, name = _owner(module, path)
            getattr(owner, name)
        except (ImportError, AttributeError):  # a step this tree has under another name
            continue
        setattr(owner, name, _wrap_async(getattr(owner, name), label))
    for steps, around in ((_SYNC_STEPS, False), (_THREAD_STEPS, True)):
        for module, path, label in steps:
            owner, name = _owner(module, path)
            setattr(owner, name, _wrap_sync(getattr(owner, name), label, around=around))
    from batchin.store.group_commit import GroupCommitWriter

    connect = GroupCommitWriter._connection

    def traced_connection(self: Any) -> Any:  # every statement the writer runs, as it starts
        conn = connect(self)
        conn.set_trace_callback(lambda sql: _stamp("sql: " + " ".join(sql.split())[:90]))
        return conn

    GroupCommitWriter._connection = traced_connection  # type: ignore[method-assign]
    import selectors

    select = selectors.EpollSelector.select

    def timed_select(self: Any, timeout: float | None = None) -> Any:  # the loop idle, and why
        start = time.monotonic_ns()
        ready = select(self, timeout)
        if time.monotonic_ns() - start > 100_000:
            waited = "none" if timeout is None else f"{timeout * 1000:.3f} ms"
            _stamp(f"loop idle {(time.monotonic_ns() - start) / 1e6:.3f} ms (timeout {waited})")
        return ready

    selectors.EpollSelector.select = timed_select  # type: ignore[method-assign]
    from uvicorn.protocols.http import httptools_impl

    protocol = httptools_impl.HttpToolsProtocol
    protocol.on_message_begin = _wrap_sync(protocol.on_message_begin, "ACCEPT", around=False)  # type: ignore[method-assign]
    cycle = httptools_impl.RequestResponseCycle
    send = cycle.send

    async def traced_send(self: Any, message: Any) -> None:
        await send(self, message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            _stamp("RESPONSE SENT")

    cycle.send = traced_send  # type: ignore[method-assign]


def _serve(out: str, argv: list[str]) -> None:
    _instrument()
    signal.signal(signal.SIGUSR1, lambda *_: _EVENTS.clear())
    signal.signal(signal.SIGUSR2, lambda *_: Path(out).write_text(json.dumps(_EVENTS)))
    from batchin.cli import main as batchin_main

    sys.argv = ["batchin", *argv]
    batchin_main()


def _report(events: list[list[Any]]) -> str:
    calls: list[list[list[Any]]] = []
    for event in events:
        if event[3] == "ACCEPT":
            calls.append([])
        if calls:
            calls[-1].append(event)
    calls = calls[5:]  # warm-up
    offsets: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    for call in calls:
        t0, seen, opened = call[0][0], {}, {}
        for wall, thread_cpu, thread, label in call:
            key = f"{label} [{'loop' if thread == 'MainThread' else thread}]"
            seen[key] = seen.get(key, 0) + 1
            nth = f"{key} #{seen[key]}"
            offsets.setdefault(nth, []).append((wall - t0) / 1e6)
            if label.endswith(">"):
                opened[(label[:-1], thread)] = thread_cpu
            elif label.endswith("<") and (label[:-1], thread) in opened:
                step_cpu = (thread_cpu - opened.pop((label[:-1], thread))) / 1e6
                cpu.setdefault(f"{label[:-1]} [{thread}]", []).append(step_cpu)
        for key, n in seen.items():
            counts.setdefault(key, []).append(n)
    lines = [f"{len(calls)} calls at c=1", "", "key intervals (ms, median over calls; wall clock)"]
    for name, (first, last) in _INTERVALS.items():
        spans = [
            b - a
            for call in calls
            if (a := _at(call, first)) is not None and (b := _at(call, last)) is not None
        ]
        if spans:
            lines.append(f"{statistics.median(spans) / 1e6:8.3f}  {name}")
    own = [
        (_at(c, "RESPONSE SENT") or 0)
        - c[0][0]
        - ((_at(c, "upstream (runner)<") or 0) - (_at(c, "upstream (runner)>") or 0))
        for c in calls
    ]
    lines += [
        f"{statistics.median(own) / 1e6:8.3f}  gateway's own time (request to response less the upstream)",
        "",
    ]
    for call in calls[10:13]:  # three whole calls as recorded
        lines.append("one call: ms  [thread CPU ms]  event")
        for wall, thread_cpu, thread, label in call:
            at = (wall - call[0][0]) / 1e6
            lines.append(f"  {at:9.3f}  [{thread_cpu / 1e6:10.3f}]  {label} [{thread}]")
        lines.append("")
    order = sorted(offsets, key=lambda k: statistics.median(offsets[k]))
    lines += ["", "each step, ms from the request's first parsed byte (median over the calls that had it)"]
    for key in order:
        if len(offsets[key]) >= len(calls) // 2 and not key.startswith("sql:"):
            lines.append(f"{statistics.median(offsets[key]):9.3f}  {key}  (in {len(offsets[key])} calls)")
    lines += ["", "thread CPU per step (ms, median; loop steps include what ran on the loop meanwhile)"]
    for key, values in sorted(cpu.items()):
        lines.append(f"{statistics.median(values):8.3f}  {key}  (n={len(values)})")
    lines += ["", "events per call (mean)"]
    for key, values in sorted(counts.items()):
        lines.append(f"{sum(values) / len(calls):6.2f}  {key}")
    return "\n".join(lines)


# name: (first event, last event) of one call, each the first of its label in the call.
_INTERVALS = {
    "request parsed -> reservation asked": ("ACCEPT", "ledger.reserve>"),
    "reservation (its commit round trip)": ("ledger.reserve>", "ledger.reserve<"),
    "reservation -> upstream asked": ("ledger.reserve<", "upstream (runner)>"),
    "upstream answered -> settlement asked": ("upstream (runner)<", "ledger.settle>"),
    "settlement + receipt (sign, one commit)": ("ledger.settle>", "audit.finish(sign+append)<"),
    "receipt logged -> response sent": ("audit.finish(sign+append)<", "RESPONSE SENT"),
}


def _at(call: list[list[Any]], label: str) -> int | None:
    return next((event[0] for event in call if event[3] == label), None)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import httpx

    from bench.bench_gateway import DELAY_MS, TOKENS
    from bench.harness import batchin_server, fake_upstream_process, remote_catalog

    out = Path(tempfile.mkdtemp(prefix="timeline-")) / "events.json"
    launcher = [sys.executable, str(Path(__file__).resolve()), "--serve", str(out)]
    with contextlib.ExitStack() as stack:
        upstream_url, _ = stack.enter_context(fake_upstream_process(core=1, tokens=TOKENS, delay_ms=DELAY_MS))
        env = {"BATCHIN_MODELS": str(remote_catalog(upstream_url))}
        server = stack.enter_context(batchin_server(core=0, env=env, workers=1, launcher=launcher))
        body = {"model": "remote-bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(headers=headers, timeout=60) as client:
            for _ in range(20):
                client.post(f"{server.base}/v1/chat/completions", json=body).raise_for_status()
            os.kill(server.process.pid, signal.SIGUSR1)
            time.sleep(0.5)
            for _ in range(args.calls):
                client.post(f"{server.base}/v1/chat/completions", json=body).raise_for_status()
            time.sleep(0.5)  # the last call's trace rows
            os.kill(server.process.pid, signal.SIGUSR2)
            time.sleep(1.0)
        print(_report(json.loads(out.read_text())))


if __name__ == "__main__":
    main()
