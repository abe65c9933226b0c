"""Embedding throughput: 1,000 short sentences through BatchIn's /v1/embeddings (one request, base64
as the openai SDK asks, and float) against sentence-transformers called directly on the same
weights with the same batch size. The runs alternate so machine noise hits both; best of each.
Prints one JSON line (target: ratio ≥ 0.8).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server

MODEL = "all-MiniLM-L6-v2"
SENTENCES = [
    f"Sentence {i}: the {('quick', 'lazy', 'brown', 'clever')[i % 4]} fox visits town number {i % 97}."
    for i in range(1000)
]
ROUNDS = 5


def model_folder() -> Path:
    from batchin.models.catalog import load_catalog
    from batchin.models.weights import resolve_weights

    entry = load_catalog(None).get(MODEL)
    assert entry is not None
    assert entry.weights is not None
    return resolve_weights(entry.weights.path, entry.base_dir).parent


def direct_per_second(model: object, batch_size: int) -> float:
    start = time.perf_counter()
    model.encode(SENTENCES, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)  # type: ignore[attr-defined]
    return len(SENTENCES) / (time.perf_counter() - start)


def served_per_second(client: httpx.Client, base: str, key: str, encoding_format: str) -> float:
    start = time.perf_counter()
    response = client.post(
        f"{base}/v1/embeddings",
        json={"model": MODEL, "input": SENTENCES, "encoding_format": encoding_format},
        headers={"Authorization": f"Bearer {key}"},
    )
    response.raise_for_status()
    assert len(response.json()["data"]) == len(SENTENCES)
    return len(SENTENCES) / (time.perf_counter() - start)


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from batchin.models.catalog import load_catalog

    entry = load_catalog(None).get(MODEL)
    assert entry is not None
    batch_size = int(str(entry.engine_options.get("batch_size", 64)))
    model = SentenceTransformer(str(model_folder()), device="cpu", local_files_only=True)
    direct: list[float] = []
    base64_runs: list[float] = []
    float_runs: list[float] = []
    with batchin_server(core=-1) as server, httpx.Client(timeout=600) as client:
        served_per_second(client, server.base, server.api_key, "base64")  # loads the model
        direct_per_second(model, batch_size)  # warms torch in this process
        for _ in range(ROUNDS):
            direct.append(direct_per_second(model, batch_size))
            base64_runs.append(served_per_second(client, server.base, server.api_key, "base64"))
            float_runs.append(served_per_second(client, server.base, server.api_key, "float"))
    best_direct = max(direct)
    print(
        json.dumps(
            {
                "bench": "embeddings",
                "model": MODEL,
                "sentences": len(SENTENCES),
                "batch_size": batch_size,
                "direct_per_s": round(best_direct, 1),
                "served_base64_per_s": round(max(base64_runs), 1),
                "served_float_per_s": round(max(float_runs), 1),
                "ratio": round(max(base64_runs) / best_direct, 3),
                "ratio_float": round(max(float_runs) / best_direct, 3),
                "target_ratio": 0.8,
                "direct_runs": [round(v, 1) for v in direct],
                "served_base64_runs": [round(v, 1) for v in base64_runs],
                "served_float_runs": [round(v, 1) for v in float_runs],
            }
        )
    )


if __name__ == "__main__":
    main()
