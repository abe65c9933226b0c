"""Native load tools for bench_workers.py: `wrk` (a C load generator) drives the servers and `nginx`
answers as the fake upstream. They share the 2 cores with the servers under test, so what they cost
per call caps what two workers can serve (2s/(s+x) for s of server and x of harness CPU per call);
measured at ~1,000 calls/s, these cost ~0.045 ms per call together, light_http.py's Python pair ~0.07.

- `native_tools()`: the wrk and nginx binaries, or why they cannot be used.
- `nginx_upstream(chat, models)`: nginx as a child process (`daemon off`, one worker, keep-alive,
  no access log, its pid, error log and temp dirs in a temp dir) answering GET /v1/models with
  `models` and anything else (the servers' POSTs) with `chat`.
- `run_wrk(targets, …)`: one wrk per server at once (wrk drives one URL); a Lua `response` hook
  counts the answers by status, since wrk's own request count includes non-2xx answers. Any answer
  but 200, or any socket error, raises: a failing server must not read as a fast one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import cpu_seconds, free_port, stop, wait_ready

# nginx lives in sbin, which a non-root PATH often lacks.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def native_tools() -> tuple[str, str] | str:
    """(wrk, nginx) paths, or a sentence saying which is missing."""
    wrk = shutil.which("wrk")
    nginx = shutil.which("nginx") or shutil.which("nginx", path=os.pathsep.join(_SBIN))
    if wrk and nginx:
        return wrk, nginx
    missing = [name for name, path in (("wrk", wrk), ("nginx", nginx)) if not path]
    return f"{' and '.join(missing)} not found on PATH"


def _nginx_literal(body: bytes) -> str:
    """`body` as an nginx single-quoted string: nginx has no escape for `$` (a variable), so a
    body holding one (or a quote or backslash) is refused rather than silently changed."""
    text = body.decode()
    if any(char in text for char in "'\\$"):
        raise ValueError("a canned nginx answer cannot hold ' \\ or $")
    return f"'{text}'"


def _nginx_config(directory: Path, port: int, chat: bytes, models: bytes) -> str:
    # As root, nginx's worker would drop to `nobody`, which cannot use the temp dir made here.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    temp_paths = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
{user}
daemon off;
worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp_paths}
    # The servers' upstream pools keep their connections for the whole run.
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
    server {{
        listen 127.0.0.1:{port} backlog=2048;
        default_type application/json;
        location = /v1/models {{ return 200 {_nginx_literal(models)}; }}
        location / {{ return 200 {_nginx_literal(chat)}; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx_upstream(nginx: str, chat: bytes, models: bytes) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """nginx answering as the fake upstream: its base URL (`…/v1`) and its (master) process."""
    directory = Path(tempfile.mkdtemp(prefix="batchin-nginx-"))
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(_nginx_config(directory, port, chat, models))
    # -e: nginx opens its built-in error log before it reads the config's.
    command = [nginx, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(config)]
    process = subprocess.Popen(command)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", timeout=30)
        yield f"http://127.0.0.1:{port}/v1", process
    finally:
        stop(process, timeout=15)
        shutil.rmtree(directory, ignore_errors=True)


_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"

local threads = {{}}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    ok = 0
    other = 0
end

function response(status, headers, body)
    if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
    local answered, refused = 0, 0
    for _, thread in ipairs(threads) do
        answered = answered + thread:get("ok")
        refused = refused + thread:get("other")
    end
    local errors = summary.errors
    io.write(string.format(
        '\\nWRK_RESULT {{"ok": %d, "other_status": %d, "requests": %d, "duration_us": %d, '
        .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
        answered, refused, summary.requests, summary.duration,
        errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
"""


@dataclass
class WrkRun:
    ok: int
    seconds: float
    cpu_seconds: float  # of the wrk processes


def _result(output: str) -> dict[str, int]:
    for line in output.splitlines():
        if line.startswith("WRK_RESULT "):
            return dict(json.loads(line.removeprefix("WRK_RESULT ")))
    raise RuntimeError(f"wrk printed no result:\n{output}")


def require_all_200(result: dict[str, int], port: int) -> None:
    """Raises unless every answer counted was a 200 and no socket failed (wrk ends a run by
    stopping its loops, not by cutting connections: clean runs here had no socket errors at all)."""
    socket_errors = sum(result[kind] for kind in ("connect", "read", "write", "timeout"))
    clean = result["ok"] == result["requests"] > 0 and not result["other_status"] + result["status"]
    if socket_errors or not clean:
        raise RuntimeError(f"wrk against port {port}: not only 200s: {result}")


def run_wrk(
    wrk: str, targets: list[tuple[int, str, bytes]], *, threads: int, connections: int, seconds: float
) -> WrkRun:
    """`connections` keep-alive connections spread over `targets` (port, key, JSON body), one wrk
    of `threads` threads per target, all at once for `seconds` (rounded to whole seconds). Raises
    unless all answers were 200s."""
    share = max(1, connections // len(targets))
    duration = max(1, round(seconds))  # wrk takes whole seconds
    with tempfile.TemporaryDirectory(prefix="batchin-wrk-") as directory:
        processes = []
        for index, (port, key, body) in enumerate(targets):
            script = Path(directory) / f"chat{index}.lua"
            script.write_text(_SCRIPT.format(body=body.decode(), key=key))
            command = [wrk, f"-t{min(threads, share)}", f"-c{share}", f"-d{duration}s", "-s", str(script)]
            command.append(f"http://127.0.0.1:{port}/v1/chat/completions")
            processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        outputs, cpu = [], 0.0
        for process in processes:
            # A finished wrk stays a zombie (its CPU times still in /proc) until it is reaped.
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
            cpu += cpu_seconds(process.pid)
            stdout, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"wrk failed ({process.returncode}):\n{stdout.decode()}")
            outputs.append(stdout.decode())
    results = [_result(output) for output in outputs]
    for (port, _, _), result in zip(targets, results, strict=True):
        require_all_200(result, port)
    seconds_run = max(result["duration_us"] for result in results) / 1e6
    return WrkRun(sum(result["ok"] for result in results), seconds_run, cpu)
