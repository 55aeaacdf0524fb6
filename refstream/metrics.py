"""Prometheus metrics of the worker and the sink, each in a registry of its own.

Definitions only: streams/ and sinks/ record into them (`WorkerMetrics`, `SinkMetrics`) and
serve them with `serve(registry, host, port)` on REFSTREAM_WORKER_METRICS_PORT /
REFSTREAM_SINK_METRICS_PORT (unset: not served). The ingress keeps its own
(ingress/metrics.py). deploy/grafana/refstream.json and the Prometheus scrape config in
docker-compose.yml use these names; tests/unit/test_metrics.py keeps them in step.

Every label value comes from a bounded set, so a hostile or odd Stripe stream cannot grow
the series without limit: event types outside the ones the ledger knows count as "other",
modes are live or test (Connect accounts are not a label: there can be thousands),
currencies are ISO codes as Stripe sends them (three letters, else "other"). No secret and
no personal data (customer, referral code) is ever a label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from refstream.settings import Settings
from streams.ledger.required_events import REQUIRED_EVENTS

OTHER = "other"
KNOWN_EVENT_TYPES = frozenset({e.type for e in REQUIRED_EVENTS} | {"invoice.payment_succeeded"})
# What happened to one stripe.events record in the worker.
EVENT_OUTCOMES = ("decided", "duplicate", "ignored", "dead_lettered")
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_CURRENCY = re.compile(r"^[a-z]{3}$")


def event_type_label(type_: str) -> str:
    return type_ if type_ in KNOWN_EVENT_TYPES else OTHER


def currency_label(currency: str) -> str:
    return currency if _CURRENCY.match(currency or "") else OTHER


def mode_label(livemode: bool) -> str:
    return "live" if livemode else "test"


def _lag(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "refstream_consumer_lag",
        "Records of a topic-partition not yet committed by this process's consumer group.",
        ["group", "topic", "partition"],
        registry=registry,
    )


def _dead_letters(registry: CollectorRegistry) -> Counter:
    return Counter(
        "refstream_dead_letters",
        "Records given up on, by stage (worker, sink) and reason (a short error class).",
        ["stage", "reason"],
        registry=registry,
    )


@dataclass
class WorkerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.events = Counter(
            "refstream_worker_events",
            "stripe.events records handled, by Stripe event type and outcome.",
            ["type", "outcome"],
            registry=r,
        )
        self.dead_letters = _dead_letters(r)
        self.decision_seconds = Histogram(
            "refstream_worker_decision_seconds",
            "Time from reading an event to its outputs acknowledged and its state stored.",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.consumer_lag = _lag(r)
        self.rewards = Counter(
            "refstream_worker_rewards",
            "Reward records emitted (revisions included), by currency and mode.",
            ["currency", "mode"],
            registry=r,
        )
        self.reward_minor = Counter(
            "refstream_worker_reward_minor",
            "Reward amounts emitted, in minor units, by currency and mode (never summed "
            "across currencies).",
            ["currency", "mode"],
            registry=r,
        )
        self.clawbacks = Counter(
            "refstream_worker_clawbacks",
            "Clawback and reinstatement records emitted, by kind, currency and mode.",
            ["kind", "currency", "mode"],
            registry=r,
        )
        self.clawback_minor = Counter(
            "refstream_worker_clawback_minor",
            "Clawback and reinstatement amounts emitted, in minor units.",
            ["kind", "currency", "mode"],
            registry=r,
        )

    def event(self, type_: str, outcome: str) -> None:
        if outcome not in EVENT_OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        self.events.labels(event_type_label(type_), outcome).inc()

    def reward(self, currency: str, livemode: bool, amount_minor: int) -> None:
        labels = (currency_label(currency), mode_label(livemode))
        self.rewards.labels(*labels).inc()
        self.reward_minor.labels(*labels).inc(max(0, amount_minor))

    def clawback(self, kind: str, currency: str, livemode: bool, amount_minor: int) -> None:
        kind = kind if kind in ("clawback", "reinstatement") else OTHER
        labels = (kind, currency_label(currency), mode_label(livemode))
        self.clawbacks.labels(*labels).inc()
        self.clawback_minor.labels(*labels).inc(max(0, amount_minor))


@dataclass
class SinkMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.batch_seconds = Histogram(
            "refstream_sink_batch_seconds",
            "Time from a batch's first record read to its offsets committed.",
            ["table"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.insert_seconds = Histogram(
            "refstream_sink_insert_seconds",
            "Duration of one ClickHouse insert.",
            ["table"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.rows = Counter(
            "refstream_sink_rows", "Rows ClickHouse accepted, by table.", ["table"], registry=r
        )
        self.insert_failures = Counter(
            "refstream_sink_insert_failures",
            "ClickHouse inserts that failed (and will be retried), by table and error class.",
            ["table", "reason"],
            registry=r,
        )
        self.dead_letters = _dead_letters(r)
        self.consumer_lag = _lag(r)


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def metric_names(registries: Iterable[CollectorRegistry]) -> set[str]:
    """Every series name the registries export, labelled yet or not (counters as
    `<name>_total`, histograms as `_bucket`/`_sum`/`_count`): what a PromQL query can use."""
    names: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def serve(registry: CollectorRegistry, host: str, port: int | None) -> Any:
    """Serve `registry` on http://host:port/metrics in a daemon thread (None: not served).
    Returns the server (call `.shutdown()` to stop it), or None."""
    if port is None:
        return None
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def serve_worker(metrics: WorkerMetrics, settings: Settings) -> Any:
    """The worker's metrics on REFSTREAM_METRICS_HOST:REFSTREAM_WORKER_METRICS_PORT."""
    return serve(metrics.registry, settings.metrics_host, settings.streams.metrics_port)


def serve_sink(metrics: SinkMetrics, settings: Settings) -> Any:
    """The sink's metrics on REFSTREAM_METRICS_HOST:REFSTREAM_SINK_METRICS_PORT."""
    return serve(metrics.registry, settings.metrics_host, settings.sink.metrics_port)
