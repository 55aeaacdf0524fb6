"""One simulated pipeline and one headless Chromium for every browser test of the
dashboard: the ingress, a worker and the sink (which serves the report API and the
dashboard) as subprocesses on the real broker, fed by the simulator's signed Stripe
stream, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from refstream.settings import REPO_ROOT, KafkaSettings, Secret, Settings
from refstream.topics import ensure_topics
from simulator.deliver import DeliveryLimits, deliver
from simulator.plan import DeliveryOptions, delivery_plan
from simulator.scenario import Scenario, ScenarioConfig, generate
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.integration.test_pipeline_e2e import by_referrer, expected_referrers, report
from tests.support.pipeline import SECRET, Pipeline, free_port
from tests.support.processes import RefstreamProcess, wait_until

USER, PASSWORD = "grace", "correct-horse-battery-staple"
T = TypeVar("T")


def blocking(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end from a test: in a thread of its own, because Playwright's
    sync API keeps an event loop running in the test's thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


ARTIFACTS: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in ARTIFACTS:
        terminalreporter.write_line(f"dashboard screenshots: {path}")


def chromium_path() -> str:
    path = os.environ.get("REFSTREAM_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail(
            "the dashboard's browser tests need Chromium: `apt-get install -y chromium` "
            "(scripts/test does it as root) or set REFSTREAM_CHROMIUM"
        )
    return path


@dataclass
class Running:
    kafka: KafkaSettings
    pipeline: Pipeline
    sink: RefstreamProcess
    query_port: int
    scenario: Scenario
    artifacts: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def post(self, scenario: Scenario, seed: int) -> None:
        plan = delivery_plan(scenario.events, DeliveryOptions(seed=seed))
        url = f"http://127.0.0.1:{self.pipeline.port}/webhooks/stripe"
        result = blocking(
            deliver(plan, url=url, secret=Secret(SECRET),
                    limits=DeliveryLimits(concurrency=8, deadline_s=300))
        )  # fmt: skip
        assert result.ok, result.to_json()

    def report(self, name: str, **params: str) -> list[dict[str, Any]]:
        """Rows of a named report, from the report API (not through the dashboard)."""

        async def fetch() -> dict[str, Any]:
            url = f"{self.base}/reports/{name}"
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, params={"limit": "10000", **params}) as response,
            ):
                assert response.status == 200, await response.text()
                body: dict[str, Any] = await response.json()
                return body

        body = blocking(fetch())
        return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


# Module scope (there is one module): Playwright's sync API runs an event loop in the test
# thread while it is open, which would break every later test that calls asyncio.run.
@pytest.fixture(scope="module")
def running(base_settings: Settings, broker: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Running]:  # fmt: skip
    workdir = tmp_path_factory.mktemp("dashboard-pipeline")
    # Kept after the run (pytest rotates its temporary folders): .local/artifacts/dashboard,
    # or REFSTREAM_TEST_ARTIFACTS.
    artifacts = Path(os.environ.get("REFSTREAM_TEST_ARTIFACTS")
                     or REPO_ROOT / ".local" / "artifacts") / "dashboard"  # fmt: skip
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    kafka = replace(base_settings.kafka, bootstrap=broker,
                    topic_prefix=f"t{uuid.uuid4().hex[:10]}.", events_partitions=2)  # fmt: skip
    blocking(ensure_topics(kafka))
    scenario = generate(ScenarioConfig(customers=16, months=3, seed=13, connect_share=0.2))
    blocking(apply_programs(kafka, parse_programs_toml(scenario.program.toml())))
    query_port = free_port()
    pipeline = Pipeline(kafka, workdir, {
        "REFSTREAM_ATTRIBUTION_WINDOW_S": "15",
        "REFSTREAM_ONE_TIME_WINDOW_S": "10",
        "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{workdir / 'clickhouse'}",
        "REFSTREAM_QUERY_API_PORT": str(query_port),
        "REFSTREAM_SINK_BATCH_MAX_WAIT_MS": "300",
        "REFSTREAM_DASHBOARD_USERS": f"{USER}:{PASSWORD}",
        # Own consumer groups: other test runs may share the broker.
        "REFSTREAM_SINK_GROUP_ID": f"sinks-{kafka.topic_prefix}",
        "REFSTREAM_WORKER_APP_ID": f"worker-{kafka.topic_prefix.rstrip('.')}",
    }, workers=1)  # fmt: skip
    sink = RefstreamProcess(["sink"], pipeline.env, workdir / "sink.log")
    run = Running(kafka, pipeline, sink, query_port, scenario, artifacts)
    try:
        blocking(pipeline.start())
        sink.start()
        run.post(scenario, seed=2)
        want = expected_referrers(scenario.expected_document())
        want_revenue = {(r["currency"], r["ledger_mode"]): (r["referred_minor"], r["organic_minor"])
                        for r in scenario.expected_document()["revenue"]}  # fmt: skip

        seen: dict[str, Any] = {}

        async def settled() -> bool:
            rows = await report(query_port, "referrer_rewards")
            revenue = await report(query_port, "revenue_split")
            if rows is None or revenue is None:
                return False
            got = {(r["currency"], r["mode"]): (int(r["referred_minor"]), int(r["organic_minor"]))
                   for r in revenue}  # fmt: skip
            seen["referrers"], seen["revenue"] = by_referrer(rows), got
            return by_referrer(rows) == want and got == want_revenue

        try:
            blocking(wait_until(settled, 240, 2, "the pipeline to settle"))
        except TimeoutError:
            diff = {k: (seen.get("referrers", {}).get(k), v) for k, v in want.items()
                    if seen.get("referrers", {}).get(k) != v}  # fmt: skip
            pytest.fail(
                f"pipeline did not settle: referrers (got, want) {diff}; revenue "
                f"{seen.get('revenue')} want {want_revenue}\n{sink.log_tail(1500)}"
            )
        yield run
    finally:
        sink.stop()
        pipeline.stop()
        ARTIFACTS.append(artifacts)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start.
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
    yield browser
    browser.close()
