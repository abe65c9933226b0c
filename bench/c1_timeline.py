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
import inspect
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
    ("batchin.http_api.routes.text", "parse_json", "parse body"),
    ("batchin.core.serving.inference", "InferenceService.start_chat", "start_chat(until admitted)"),
    ("batchin.core.serving.text_producer", "TextProducer._sealed", "receipt wait"),
    ("batchin.core.serving.text_serving", "chat_completion", "answer collected+built"),
    # ">": the request to the upstream starts; "<": the upstream's response head is read.
    ("batchin.models.upstream_client", "UpstreamClient.post_json", "upstream request"),
]
# Plain functions: "label" once, when called.
_SYNC_STEPS = [
    ("batchin.store.group_commit", "GroupCommitWriter.submit", "writer.submit"),
    ("batchin.store.group_commit", "GroupCommitWriter._on_thread", "writer.queue_put(thread wake)"),
    ("batchin.store.group_commit", "_settle", "loop: writer outcome delivered"),
    ("batchin.core.serving.generation", "BufferedStream._offer", "generation end offered"),
]
# Plain functions timed: "label>" / "label<" (on the loop, or on the writer thread for "writer txn").
_AROUND_STEPS = [
    ("batchin.store.group_commit", "GroupCommitWriter._apply", "writer txn"),
    ("batchin.core.traces.service", "TraceService.record_generation", "trace.record_generation"),
    ("batchin.core.serving.text_producer", "observe_generation", "metrics"),
    ("batchin.core.prompts.service", "PromptService.record", "prompt sample"),
    ("batchin.core.audit.service", "AuditService.seal", "audit.seal(sign+queue)"),
    ("batchin.http_api.routes.text", "render", "render"),
    ("batchin.models.upstream_stream", "StreamDecoder.feed", "upstream chunk decoded"),
]

_EVENTS: list[tuple[int, int, str, str]] = []  # (monotonic ns, thread CPU ns, thread name, label)
# At these the loop's time spent runnable but not running (the kernel's schedstat) is stamped too
# ("runq NS"): the server runs on uvloop, whose turns and waits Python cannot see, so the part of
# the call's wall time that is neither its loop's CPU nor preemption is what the loop sat waiting.
_RUNQ_AT = frozenset({"ACCEPT", "upstream (runner)>", "upstream (runner)<", "RESPONSE SENT"})


_SCHEDSTAT: dict[str, int] = {}  # thread name -> its schedstat file, open


def _stamp(label: str) -> None:
    thread = threading.current_thread().name
    _EVENTS.append((time.monotonic_ns(), time.thread_time_ns(), thread, label))
    if label in _RUNQ_AT:
        if thread not in _SCHEDSTAT:  # /proc/thread-self is resolved when opened: this thread's
            _SCHEDSTAT[thread] = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        waited = os.pread(_SCHEDSTAT[thread], 100, 0).split()[1].decode()
        _EVENTS.append((time.monotonic_ns(), time.thread_time_ns(), thread, f"runq {waited}"))


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


def _replace(owner: Any, name: str, wrapped: Callable[..., Any]) -> None:
    """`owner.name = wrapped`, a static method staying one (else it would be bound to `self`)."""
    static = isinstance(inspect.getattr_static(owner, name), staticmethod)
    setattr(owner, name, staticmethod(wrapped) if static else wrapped)


def _instrument() -> None:
    for module, path, label in _ASYNC_STEPS:
        try:
            owner, name = _owner(module, path)
            getattr(owner, name)
        except (ImportError, AttributeError):  # a step this tree has under another name
            continue
        _replace(owner, name, _wrap_async(getattr(owner, name), label))
    for steps, around in ((_SYNC_STEPS, False), (_AROUND_STEPS, True)):
        for module, path, label in steps:
            try:
                owner, name = _owner(module, path)
                getattr(owner, name)
            except (ImportError, AttributeError):
                continue
            _replace(owner, name, _wrap_sync(getattr(owner, name), label, around=around))
    from batchin.store.group_commit import GroupCommitWriter

    connect = GroupCommitWriter._connection

    def traced_connection(self: Any) -> Any:  # every statement the writer runs, as it starts
        conn = connect(self)
        conn.set_trace_callback(lambda sql: _stamp("sql: " + " ".join(sql.split())[:90]))
        return conn

    GroupCommitWriter._connection = traced_connection  # type: ignore[method-assign]
    from uvicorn.protocols.http import httptools_impl

    protocol = httptools_impl.HttpToolsProtocol
    protocol.on_message_begin = _wrap_sync(protocol.on_message_begin, "ACCEPT", around=False)  # type: ignore[method-assign]
    cycle = httptools_impl.RequestResponseCycle
    send = cycle.send

    async def traced_send(self: Any, message: Any) -> None:
        await send(self, message)
        if message["type"] == "http.response.start":
            _stamp("response head sent")
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            _stamp("RESPONSE SENT")
        elif message["type"] == "http.response.body":
            _stamp("body chunk sent")

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
            key = f"{_kind(label)} [{'loop' if thread == 'MainThread' else thread}]"
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
            if (a := _at(call, first)) is not None and (b := _at(call, last, a)) is not None
        ]
        if spans:
            lines.append(f"{statistics.median(spans) / 1e6:8.3f}  {name}")
    own = [
        (_at(c, "RESPONSE SENT") or 0)
        - c[0][0]
        - ((_at(c, "upstream (runner)<") or 0) - (_at(c, "upstream (runner)>") or 0))
        for c in calls
    ]
    own_ms = statistics.median(own) / 1e6
    lines.append(f"{own_ms:8.3f}  gateway's own time (request to response, less the upstream)")
    split = [t for call in calls if (t := _own_time(call)) is not None]
    if split:
        for index, name in enumerate(("wall", "loop CPU", "loop preempted", "loop waiting (the rest)")):
            lines.append(f"{statistics.median(t[index] for t in split):8.3f}    of it: {name}")
    lines.append("")
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


# name: (first event, last event) of one call: the first of its label, the first of its label after it.
_INTERVALS = {
    "request parsed -> reservation asked": ("ACCEPT", "ledger.reserve>"),
    "reservation (its commit round trip)": ("ledger.reserve>", "ledger.reserve<"),
    "reservation -> upstream asked": ("ledger.reserve<", "upstream (runner)>"),
    "upstream answered -> settlement asked": ("upstream (runner)<", "ledger.settle>"),
    "settlement asked -> receipt in hand (one commit)": ("ledger.settle>", "receipt wait<"),
    "receipt in hand -> generation end offered": ("receipt wait<", "generation end offered"),
    "generation end offered -> answer built": ("generation end offered", "answer collected+built<"),
    "answer built -> response sent": ("answer collected+built<", "RESPONSE SENT"),
    "receipt in hand -> response sent": ("receipt wait<", "RESPONSE SENT"),
    # streams
    "request parsed -> upstream request started": ("ACCEPT", "upstream request>"),
    "request parsed -> response head sent": ("ACCEPT", "response head sent"),
    "upstream request started -> its head read": ("upstream request>", "upstream request<"),
    "upstream's first chunk decoded -> a body chunk sent": ("upstream chunk decoded<", "body chunk sent"),
}


def _own_time(call: list[list[Any]]) -> tuple[float, float, float, float] | None:
    """(wall, loop CPU, loop preempted, loop waiting) in ms from the parsed request to the response
    sent, less the upstream step: preempted = runnable but not running, waiting = the rest."""
    marks: dict[str, tuple[list[Any], int]] = {}
    for event, after in zip(call, [*call[1:], None], strict=True):
        if event[2] == "MainThread" and event[3] in _RUNQ_AT and after and after[3].startswith("runq "):
            marks.setdefault(event[3], (event, int(after[3].split()[1])))
    need = ("ACCEPT", "upstream (runner)>", "upstream (runner)<", "RESPONSE SENT")
    if any(label not in marks for label in need):
        return None
    (accept, q0), (up_in, q1), (up_out, q2), (sent, q3) = (marks[label] for label in need)
    wall = (sent[0] - accept[0]) - (up_out[0] - up_in[0])
    cpu = (sent[1] - accept[1]) - (up_out[1] - up_in[1])
    preempted = (q3 - q0) - (q2 - q1)
    return wall / 1e6, cpu / 1e6, preempted / 1e6, (wall - cpu - preempted) / 1e6


def _kind(label: str) -> str:
    """A label without its values (statements', idle times'): the counts per call group by it."""
    if label.startswith("runq "):
        return "runq"
    if not label.startswith("sql: "):
        return label
    for cut in (" (", " VALUES", " SET", " WHERE"):
        label = label.split(cut)[0]
    return label


def _at(call: list[list[Any]], label: str, since: int = 0) -> int | None:
    """When the call's first event of `label` (at or after `since`) happened."""
    return next((event[0] for event in call if event[3] == label and event[0] >= since), None)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], sys.argv[3:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--events", help="also keep the raw events (JSON) in this file")
    parser.add_argument("--stream", action="store_true", help="streamed calls (TTFT: the first token's line)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import httpx

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        # As bench_gateway: the client shares core 1 with the upstream. A client on the server's
        # core takes it from the loop as soon as the response's head is written (wakeup preemption).
        os.sched_setaffinity(0, {1})

    from bench.bench_gateway import DELAY_MS, TOKENS
    from bench.harness import batchin_server, fake_upstream_process, remote_catalog

    out = Path(tempfile.mkdtemp(prefix="timeline-")) / "events.json"
    launcher = [sys.executable, str(Path(__file__).resolve()), "--serve", str(out)]
    with contextlib.ExitStack() as stack:
        upstream_url, _ = stack.enter_context(fake_upstream_process(core=1, tokens=TOKENS, delay_ms=DELAY_MS))
        env = {"BATCHIN_MODELS": str(remote_catalog(upstream_url))}
        server = stack.enter_context(batchin_server(core=0, env=env, workers=1, launcher=launcher))
        body = {"model": "remote-bench", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
        body["stream"] = args.stream
        headers = {"Authorization": f"Bearer {server.api_key}"}
        ttfts: list[float] = []
        with httpx.Client(headers=headers, timeout=60) as client:

            def call() -> None:
                start = time.perf_counter()
                with client.stream("POST", f"{server.base}/v1/chat/completions", json=body) as response:
                    response.raise_for_status()
                    first = None
                    for line in response.iter_lines():
                        if first is None and "tok" in line:
                            first = time.perf_counter() - start
                    if first is not None:
                        ttfts.append(first * 1000)

            for _ in range(20):
                call()
            os.kill(server.process.pid, signal.SIGUSR1)
            time.sleep(0.5)
            ttfts.clear()
            for _ in range(args.calls):
                call()
            time.sleep(0.5)  # the last call's trace rows
            os.kill(server.process.pid, signal.SIGUSR2)
            time.sleep(1.0)
        if args.events:
            Path(args.events).write_text(out.read_text())
        print(_report(json.loads(out.read_text())))
        if args.stream and ttfts:
            print(f"\nclient TTFT (its first token's line), median: {statistics.median(ttfts):.3f} ms")


if __name__ == "__main__":
    main()
