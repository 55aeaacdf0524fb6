"""The backfill's end-to-end claim, on the real pipeline (ingress + Faust worker on the real
broker): an account's history read back from a stateful Stripe stand-in by
`refstream backfill` (Events API for the last 30 days, objects before), while part of the
same history also arrives as live signed webhooks, yields exactly the ledger the simulator
computed on its own; and a second, from-scratch backfill changes nothing."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from refstream import topics
from refstream.settings import REPO_ROOT, KafkaSettings
from simulator.scenario import ScenarioConfig, generate
from simulator.stripe_factory import BASIL, DAY
from sinks.consumer import group_lag
from streams.ledger.programs import parse_programs_toml
from streams.worker_programs import apply_programs
from tests.integration.test_pipeline_e2e import expected_referrers, kafka_totals
from tests.support.pipeline import Pipeline, free_port
from tests.support.processes import read_topic, wait_until
from tests.support.stripe_standin import StripeStandin

pytestmark = pytest.mark.e2e


def scenario_ending_now(config: ScenarioConfig, now: int) -> Any:
    """The scenario shifted so that its last event lies an hour before `now`: its last ~30
    days are in the stand-in's Events API, everything before only in its objects."""
    span = max(e["created"] for e in generate(config).events) - config.start
    return generate(ScenarioConfig(**{**config.__dict__, "start": now - span - 3600}))


@pytest.fixture
async def standin_url(request: pytest.FixtureRequest) -> AsyncIterator[tuple[StripeStandin, str]]:
    server: StripeStandin = request.param
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def backfill(
    kafka: KafkaSettings, url: str, state_dir: Path, since: str, account: str | None, live: bool
) -> str:
    """`refstream backfill` as a subprocess; its output when it fails the test."""
    env = {
        **os.environ,
        "REFSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "REFSTREAM_TOPIC_PREFIX": kafka.topic_prefix,
        "REFSTREAM_EVENTS_PARTITIONS": str(kafka.events_partitions),
        "REFSTREAM_STRIPE_API_KEY": "sk_live_standin" if live else "sk_test_standin",
        "REFSTREAM_STRIPE_API_BASE": url,
        "REFSTREAM_BACKFILL_STATE_DIR": str(state_dir),
        "REFSTREAM_BACKFILL_REQUESTS_PER_S": "500",
    }
    args = ["backfill", "--since", since, "--api-version", BASIL, "--slice-days", "7"]
    args += ["--account", account] if account else []
    args += ["--live"] if live else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "refstream.cli", *args, env=env, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()[-3000:]
    return out.decode()


async def backfill_everything(
    kafka: KafkaSettings, server: StripeStandin, url: str, state_dir: Path, since: str
) -> None:
    """One run per account and mode, as an operator would (a key sees one mode)."""
    for account in server.accounts():
        for live in (False, True):
            await backfill(kafka, url, state_dir, since, account, live)


async def output_ids(kafka: KafkaSettings) -> tuple[set[str], set[str]]:
    rewards = await read_topic(kafka.bootstrap, kafka.topic(topics.REWARDS), "reward")
    clawbacks = await read_topic(kafka.bootstrap, kafka.topic(topics.CLAWBACKS), "clawback")
    return (
        {f"{r['reward_id']}@{r['revision']}" for _, r in rewards},
        {c["clawback_id"] for _, c in clawbacks},
    )


NOW = int(time.time())
SCENARIO = scenario_ending_now(
    ScenarioConfig(customers=30, months=4, seed=12, old_api_share=0.0, basil_share=1.0), NOW
)


@pytest.mark.parametrize(
    "standin_url",
    [StripeStandin(list(SCENARIO.events), now=NOW, api_version=BASIL, rate_limit_every=23)],
    indirect=True,
)
async def test_backfill_overlapping_webhooks_yields_the_simulators_ledger_exactly_once(
    kafka_settings: KafkaSettings, tmp_path: Path, standin_url: tuple[StripeStandin, str]
) -> None:
    kafka = kafka_settings
    server, url = standin_url
    events = list(SCENARIO.events)
    want = {k: v[:2] for k, v in expected_referrers(SCENARIO.expected_document()).items()}
    assert any(clawed for _, clawed in want.values()), "the scenario must claw something back"
    # Older history the Events API no longer holds must be a real part of the claim.
    old = [e for e in events if e["created"] < NOW - 30 * DAY]
    assert len(old) > len(events) // 2
    await apply_programs(kafka, parse_programs_toml(SCENARIO.program.toml()))
    since = datetime.fromtimestamp(events[0]["created"], UTC).strftime("%Y-%m-%d")

    pipeline = Pipeline(
        kafka,
        tmp_path,
        {"REFSTREAM_ATTRIBUTION_WINDOW_S": "30", "REFSTREAM_ONE_TIME_WINDOW_S": "20"},
        workers=1,
    )
    got: dict[tuple, tuple[int, int]] = {}
    try:
        await pipeline.start()
        # Live webhooks of the last 45 days (some also in the Events API, some only in the
        # objects) arrive while the backfill runs.
        live = [e for e in events if e["created"] >= NOW - 45 * DAY]
        await asyncio.gather(
            pipeline.post(live, concurrency=8),
            backfill_everything(kafka, server, url, tmp_path / "state", since),
        )
        assert server.rate_limited > 0  # 429s were met and waited out

        async def ledger_matches() -> bool:
            got.clear()
            got.update(await kafka_totals(kafka))
            return got == want

        try:
            await wait_until(ledger_matches, 240, 3, "the ledger to equal the simulator's")
        except TimeoutError:
            diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
            pytest.fail(f"(got, want): {diff}; extra {set(got) - set(want)}\n{pipeline.logs()}")
        before = await output_ids(kafka)

        # From scratch again (no cursors): every event is published a second time.
        await backfill_everything(kafka, server, url, tmp_path / "state-again", since)
        group = kafka.topic("refstream-worker")

        async def worker_caught_up() -> bool:
            return await group_lag(kafka, group, [kafka.topic(topics.STRIPE_EVENTS)]) == 0

        await wait_until(worker_caught_up, 240, 2, "the worker to read the second backfill")
        assert await kafka_totals(kafka) == want
        assert await output_ids(kafka) == before  # not one new reward revision or clawback
    finally:
        pipeline.stop()
