"""The engine-worker metrics, rendered from a fake snapshot: restarts, up, resident memory."""

from __future__ import annotations

from batchin.core.serving.metrics import InferenceMetrics
from batchin.models.engine_stats import EngineWorkerStats


def _engine_lines(workers: list[EngineWorkerStats]) -> list[str]:
    metrics = InferenceMetrics()
    metrics.watch_engines(lambda: workers)
    return [
        line
        for line in metrics.render().decode().splitlines()
        if line.startswith("batchin_engine_") and not line.startswith("batchin_engine_restarts_created")
    ]


def test_each_worker_shows_its_restarts_up_and_resident_memory() -> None:
    workers = [
        EngineWorkerStats("chat-a", pid=4242, restarts=2, state="ready", rss_bytes=123_904_000),
        EngineWorkerStats("chat-b", pid=None, restarts=5, state="crash_loop", rss_bytes=None),
    ]
    assert _engine_lines(workers) == [
        'batchin_engine_restarts_total{model="chat-a"} 2.0',
        'batchin_engine_restarts_total{model="chat-b"} 5.0',
        'batchin_engine_worker_up{model="chat-a"} 1.0',
        'batchin_engine_worker_up{model="chat-b"} 0.0',
        'batchin_engine_worker_rss_bytes{model="chat-a"} 1.23904e+08',
    ]


def test_no_hosted_models_means_no_engine_samples() -> None:
    assert _engine_lines([]) == []


def test_the_snapshot_is_read_at_every_scrape() -> None:
    workers: list[EngineWorkerStats] = []
    metrics = InferenceMetrics()
    metrics.watch_engines(lambda: workers)
    workers.append(EngineWorkerStats("chat-a", pid=7, restarts=1, state="ready", rss_bytes=4096))
    assert 'batchin_engine_worker_rss_bytes{model="chat-a"} 4096.0' in metrics.render().decode()
