"""The pure decision code imports nothing of Kafka, ClickHouse, the settings or the worker
runtime."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import sinks.revenue
import streams.corrections
import streams.ledger


def test_the_pure_packages_load_without_kafka_settings_or_the_worker() -> None:
    modules = [
        f"{package.__name__}.{info.name}"
        for package in (streams.ledger, streams.corrections, sinks.revenue)
        for info in pkgutil.iter_modules(package.__path__)
    ]
    assert "streams.ledger.customer_ledger" in modules and len(modules) > 20
    assert "sinks.revenue.windows" in modules
    modules.append("sinks.balance_core")  # the balance ledger's decisions
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules"
        " if m.split('.')[0] in ('aiokafka', 'clickhouse_connect')"
        " or m in ('refstream.settings', 'refstream.topics') or m.startswith('streams.worker')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
