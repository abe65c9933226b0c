"""Every core (issue 16): chat req/s of `batchin serve --workers 2` over `--workers 1`, and what
that means when the load generator shares the cores. Prints one JSON line.

Both servers run at once (SQLite, no Redis, each its own data dir) in front of one fake upstream
answering a prebuilt completion; rounds alternate between them, driven by `--connections`
keep-alive connections. The load (`--load`) shares the cores with the servers, so its cost caps
what two workers can serve; two kinds:
- `wrk` (the default when wrk and nginx are on PATH; bench/native_load.py): wrk, a C load
  generator (`--wrk-threads`), and nginx answering with a canned completion;
- `python` (bench/light_http.py): raw keep-alive HTTP/1.1 on asyncio streams and uvloop, and an
  asyncio Protocol upstream (the only one that can pace its answers: `--delay-ms`).
Per round, from /proc: the CPU seconds of the API processes (`--workers 1`: the one server process;
`--workers 2`: the supervisor's spawned children), of the supervisor itself, of the upstream and of
the client (wrk's processes, or this one).

The figures, medians over the rounds:
- `req_per_s`: what the machine did with everything on its cores (the client and the upstream
  take their share, `load_tools_cpu_ms_per_request`, so on 2 cores this cannot reach 2 times:
  `load_bound_2_over_1` is the most it could be, 2 s1 / (s2 + x2) for server CPU s1, s2 per call
  with 1 and 2 workers and x2 the load tools' per call beside 2 workers);
- `cpus_of_bench` and `cpus_of_others`: the CPUs busy with the bench's processes and with anything
  else on the machine (/proc/stat) during the rounds: on a shared machine req_per_s is what was
  left to the bench;
- `api_cpu_ms_per_request` (summed over the API processes) and `supervisor_cpu_ms_per_request`;
- `req_per_api_cpu_s` = requests / API processes' CPU seconds — what one core of API process
  carries. Scaling means N processes each keep this: `efficiency_2_over_1` ≈ 1.0 says two
  processes on two free cores would serve ≈ 2 times (`projected_speedup_on_free_cores`);
  `server_req_per_cpu_s` adds the supervisor's CPU (work the hot path costs it).
- two controls, driven like the others: `pair_of_independent_1` (two `--workers 1` servers sharing
  nothing: what two busy processes cost each other on these cores) and `pair_sharing_one_store`
  (two `--workers 1` servers on one data dir, so one SQLite file and nothing else:
  `sharing_store_over_pair` is what the shared store alone costs).

Options: --seconds per round, --rounds (each round runs every setup), --connections, --load,
--wrk-threads, --delay-ms (the python upstream's pause per token; 0 = answer at once, so the server
is CPU-bound).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import (
    Server,
    batchin_server,
    cpu_seconds,
    free_port,
    remote_catalog,
    serve_process,
    stop,
    tree_cpu_seconds,
    wait_ready,
)
from bench.light_http import chat_body, chat_request, drive
from bench.native_load import run_wrk
from bench.workers_load import PYTHON_LOAD, Load, choose_load, upstream_for

MODEL = "remote-bench"
TICK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def api_processes(server: int, workers: int) -> list[int]:
    """The processes serving HTTP: the server itself with one worker, else the supervisor's
    spawned children (not its resource tracker or engine workers' helpers)."""
    if workers == 1:
        return [server]
    found = []
    for pid in children(server):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            found.append(pid)
    return found


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def thread_cpu(pids: list[int]) -> collections.Counter[str]:
    """CPU seconds of the event loops (each process's main thread) and of all other threads (the
    SQLite writer, aiosqlite's, the executor's) over `pids`, from /proc/PID/task."""
    found: collections.Counter[str] = collections.Counter()
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    name = "event_loop" if task.name == str(pid) else "other_threads"
                    found[name] += (int(fields[11]) + int(fields[12])) / TICK
    return found


def machine_busy_cpu() -> float:
    """CPU seconds all CPUs have been busy (/proc/stat: all but idle and iowait, steal included):
    beside the bench's own, what else took the cores during a round."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Setup:
    """What one round drives: one server (`--workers N`), or independent servers at once."""

    name: str
    servers: list[Server]
    workers: int
    req_per_s: list[float] = field(default_factory=list)
    api_ms: list[float] = field(default_factory=list)
    supervisor_ms: list[float] = field(default_factory=list)
    upstream_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    load_ms: list[float] = field(default_factory=list)
    bench_cpus: list[float] = field(default_factory=list)
    other_cpus: list[float] = field(default_factory=list)
    per_process_share: list[list[float]] = field(default_factory=list)
    by_thread: collections.Counter[str] = field(default_factory=collections.Counter)
    requests: int = 0
    failed: int = 0

    def targets(self) -> list[tuple[int, bytes]]:
        ports = [int(server.base.rsplit(":", 1)[1]) for server in self.servers]
        return [
            (port, chat_request("127.0.0.1", port, server.api_key, MODEL))
            for port, server in zip(ports, self.servers, strict=True)
        ]

    def wrk_targets(self) -> list[tuple[int, str, bytes]]:
        return [
            (int(server.base.rsplit(":", 1)[1]), server.api_key, chat_body(MODEL)) for server in self.servers
        ]

    def api(self) -> list[int]:
        return [pid for server in self.servers for pid in api_processes(server.process.pid, self.workers)]

    def supervisors(self) -> list[int]:
        return [] if self.workers == 1 else [server.process.pid for server in self.servers]

    def summary(self) -> dict[str, Any]:
        api = statistics.median(self.api_ms)
        supervisor = statistics.median(self.supervisor_ms)
        return {
            "req_per_s": round(statistics.median(self.req_per_s), 1),
            "api_cpu_ms_per_request": round(api, 4),
            "supervisor_cpu_ms_per_request": round(supervisor, 4),
            "req_per_api_cpu_s": round(1000 / api, 1),
            "server_req_per_cpu_s": round(1000 / (api + supervisor), 1),
            "upstream_cpu_ms_per_request": round(statistics.median(self.upstream_ms), 4),
            "client_cpu_ms_per_request": round(statistics.median(self.client_ms), 4),
            "load_tools_cpu_ms_per_request": round(statistics.median(self.load_ms), 4),
            "api_cpu_share_per_process": [round(s, 3) for s in self.per_process_share[-1]],
            "api_cpu_ms_per_request_by_thread": {
                name: round(seconds * 1000 / self.requests, 4) for name, seconds in self.by_thread.items()
            },
            # CPUs busy with the bench's processes, and with anything else, during the rounds.
            "cpus_of_bench": round(statistics.median(self.bench_cpus), 2),
            "cpus_of_others": round(statistics.median(self.other_cpus), 2),
            "failed": self.failed,
        }


def drive_round(
    setup: Setup, load: Load, *, connections: int, seconds: float
) -> tuple[int, int, float, float]:
    """One round of `load` on `setup`'s servers: requests answered 200 and otherwise (wrk raises
    on any of those instead), seconds, and the client's CPU seconds."""
    if load.name == "wrk":
        targets = setup.wrk_targets()
        run = run_wrk(load.wrk, targets, threads=load.wrk_threads, connections=connections, seconds=seconds)
        return run.ok, 0, run.seconds, run.cpu_seconds
    before = own_cpu()
    driven = drive("127.0.0.1", setup.targets(), connections=connections, seconds=seconds)
    return driven.ok, driven.failed, driven.seconds, own_cpu() - before


def measure(
    setup: Setup, upstream: int, *, connections: int, seconds: float, load: Load = PYTHON_LOAD
) -> None:
    api, supervisors = setup.api(), setup.supervisors()
    threads = thread_cpu(api)
    busy, started = machine_busy_cpu(), time.monotonic()
    before = ([cpu_seconds(p) for p in api], _cpu(supervisors), tree_cpu_seconds(upstream))
    ok, failed, elapsed, client = drive_round(setup, load, connections=connections, seconds=seconds)
    after = ([cpu_seconds(p) for p in api], _cpu(supervisors), tree_cpu_seconds(upstream))
    busy, wall = machine_busy_cpu() - busy, time.monotonic() - started
    setup.by_thread.update(thread_cpu(api))
    setup.by_thread.subtract(threads)
    done = ok + failed
    setup.requests += done
    per_process = [b - a for a, b in zip(before[0], after[0], strict=True)]
    setup.failed += failed
    setup.req_per_s.append(ok / elapsed)
    setup.api_ms.append(sum(per_process) * 1000 / done)
    setup.supervisor_ms.append((after[1] - before[1]) * 1000 / done)
    setup.upstream_ms.append((after[2] - before[2]) * 1000 / done)
    setup.client_ms.append(client * 1000 / done)
    setup.load_ms.append((after[2] - before[2] + client) * 1000 / done)
    bench = sum(per_process) + after[1] - before[1] + after[2] - before[2] + client
    setup.bench_cpus.append(bench / wall)
    setup.other_cpus.append((busy - bench) / wall)
    setup.per_process_share.append([p / (sum(per_process) or 1) for p in per_process])


@contextlib.contextmanager
def twin_of(server: Server, env: dict[str, str]) -> Iterator[Server]:
    """A second `batchin serve --workers 1` on `server`'s data dir (so on its SQLite file, its user
    and key), on a port of its own: the control that shares only the store."""
    port = free_port()
    process = serve_process({**os.environ, **env, "BATCHIN_DATA_DIR": server.data_dir}, port, workers=1)
    twin = Server(f"http://127.0.0.1:{port}", process, server.api_key, server.data_dir)
    try:
        wait_ready(f"{twin.base}/health", timeout=240)
        yield twin
    finally:
        stop(process, timeout=60)


def ratio(a: float, b: float, digits: int = 3) -> float:
    return round(a / b, digits)


def compare(
    *, seconds: float, rounds: int, connections: int, delay_ms: float, load: Load | None = None
) -> dict[str, Any]:
    """The figures of the module docstring, from one run of the four setups (`load`: the default
    of `choose_load`)."""
    load = load or choose_load(None, delay_ms, wrk_threads=1)
    with upstream_for(load, delay_ms) as (upstream_url, upstream):
        catalog = remote_catalog(upstream_url, MODEL)
        env = {"BATCHIN_MODELS": str(catalog)}
        for name in ("BATCHIN_REDIS_URL", "BATCHIN_DATABASE_URL"):
            os.environ.pop(name, None)  # SQLite and the in-process (or shared) limiter
        with (
            batchin_server(core=-1, env=env, workers=1) as one,
            batchin_server(core=-1, env=env, workers=2) as two,
            batchin_server(core=-1, env=env, workers=1) as other,
            twin_of(one, env) as twin,
        ):
            setups = [
                Setup("workers_1", [one], 1),
                Setup("workers_2", [two], 2),
                # The control: two processes sharing nothing (data dirs, limiter) on the same
                # cores — what two busy processes cost each other on this machine.
                Setup("pair_of_independent_1", [one, other], 1),
                # The second control: two single-process servers on one SQLite file and nothing
                # else shared (no supervisor, no shared limiter) — what sharing the store costs.
                Setup("pair_sharing_one_store", [one, twin], 1),
            ]
            for setup in setups:  # warm-up: connections, caches, the upstream's pool
                drive_round(setup, load, connections=connections, seconds=2.0)
            for index in range(rounds):
                for setup in setups if index % 2 == 0 else setups[::-1]:
                    measure(setup, upstream, connections=connections, seconds=seconds, load=load)
    w1, w2, pair, shared = (setup.summary() for setup in setups)
    w1_server, w2_server = (
        summary["api_cpu_ms_per_request"] + summary["supervisor_cpu_ms_per_request"] for summary in (w1, w2)
    )
    return {
        "bench": "workers",
        "load": load.name,
        "load_reason": load.reason,
        **({"wrk_threads": load.wrk_threads} if load.name == "wrk" else {}),
        "cpus": os.cpu_count(),
        "connections": connections,
        "rounds": rounds,
        "seconds_per_round": seconds,
        "upstream_delay_ms_per_token": delay_ms,
        "workers_1": w1,
        "workers_2": w2,
        "pair_of_independent_1": pair,
        "pair_sharing_one_store": shared,
        "req_per_s_2_over_1": ratio(w2["req_per_s"], w1["req_per_s"], 2),
        # The most req_per_s_2_over_1 could be with the load tools on the same 2 cores.
        "load_bound_2_over_1": ratio(2 * w1_server, w2_server + w2["load_tools_cpu_ms_per_request"], 2),
        "efficiency_2_over_1": ratio(w2["req_per_api_cpu_s"], w1["req_per_api_cpu_s"]),
        "server_efficiency_2_over_1": ratio(w2["server_req_per_cpu_s"], w1["server_req_per_cpu_s"]),
        # What sharing costs, apart from what two busy processes cost each other here.
        "server_efficiency_2_over_pair": ratio(w2["server_req_per_cpu_s"], pair["server_req_per_cpu_s"]),
        "pair_efficiency_over_1": ratio(pair["server_req_per_cpu_s"], w1["server_req_per_cpu_s"]),
        # What one SQLite file costs two processes, apart from the supervisor and shared limiter.
        "sharing_store_over_pair": ratio(shared["server_req_per_cpu_s"], pair["server_req_per_cpu_s"]),
        "projected_speedup_on_free_cores": ratio(
            2 * w2["server_req_per_cpu_s"], w1["server_req_per_cpu_s"], 2
        ),
        "goal_speedup": 1.8,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument(
        "--load", choices=("wrk", "python"), help="default: wrk when wrk and nginx are on PATH"
    )
    parser.add_argument("--wrk-threads", type=int, default=1)
    args = parser.parse_args()
    load = choose_load(args.load, args.delay_ms, args.wrk_threads)
    figures = compare(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        delay_ms=args.delay_ms,
        load=load,
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
