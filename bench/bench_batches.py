"""A million-task batch, end to end, against a fast local fake upstream model.

Writes a JSONL file of N chat requests (N = BENCH_BATCH_TASKS, default 1,000,000), uploads it to a
real `batchin serve` (SQLite, default settings) with POST /v1/files, starts a batch over it and
follows it to the end. Figures: upload + validation seconds (upload start → the batch leaves
`validating`), dispatch rate (tasks finished per second while in progress), the server's peak
RSS, and whether every custom_id is in the output exactly once. Prints one JSON line.
Targets (issue 6): upload + validation ≤ 60 s, dispatch ≥ 2,000 tasks/s on 2 cores, peak RSS ≤ 500 MB.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server, fake_upstream, remote_catalog

TASKS = int(os.environ.get("BENCH_BATCH_TASKS", "1000000"))
MODEL = "remote-bench"


def write_input(path: Path, count: int) -> None:
    with path.open("w") as out:
        for index in range(count):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"item {index}"}],
                "max_tokens": 4,
            }
            line = {"custom_id": f"t{index}", "method": "POST", "url": "/v1/chat/completions", "body": body}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="batchin-batch-bench-"))
    source = work / "input.jsonl"
    write_input(source, TASKS)
    results: dict[str, object] = {
        "bench": "batches_1m",
        "tasks": TASKS,
        "input_mb": round(source.stat().st_size / 2**20, 1),
    }
    with fake_upstream(core=-1, tokens=1, delay_ms=0) as upstream_url:
        catalog = remote_catalog(upstream_url, MODEL)
        with batchin_server(core=-1, env={"BATCHIN_MODELS": str(catalog)}) as server:
            headers = {"Authorization": f"Bearer {server.api_key}"}
            with httpx.Client(base_url=server.base, headers=headers, timeout=600) as client:
                started = time.perf_counter()
                with source.open("rb") as raw:
                    uploaded = client.post(
                        "/v1/files",
                        data={"purpose": "batch"},
                        files={"file": ("input.jsonl", raw, "application/jsonl")},
                    )
                uploaded.raise_for_status()
                upload_s = time.perf_counter() - started
                batch = client.post(
                    "/v1/batches",
                    json={
                        "input_file_id": uploaded.json()["id"],
                        "endpoint": "/v1/chat/completions",
                        "completion_window": "24h",
                    },
                ).json()
                batch_id = batch["id"]
                validated_at = dispatch_started = None
                while True:
                    batch = client.get(f"/v1/batches/{batch_id}").json()
                    now = time.perf_counter()
                    if validated_at is None and batch["status"] != "validating":
                        validated_at = dispatch_started = now
                    if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                        break
                    time.sleep(0.5)
                finished = time.perf_counter()
                rss = peak_rss_mb(server.process.pid)
                seen: set[str] = set()
                duplicates = 0
                with client.stream("GET", f"/v1/files/{batch['output_file_id']}/content") as response:
                    for line in response.iter_lines():
                        if line:
                            custom_id = json.loads(line)["custom_id"]
                            duplicates += custom_id in seen
                            seen.add(custom_id)
    counts = batch.get("request_counts") or {}
    dispatch_s = finished - (dispatch_started or finished)
    results.update(
        {
            "status": batch["status"],
            "request_counts": counts,
            "upload_s": round(upload_s, 2),
            "upload_and_validation_s": round((validated_at or finished) - started, 2),
            "dispatch_s": round(dispatch_s, 2),
            "dispatch_tasks_per_s": round(TASKS / dispatch_s, 1) if dispatch_s > 0 else None,
            "peak_rss_mb": round(rss, 1),
            "results_exactly_once": len(seen) == TASKS and duplicates == 0,
            "duplicates": duplicates,
            "targets": {"upload_and_validation_s": 60, "dispatch_tasks_per_s": 2000, "peak_rss_mb": 500},
        }
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
