"""Prometheus metrics of one ingress app, in a registry of its own (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ingress.rejection import Reason

ACCEPTED = "accepted"
# Outcomes besides ACCEPTED and the rejection reasons; every label value is one of these,
# so the label set stays bounded whatever clients send.
KAFKA_OUTCOMES = ("publish_timeout", "kafka_error", "kafka_unreachable", "record_too_large")
INTERNAL_ERROR = "internal_error"
OUTCOMES = (ACCEPTED, *(r.value for r in Reason), *KAFKA_OUTCOMES, INTERNAL_ERROR)


class IngressMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "refstream_ingress_requests",
            "Webhook requests by outcome: accepted, a rejection reason, or why Kafka failed.",
            ["outcome"],
            registry=self.registry,
        )
        # Bound once: exported as 0 before the first occurrence, and no label lookup per request.
        self._by_outcome = {outcome: self.requests.labels(outcome) for outcome in OUTCOMES}
        self.publish_seconds = Histogram(
            "refstream_ingress_publish_seconds",
            "Time from handing an event to the producer until Kafka acknowledged it.",
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "refstream_ingress_in_flight",
            "Webhook requests being handled right now.",
            registry=self.registry,
        )

    def count(self, outcome: str) -> None:
        counter = self._by_outcome.get(outcome) or self._by_outcome[INTERNAL_ERROR]
        counter.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
