"""The worker's Stripe API lookup: stripe-python against stripe-mock (Stripe's own API
description, canned data) and against a stand-in API that holds real metadata, plus the
whole path through the ingress and a worker."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from refstream import topics
from refstream.settings import KafkaSettings, Secret
from streams.ledger.attribution import MetadataKeys
from streams.ledger.programs import parse_programs_toml
from streams.worker.stripe_lookup import CustomerLookup, LookupConfig
from streams.worker_programs import apply_programs
from tests.support.factories import PRE_BASIL, StripeFactory, subscription_story
from tests.support.pipeline import Pipeline, free_port
from tests.support.processes import read_topic, wait_until

API_KEY = "sk_test_lookup_" + "x" * 16
STRIPE_MOCK = "http://127.0.0.1:12111"


def customer_json(customer_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": customer_id, "object": "customer", "livemode": False, "metadata": {}, **fields}


@pytest.fixture
async def fake_stripe() -> AsyncIterator[tuple[str, dict[str, dict], list[str]]]:
    """A stand-in Stripe API: GET /v1/customers/{id} from a dict; records what it served."""
    customers: dict[str, dict] = {}
    served: list[str] = []

    async def retrieve(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {API_KEY}"
        customer_id = request.match_info["customer_id"]
        served.append(customer_id)
        account = request.headers.get("Stripe-Account")
        if account is not None:  # a connected account's customers live apart
            customer_id = f"{account}/{customer_id}"
        if customer_id == "cus_boom":
            return web.json_response(
                {"error": {"type": "api_error", "message": "boom"}}, status=500
            )
        if customer_id not in customers:
            error = {"type": "invalid_request_error", "code": "resource_missing",
                     "message": f"No such customer: '{customer_id}'"}  # fmt: skip
            return web.json_response({"error": error}, status=404)
        return web.json_response(customers[customer_id])

    app = web.Application()
    app.router.add_get("/v1/customers/{customer_id}", retrieve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", customers, served
    finally:
        await runner.cleanup()


def lookup_for(base: str) -> CustomerLookup:
    return CustomerLookup(LookupConfig(Secret(API_KEY), base, MetadataKeys()))


async def test_lookup_reads_the_referral_from_customer_metadata(fake_stripe: Any) -> None:
    base, customers, _ = fake_stripe
    customers["cus_A"] = customer_json("cus_A", metadata={"cello_ucc": "ACME", "new_user_id": "u1"})
    customers["cus_none"] = customer_json("cus_none")
    customers["cus_gone"] = {"id": "cus_gone", "object": "customer", "deleted": True}
    lookup = lookup_for(base)
    try:
        found = await lookup.touch("cus_A", 1_800_000_000)
        assert found is not None
        assert (found.code, found.new_user_id, found.source) == ("ACME", "u1", "stripe_lookup")
        assert await lookup.touch("cus_none", 1) is None
        assert await lookup.touch("cus_gone", 1) is None
    finally:
        await lookup.close()


async def test_a_connect_accounts_customer_is_read_with_the_stripe_account_header(
    fake_stripe: Any,
) -> None:
    base, customers, _ = fake_stripe
    customers["acct_1Seller/cus_A"] = customer_json("cus_A", metadata={"cello_ucc": "SELLER"})
    customers["cus_A"] = customer_json("cus_A", metadata={"cello_ucc": "PLATFORM"})
    lookup = lookup_for(base)
    try:
        found = await lookup.touch("cus_A", 1, account="acct_1Seller")
        platform = await lookup.touch("cus_A", 1)
    finally:
        await lookup.close()
    assert found is not None and found.code == "SELLER"
    assert platform is not None and platform.code == "PLATFORM"


async def test_api_failures_leave_the_revenue_parked(
    fake_stripe: Any, caplog: pytest.LogCaptureFixture
) -> None:
    base, _, served = fake_stripe
    lookup = lookup_for(base)
    try:
        assert await lookup.touch("cus_missing", 1) is None
        assert await lookup.touch("cus_boom", 1) is None
    finally:
        await lookup.close()
    assert "cus_boom" in served
    assert API_KEY not in caplog.text  # failures are logged without the key


async def test_lookup_speaks_the_real_api_shape_of_stripe_mock() -> None:
    try:
        async with aiohttp.ClientSession() as session, session.get(STRIPE_MOCK) as _:
            pass
    except aiohttp.ClientError:
        if os.environ.get("CI"):
            pytest.fail("stripe-mock is not running on :12111 (scripts/test starts it)")
        pytest.skip("stripe-mock is not running on :12111 (scripts/test starts it)")
    lookup = lookup_for(STRIPE_MOCK)
    try:
        # stripe-mock answers with its canned customer, whose metadata is empty.
        assert await lookup.touch("cus_123", 1) is None
    finally:
        await lookup.close()


@pytest.mark.e2e
async def test_a_customer_created_before_refstream_is_attributed_by_lookup(
    kafka_settings: KafkaSettings, tmp_path: Path, fake_stripe: Any
) -> None:
    base, customers, served = fake_stripe
    f = StripeFactory(PRE_BASIL, seed=77)
    story = subscription_story(f, code=None, code_on="none", months=2)
    assert story.customer_id
    # Its customer.created predates refstream: only the metadata in Stripe knows the code.
    customers[story.customer_id] = customer_json(story.customer_id, metadata={"cello_ucc": "OLD"})
    revenue = [e for e in story.events if e["type"] != "customer.created"]
    await apply_programs(
        kafka_settings, parse_programs_toml('[[program]]\nid = "p"\nrate = "20%"\n')
    )
    pipeline = Pipeline(
        kafka_settings,
        tmp_path,
        {
            "REFSTREAM_STRIPE_API_KEY": API_KEY,
            "REFSTREAM_STRIPE_API_BASE": base,
            "REFSTREAM_LOOKUP_AFTER_S": "1",
            "REFSTREAM_ONE_TIME_WINDOW_S": "5",
        },
        workers=1,
    )
    try:
        await pipeline.start()
        await pipeline.post(revenue)

        async def rewarded() -> bool:
            found = await read_topic(
                kafka_settings.bootstrap, kafka_settings.topic(topics.REWARDS), "reward"
            )
            return len({r["invoice_id"] for _, r in found}) == len(story.invoices)

        await wait_until(rewarded, 120, 1, "rewards settled by the Stripe lookup")
        await asyncio.sleep(3)  # a second lookup would show in `served` now
        attributions = await read_topic(
            kafka_settings.bootstrap, kafka_settings.topic(topics.ATTRIBUTIONS), "attribution"
        )
    finally:
        pipeline.stop()
    assert {(r["referral_code"], r["source"]) for _, r in attributions} == {
        ("OLD", "stripe_lookup")
    }
    assert served.count(story.customer_id) == 1
