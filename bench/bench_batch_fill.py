"""Interactive time to first token with a `fill` batch running, against the same model idle.

One real `batchin serve` with the embedded SmolLM2 (llama.cpp). Streamed chat calls (one at a
time) measure TTFT idle, then again while a fill-priority batch of chat tasks runs on the same
model. Figures: p50/p90 TTFT idle and under fill, and their ratio (target ≤ 1.10). Prints one JSON line.
`--workers N` passes `serve --workers N` (default: serve's own, one API process per CPU): admission
is per API process, so with several the fill batch and an interactive call meet at the shared
engine, whose relay admits them by priority (models/engine_relay.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server, percentile

MODEL = "smollm2-135m-instruct"
SAMPLES = 30
FILL_TASKS = 400


def ttft(client: httpx.Client) -> float:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "stream": True,
    }
    start = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            # The first token: the opening chunk (role, empty content) leaves at admission.
            if line.startswith("data: {") and any(
                (choice.get("delta") or {}).get("content") for choice in json.loads(line[6:])["choices"]
            ):
                return time.perf_counter() - start
    return float("nan")


def measure(client: httpx.Client) -> list[float]:
    samples = []
    for _ in range(SAMPLES):
        samples.append(ttft(client))
        time.sleep(0.05)  # interactive callers think between calls: the batch gets the gaps
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=None, help="`batchin serve --workers N`")
    workers = parser.parse_args().workers
    with batchin_server(core=-1, workers=workers) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as client:
            for _ in range(5):
                ttft(client)  # warm-up: model load, caches
            idle = measure(client)
            tasks = [
                {
                    "custom_id": f"f{i}",
                    "model": MODEL,
                    "request_body": {
                        "messages": [{"role": "user", "content": f"Summarise item {i}."}],
                        "max_tokens": 16,
                    },
                }
                for i in range(FILL_TASKS)
            ]
            batch = client.post("/v1/batches", json={"priority": "fill", "tasks": tasks}).json()
            time.sleep(1.0)
            busy = measure(client)
            progress = client.get(f"/v1/batches/{batch['id']}").json()
            client.post(f"/v1/batches/{batch['id']}/cancel")
    result = {
        "bench": "batch_fill_interference",
        "model": MODEL,
        "workers": workers,
        "samples": SAMPLES,
        "ttft_idle_p50_ms": round(percentile(idle, 0.5) * 1000, 2),
        "ttft_fill_p50_ms": round(percentile(busy, 0.5) * 1000, 2),
        "ttft_idle_p90_ms": round(percentile(idle, 0.9) * 1000, 2),
        "ttft_fill_p90_ms": round(percentile(busy, 0.9) * 1000, 2),
        "ttft_p50_ratio": round(percentile(busy, 0.5) / percentile(idle, 0.5), 3),
        "fill_tasks_done_during_measurement": progress["completed_tasks"],
        "targets": {"ttft_p50_ratio": 1.10},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
