"""Prometheus metrics of the inference path, on a registry owned by the app (no global state).

Per request: queue time, time to first token, inter-token latency, decode tokens/s, and the outcome;
per admission pool: running and queued; per engine worker process: restarts, up, resident memory —
the last two read live at scrape time; per write-behind buffer (traces, prompt runs, the OTLP
exporter): items dropped, failed and pending, read at scrape time; the store sizes (rows per table,
stored files and bytes per purpose) and what the last retention purge removed, as that run
measured them (core/retention.py): a scrape reads figures in memory and counts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from batchin.core.retention import RetentionStats
from batchin.core.serving.call_metrics import CallCollector, CallSeries, HistogramSpec
from batchin.core.write_behind import BufferStats
from batchin.models.registry import EngineWorkerStats

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)
_TPS_BUCKETS = (1, 5, 10, 25, 50, 100, 200, 400, 800, 1600)


class _AdmissionCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, dict[str, int]]]) -> None:
        self._snapshot = snapshot

    def collect(self):  # type: ignore[no-untyped-def]
        running = GaugeMetricFamily("batchin_admission_running", "Requests holding a slot", labels=["pool"])
        queued = GaugeMetricFamily("batchin_admission_queued", "Requests waiting for a slot", labels=["pool"])
        for pool, figures in self._snapshot().items():
            running.add_metric([pool], figures["running"])
            queued.add_metric([pool], figures["queued"])
        yield running
        yield queued


class _EngineCollector(Collector):
    def __init__(self, snapshot: Callable[[], Sequence[EngineWorkerStats]]) -> None:
        self._snapshot = snapshot

    def collect(self):  # type: ignore[no-untyped-def]
        restarts = CounterMetricFamily(
            "batchin_engine_restarts",
            "Engine worker deaths followed by a restart attempt",
            labels=["model"],
        )
        up = GaugeMetricFamily("batchin_engine_worker_up", "1 while a worker serves", labels=["model"])
        rss = GaugeMetricFamily(
            "batchin_engine_worker_rss_bytes", "Resident memory of the engine worker", labels=["model"]
        )
        for worker in self._snapshot():
            restarts.add_metric([worker.model], worker.restarts)
            up.add_metric([worker.model], 1 if worker.up else 0)
            if worker.up and worker.rss_bytes is not None:
                rss.add_metric([worker.model], worker.rss_bytes)
        yield restarts
        yield up
        yield rss


class _WriteBehindCollector(Collector):
    def __init__(self, snapshot: Callable[[], dict[str, BufferStats]]) -> None:
        self._snapshot = snapshot

    def collect(self):  # type: ignore[no-untyped-def]
        labels = ["buffer"]
        dropped = CounterMetricFamily(
            "batchin_write_behind_dropped", "Items dropped unwritten from a full buffer", labels=labels
        )
        failed = CounterMetricFamily(
            "batchin_write_behind_failed",
            "Items lost because the store or collector refused them",
            labels=labels,
        )
        pending = GaugeMetricFamily(
            "batchin_write_behind_pending", "Items waiting to be written", labels=labels
        )
        for name, stats in sorted(self._snapshot().items()):
            dropped.add_metric([name], stats.dropped)
            failed.add_metric([name], stats.failed)
            pending.add_metric([name], stats.pending)
        yield dropped
        yield failed
        yield pending


class _StoreCollector(Collector):
    def __init__(self, snapshot: Callable[[], RetentionStats | None]) -> None:
        self._snapshot = snapshot

    def collect(self):  # type: ignore[no-untyped-def]
        rows = GaugeMetricFamily("batchin_store_rows", "Rows per table, at the last purge", labels=["table"])
        files = GaugeMetricFamily(
            "batchin_stored_files", "Stored files per purpose, at the last purge", labels=["purpose"]
        )
        file_bytes = GaugeMetricFamily(
            "batchin_stored_file_bytes",
            "Bytes of stored files per purpose, at the last purge",
            labels=["purpose"],
        )
        purged = GaugeMetricFamily(
            "batchin_retention_purged_rows",
            "Items the last retention purge removed, per kind",
            labels=["kind"],
        )
        finished = GaugeMetricFamily(
            "batchin_retention_last_run_timestamp_seconds", "When the last retention purge finished (unix)"
        )
        stats = self._snapshot()
        if stats is not None:
            for family, figures in (
                (rows, stats.sizes.rows),
                (files, stats.sizes.files),
                (file_bytes, stats.sizes.file_bytes),
                (purged, stats.purged),
            ):
                for name, value in sorted(figures.items()):
                    family.add_metric([name], value)
            finished.add_metric([], stats.finished_at)
        yield from (rows, files, file_bytes, purged, finished)


class InferenceMetrics:
    def __init__(self) -> None:
        self._series: dict[tuple[str, str], CallSeries] = {}
        self._outcomes: dict[tuple[str, str, str], list[float]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        # A call's histograms and outcome, counted without prometheus_client's locks (call_metrics.py).
        self._specs = (
            HistogramSpec("batchin_queue_seconds", "Time spent waiting for an engine slot", _LATENCY_BUCKETS),
            HistogramSpec("batchin_ttft_seconds", "Time from admission to the first token", _LATENCY_BUCKETS),
            HistogramSpec(
                "batchin_inter_token_seconds", "Mean time between tokens, per request", _ITL_BUCKETS
            ),
            HistogramSpec("batchin_tokens_per_second", "Decode speed per request", _TPS_BUCKETS),
        )
        self.registry.register(CallCollector(self._specs, self._series, self._outcomes))

    def series(self, model: str, endpoint: str) -> CallSeries:
        """The per-request histograms of (model, endpoint), from a cache after the first call."""
        found = self._series.get((model, endpoint))
        if found is None:
            found = self._series[(model, endpoint)] = CallSeries(self._specs)
        return found

    def count_request(self, model: str, endpoint: str, status: str) -> None:
        """One request's outcome in `batchin_inference_requests`."""
        key = (model, endpoint, status)
        counted = self._outcomes.get(key)
        if counted is None:
            counted = self._outcomes[key] = [0.0, time.time()]  # (count, created)
        counted[0] += 1.0

    def watch_admission(self, snapshot: Callable[[], dict[str, dict[str, int]]]) -> None:
        self.registry.register(_AdmissionCollector(snapshot))

    def watch_engines(self, snapshot: Callable[[], Sequence[EngineWorkerStats]]) -> None:
        self.registry.register(_EngineCollector(snapshot))

    def watch_write_behind(self, snapshot: Callable[[], dict[str, BufferStats]]) -> None:
        self.registry.register(_WriteBehindCollector(snapshot))

    def watch_stores(self, snapshot: Callable[[], RetentionStats | None]) -> None:
        self.registry.register(_StoreCollector(snapshot))

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
