"""A call's histograms and outcome counter render as prometheus_client's Histogram and Counter
render the same observations (call_metrics.py)."""

from __future__ import annotations

import math
import re
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from batchin.core.serving.metrics import _ITL_BUCKETS, _LATENCY_BUCKETS, _TPS_BUCKETS, InferenceMetrics

_CREATED = re.compile(r"^(\S+_created\{[^}]*\}) \S+$", re.MULTILINE)

# Bounds themselves, values between, below the first, past the last, zero, and sums whose float
# additions depend on their order.
_VALUES = [0.0, 0.005, 0.0051, 0.1, 0.3, 1e-9, 59.999, 60.0, 61.0, 1e6, 0.1, 0.2, 0.7, 1 / 3, 2.5]


def _reference(observations: list[tuple[str, str, str, list[float]]]) -> str:
    registry = CollectorRegistry(auto_describe=True)
    labels = ["model", "endpoint"]
    histograms = [
        Histogram(name, doc, labels, buckets=buckets, registry=registry)
        for name, doc, buckets in (
            ("batchin_queue_seconds", "Time spent waiting for an engine slot", _LATENCY_BUCKETS),
            ("batchin_ttft_seconds", "Time from admission to the first token", _LATENCY_BUCKETS),
            ("batchin_inter_token_seconds", "Mean time between tokens, per request", _ITL_BUCKETS),
            ("batchin_tokens_per_second", "Decode speed per request", _TPS_BUCKETS),
        )
    ]
    requests = Counter(
        "batchin_inference_requests", "Inference requests by outcome", [*labels, "status"], registry=registry
    )
    for model, endpoint, status, values in observations:
        requests.labels(model, endpoint, status).inc()
        for histogram, value in zip(histograms, values, strict=True):
            histogram.labels(model, endpoint).observe(value)
    return generate_latest(registry).decode()


def _ours(observations: list[tuple[str, str, str, list[float]]]) -> str:
    metrics = InferenceMetrics()
    for model, endpoint, status, values in observations:
        metrics.count_request(model, endpoint, status)
        series = metrics.series(model, endpoint)
        for histogram, value in zip(
            (series.queue_seconds, series.ttft_seconds, series.inter_token_seconds, series.tokens_per_second),
            values,
            strict=True,
        ):
            histogram.observe(value)
    return metrics.render().decode()


def _without_created_times(text: str) -> str:
    return _CREATED.sub(r"\1 <created>", text)


def _observations() -> list[tuple[str, str, str, list[float]]]:
    made = []
    for n, value in enumerate(_VALUES):
        model = "m-a" if n % 3 else "m-b"
        endpoint = "chat.completions" if n % 2 else "completions"
        status = "succeeded" if n % 4 else "cancelled"
        made.append((model, endpoint, status, [value, value * 2, value / 7, value * 100]))
    return made


def test_the_same_observations_render_the_same_text() -> None:
    observations = _observations()
    assert _without_created_times(_ours(observations)) == _without_created_times(_reference(observations))


def test_no_observations_render_the_same_headers() -> None:
    assert _ours([]) == _reference([])


def test_created_is_when_the_series_was_first_used() -> None:
    before = time.time()
    text = _ours([("m", "chat.completions", "succeeded", [0.1, 0.1, 0.1, 10.0])])
    after = time.time()
    stamps = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if "_created{" in line]
    assert len(stamps) == 5  # four histograms and the counter
    assert all(before <= stamp <= after for stamp in stamps)


def test_nan_counts_in_the_sum_and_no_bucket_as_prometheus_does() -> None:
    observations = [("m", "e", "succeeded", [math.nan, 0.1, 0.1, 1.0])]
    assert _without_created_times(_ours(observations)) == _without_created_times(_reference(observations))
