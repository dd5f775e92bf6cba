"""Prometheus metrics for one node (its own registry, so several nodes fit in one process).

Hot-path counters are plain integers on the hub and store, read at scrape time; only
command latency and fan-out time are histograms. Business counters (orders, units, GMV in
minor units, by currency) count the new orders this node placed (`buy_now`, `checkout`);
`process_*` are prometheus-client's process metrics (CPU, RSS, open fds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Reading:
    """One value read at scrape time: a plain integer kept by the hub, store or a service."""

    kind: Literal["gauge", "counter"]
    name: str
    help: str
    read: Callable[[], int]


class Readings(Collector):
    def __init__(self, readings: Iterable[Reading]) -> None:
        self.readings = list(readings)

    def collect(self) -> Iterator[Metric]:
        for r in self.readings:
            family = GaugeMetricFamily if r.kind == "gauge" else CounterMetricFamily
            yield family(r.name, r.help, value=r.read())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.command_seconds = Histogram(
            "livecart_command_seconds", "command handling time by op", ["op", "outcome"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        # (op, outcome) -> its child (ops and error codes are fixed sets)
        self._command_children: dict[tuple[str, str], Histogram] = {}
        self.fanout_seconds = Histogram(
            "livecart_fanout_seconds",
            "event received from pub/sub -> last viewer's frame handed to the kernel",
            registry=self.registry,
            buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
        )

        self.orders = Counter("livecart_orders", "new orders placed by this node",
                              ["currency"], registry=self.registry)
        self.units = Counter("livecart_units", "units in the new orders placed by this node",
                             ["currency"], registry=self.registry)
        self.gmv = Counter("livecart_gmv_minor", "order totals placed by this node, in minor "
                           "units of the currency (cents for USD)", ["currency"],
                           registry=self.registry)
        ProcessCollector(registry=self.registry)

    def attach(self, readings: Iterable[Reading]) -> None:
        self.registry.register(Readings(readings))

    def order_placed(self, order: Mapping[str, Any]) -> None:
        """A new order (not an idempotent retry) this node placed."""
        currency = str(order["currency"])
        self.orders.labels(currency).inc()
        self.units.labels(currency).inc(sum(int(line["qty"]) for line in order["lines"]))
        self.gmv.labels(currency).inc(int(order["total"]))

    def observe_command(self, op: str, seconds: float, error: str | None) -> None:
        key = (op, error or "ok")
        child = self._command_children.get(key)
        if child is None:  # labels() takes a lock and builds a key on every call
            child = self._command_children[key] = self.command_seconds.labels(*key)
        child.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
