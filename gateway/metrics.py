"""Prometheus metrics of one gateway process, in its own registry (no module-level state)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class _Live(Collector):
    """Gauges read at scrape time from the objects that own the numbers."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self):  # type: ignore[no-untyped-def]
        for name, value in self._read().items():
            family = GaugeMetricFamily(f"hl_{name}", f"current {name.replace('_', ' ')}")
            family.add_metric([], value)
            yield family


class _LabelledCounts(Collector):
    """One counter family read at scrape time from (label values, count) pairs."""

    def __init__(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...],
        read: Callable[[], Iterable[tuple[Sequence[str], float]]],
    ) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self):  # type: ignore[no-untyped-def]
        family = CounterMetricFamily(self._name, self._doc, labels=list(self._labels))
        for values, count in sorted(self._read()):
            family.add_metric(list(values), count)
        yield family


_SHARD_GAUGES = (
    ("up", "1 while the shard answers its stats"),
    ("active_cells", "cells in the shard's memory"),
    ("calls_per_s", "commands per second lately (HL_LOAD_TAU_S)"),
    ("batch_size_mean", "commands per group-commit batch, mean since the shard started"),
    ("commit_ms_mean", "milliseconds per group-commit batch, mean since the shard started"),
    ("gc_longest_pause_seconds", "the shard process's longest collector pause since it settled"),
)
_SHARD_COUNTERS = (
    ("commands", "commands committed by the shard"),
    ("batches", "group-commit batches of the shard"),
    ("commit_s", "seconds the shard spent committing batches"),
    ("gc_full_collections", "full collections of the shard process (each stops its loop)"),
    ("gc_full_pause_seconds", "seconds the shard process was stopped by full collections"),
    ("gc_young_pause_seconds", "seconds the shard process was stopped by young collections"),
)


class _Shards(Collector):
    """Per-shard families (``hl_shard_*{shard,node}``) and the hot cells
    (``hl_cell_msgs_per_s{cell,shard}``), from the last cluster view (services/cluster_view.py)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self):  # type: ignore[no-untyped-def]
        view = self._read()
        shards = view.get("shards", [])
        labels = ["shard", "node"]
        kinds = ((GaugeMetricFamily, _SHARD_GAUGES), (CounterMetricFamily, _SHARD_COUNTERS))
        for kind, table in kinds:
            for name, doc in table:
                family = kind(f"hl_shard_{name}", doc, labels=labels)
                for row in shards:
                    node = str(row.get("node") or "")
                    family.add_metric([row["id"], node], float(row.get(name, 0)))
                yield family
        hot = GaugeMetricFamily(
            "hl_cell_msgs_per_s",
            "commands per second to the hottest cells",
            labels=["cell", "shard"],
        )
        for cell in view.get("hot_cells", []):
            hot.add_metric([str(cell["cell"]), str(cell["shard"])], float(cell["msgs_per_s"]))
        yield hot
        version = GaugeMetricFamily("hl_placement_version", "the placement table's version")
        version.add_metric([], float(view.get("placement_version", 0)))
        yield version


class Metrics:
    """Counters and histograms the gateway updates as it serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hl_ws_requests",
            "websocket requests by op and outcome code",
            ["op", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hl_ws_request_seconds",
            "websocket request latency by op",
            ["op"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.connections = Counter(
            "hl_ws_connections", "websocket connections accepted", registry=self.registry
        )
        self.closed = Counter(
            "hl_ws_closed",
            "websocket sessions closed by close code",
            ["code"],
            registry=self.registry,
        )
        self.rest = Counter(
            "hl_http_requests",
            "REST requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.up = Gauge("hl_up", "1 while the gateway serves", registry=self.registry)
        self.up.set(1)
        self._request_children: dict[tuple[str, str], tuple[Any, Any]] = {}

    def request_done(self, op: str, code: str, seconds: float) -> None:
        """Count a websocket request and observe its latency (the labelled children are looked
        up once per (op, code), not on every request)."""
        children = self._request_children.get((op, code))
        if children is None:
            children = (self.requests.labels(op, code), self.latency.labels(op))
            self._request_children[(op, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, read: Callable[[], dict[str, float]]) -> None:
        self.registry.register(_Live(read))

    def watch_counts(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...],
        read: Callable[[], Iterable[tuple[Sequence[str], float]]],
    ) -> None:
        """Export counts kept by the object that owns them as the counter ``hl_<name>``."""
        self.registry.register(_LabelledCounts(f"hl_{name}", doc, labels, read))

    def watch_shards(self, read: Callable[[], dict[str, Any]]) -> None:
        """Export the shards' stats of the cluster view ``read()`` returns (kept fresh by the
        /metrics handler)."""
        self.registry.register(_Shards(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
