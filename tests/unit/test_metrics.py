"""The worker's and the sink's metric definitions, the Grafana dashboard and the Prometheus
scrape config in docker-compose.yml stay in step with the names the code exports."""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

import pytest
import yaml

from ingress.metrics import IngressMetrics
from refstream.metrics import (
    OTHER,
    SinkMetrics,
    WorkerMetrics,
    metric_names,
    serve_worker,
)
from refstream.settings import REPO_ROOT, load_settings
from tests.support.pipeline import free_port

DASHBOARD: dict[str, Any] = json.loads((REPO_ROOT / "deploy/grafana/refstream.json").read_text())
COMPOSE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
NAME = re.compile(r"\b(refstream_[a-z_]+)\b")


def exported() -> set[str]:
    return metric_names(
        [IngressMetrics().registry, WorkerMetrics().registry, SinkMetrics().registry]
    )


def dashboard_names() -> set[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
    return {name for expr in exprs for name in NAME.findall(expr)}


def test_the_dashboard_queries_only_metrics_the_code_exports() -> None:
    unknown = dashboard_names() - exported()
    assert not unknown, f"deploy/grafana/refstream.json queries unknown metrics: {unknown}"


def test_every_exported_metric_has_a_panel() -> None:
    families = {
        f.name
        for r in (IngressMetrics().registry, WorkerMetrics().registry, SinkMetrics().registry)
        for f in r.collect()
    }
    used = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in dashboard_names()}
    assert families - used == set(), "metrics without a panel"


def test_prometheus_scrapes_every_refstream_process_where_it_serves() -> None:
    config = yaml.safe_load(COMPOSE["configs"]["prometheus"]["content"])
    targets = {
        job["job_name"]: t
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
    }
    services = COMPOSE["services"]
    ports = {
        "ingress": services["ingress"]["environment"]["REFSTREAM_INGRESS_PORT"],
        "worker": services["worker"]["environment"]["REFSTREAM_WORKER_METRICS_PORT"],
        "sink": services["sink"]["environment"]["REFSTREAM_SINK_METRICS_PORT"],
    }
    assert targets == {f"refstream-{name}": f"{name}:{port}" for name, port in ports.items()}
    for name in ("worker", "sink"):  # reachable from the prometheus container
        assert services[name]["environment"]["REFSTREAM_METRICS_HOST"] == "0.0.0.0"  # noqa: S104
    # The Grafana provisioning points at the dashboard file and the Prometheus service.
    datasource = yaml.safe_load(COMPOSE["configs"]["grafana-datasource"]["content"])
    assert datasource["datasources"][0]["uid"] == "prometheus"
    assert {p["datasource"]["uid"] for p in DASHBOARD["panels"]} == {"prometheus"}


def test_labels_stay_bounded_whatever_stripe_sends() -> None:
    m = WorkerMetrics()
    m.event("invoice.paid", "decided")
    m.event("x" * 300, "decided")  # an event type the ledger does not know
    m.reward("usd", False, 1_250)
    m.reward("not-a-currency", True, 10)
    m.clawback("clawback", "eur", True, 300)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in m.registry.collect()
        for s in f.samples
        if s.name.endswith("_total")
    }
    assert samples[("refstream_worker_events_total", (("outcome", "decided"), ("type", OTHER)))]
    usd_test = (("currency", "usd"), ("mode", "test"))
    assert samples[("refstream_worker_reward_minor_total", usd_test)] == 1_250
    assert ("refstream_worker_rewards_total", (("currency", OTHER), ("mode", "live"))) in samples
    with pytest.raises(ValueError, match="unknown outcome"):
        m.event("invoice.paid", "whatever")


def test_the_worker_serves_its_metrics_on_the_configured_port() -> None:
    port = free_port()
    metrics = WorkerMetrics()
    metrics.consumer_lag.labels("g", "stripe.events", "0").set(7)
    server = serve_worker(metrics, load_settings({"REFSTREAM_WORKER_METRICS_PORT": str(port)}))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
    assert 'refstream_consumer_lag{group="g",partition="0",topic="stripe.events"} 7.0' in body
    assert serve_worker(metrics, load_settings({})) is None  # unset: not served
