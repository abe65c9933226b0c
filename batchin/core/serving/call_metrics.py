"""A finished call's histograms and outcome counter, counted in plain Python and exported at scrape.

prometheus_client's `Histogram.observe` takes a lock per value it adds (the sum, then the bucket)
and walks the bounds: ~1.6 µs, four a call, plus the outcome counter's lock. Every call is counted
on the event loop's thread, so here an observation is a bisect and two additions on plain fields,
and the scrape (`CallCollector.collect`) writes the samples `Histogram` and `Counter` would have
written for the same observations: the same names, labels, order and values (the sums added in
the same order), `_created` the time the series was first used.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

__all__ = ["CallCollector", "CallHistogram", "CallSeries", "HistogramSpec"]

# How `Histogram` writes a bucket's bound in its `le` label (prometheus_client leaves it untyped).
_le_text: Callable[[float], str] = floatToGoString


class HistogramSpec:
    """One histogram's name, help text and bucket bounds (+Inf added, as `Histogram` adds it)."""

    __slots__ = ("bounds", "documentation", "labels", "name")

    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = (*(float(b) for b in bounds), INF)
        self.labels = tuple(_le_text(b) for b in self.bounds)


class CallHistogram:
    """One series of one histogram: per-bucket counts and the sum."""

    __slots__ = ("_bounds", "counts", "created", "total")

    def __init__(self, spec: HistogramSpec, created: float) -> None:
        self._bounds = spec.bounds
        self.counts = [0] * len(spec.bounds)
        self.total = 0.0
        self.created = created

    def observe(self, amount: float) -> None:
        """As `Histogram.observe`: the first bucket whose bound is at least `amount` (none for NaN)."""
        self.total += amount
        index = bisect_left(self._bounds, amount)
        if index < len(self._bounds) and amount <= self._bounds[index]:
            self.counts[index] += 1


class CallSeries:
    """One (model, endpoint)'s histograms."""

    __slots__ = ("inter_token_seconds", "queue_seconds", "tokens_per_second", "ttft_seconds")

    def __init__(self, specs: Sequence[HistogramSpec]) -> None:
        created = time.time()
        queue, ttft, itl, tps = specs
        self.queue_seconds = CallHistogram(queue, created)
        self.ttft_seconds = CallHistogram(ttft, created)
        self.inter_token_seconds = CallHistogram(itl, created)
        self.tokens_per_second = CallHistogram(tps, created)

    def histograms(self) -> tuple[CallHistogram, ...]:
        return self.queue_seconds, self.ttft_seconds, self.inter_token_seconds, self.tokens_per_second


class CallCollector(Collector):
    """The four histograms by (model, endpoint), then the outcome counter by (model, endpoint,
    status): what four `Histogram(..., ["model", "endpoint"])` and a `Counter` registered in that
    order exported."""

    def __init__(
        self,
        specs: Sequence[HistogramSpec],
        series: dict[tuple[str, str], CallSeries],
        outcomes: dict[tuple[str, str, str], list[float]],
    ) -> None:
        self._specs = specs
        self._series = series
        self._outcomes = outcomes  # (count, created) per key

    def describe(self) -> Iterator[Metric]:
        # Names for the registry's duplicate check, without a scrape's worth of samples.
        for spec in self._specs:
            yield Metric(spec.name, spec.documentation, "histogram")
        yield Metric("batchin_inference_requests", "Inference requests by outcome", "counter")

    def collect(self) -> Iterator[Metric]:
        for position, spec in enumerate(self._specs):
            family = Metric(spec.name, spec.documentation, "histogram")
            for (model, endpoint), series in list(self._series.items()):
                labels = {"model": model, "endpoint": endpoint}
                _add_histogram(family, spec, labels, series.histograms()[position])
            yield family
        requests = Metric("batchin_inference_requests", "Inference requests by outcome", "counter")
        for (model, endpoint, status), (count, created) in list(self._outcomes.items()):
            labels = {"model": model, "endpoint": endpoint, "status": status}
            requests.add_sample("batchin_inference_requests_total", labels, count)
            requests.add_sample("batchin_inference_requests_created", labels, created)
        yield requests


def _add_histogram(family: Metric, spec: HistogramSpec, labels: dict[str, str], h: CallHistogram) -> None:
    cumulative = 0.0
    for le, count in zip(spec.labels, list(h.counts), strict=True):
        cumulative += count
        family.add_sample(f"{spec.name}_bucket", {**labels, "le": le}, cumulative)
    family.add_sample(f"{spec.name}_count", labels, cumulative)
    family.add_sample(f"{spec.name}_sum", labels, h.total)
    family.add_sample(f"{spec.name}_created", labels, h.created)
