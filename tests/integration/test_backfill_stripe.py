"""The backfill's side that talks to Stripe: request shapes against stripe-mock (Stripe's
own OpenAPI description; it refuses unknown parameters), and paging, 429s, Connect and
resumption against the stateful stand-in (tests/support/stripe_standin.py). Publishing is
recorded here; tests/integration/test_backfill_e2e.py runs the real pipeline."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import stripe
from aiohttp import web

from backfill.cursor import CursorStore, Scope
from backfill.run import Backfill, Slice, Totals, plan_slices
from backfill.sources import ALL_SOURCES, EVENTS, OBJECT_SOURCES, sources_named
from backfill.stripe_pages import StripePages
from ingress.envelope import Envelope
from ingress.publisher import Receipt
from simulator.scenario import ScenarioConfig, generate
from simulator.stripe_factory import BASIL
from tests.support.pipeline import free_port
from tests.support.stripe_standin import StripeStandin

STRIPE_MOCK = "http://127.0.0.1:12111"
DAY = 86_400


class Recorder:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def publish(self, envelope: Envelope) -> Receipt:
        self.envelopes.append(envelope)
        return Receipt(0, len(self.envelopes))


class NoProgress:
    def update(self, slice_: Slice, totals: Totals) -> None:
        pass


def stripe_mock_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 12111)) == 0


async def test_every_request_has_a_shape_stripe_mock_accepts(tmp_path: Path) -> None:
    if not stripe_mock_up():
        pytest.fail("stripe-mock is not running on :12111 (scripts/test starts it)")
    client = stripe.StripeClient("sk_test_123", base_addresses={"api": STRIPE_MOCK})
    pages = StripePages(client, requests_per_s=200, account="acct_123", api_version=BASIL)
    store = CursorStore(tmp_path, Scope("acct_123", livemode=True, since=0))
    recorder = Recorder()
    # stripe-mock's fixtures are live-mode objects dated around 2002.
    runner = Backfill(pages, recorder, store, BASIL, "acct_123", livemode=True)
    slices = [
        Slice(0, 2_000_000_000, OBJECT_SOURCES),
        Slice(0, 2_000_000_000, sources_named([EVENTS])),
    ]
    totals = await runner.run(slices, NoProgress())
    # One request per source (stripe-mock answers one page), each accepted (else 400s).
    assert pages.requests == len(ALL_SOURCES)
    # Its canned fixtures mix modes; those of the other mode are left out, never published.
    assert totals.objects_read + runner.other_mode == len(ALL_SOURCES)
    # Its fixtures are canned (e.g. a charge with status "succeeded"): what became events
    # went through the ingress envelope, marked as backfilled and routed by its key rule.
    assert recorder.envelopes
    for envelope in recorder.envelopes:
        assert envelope.backfill in ("objects", "events_api")
        assert envelope.account == "acct_123"
    assert store.done_until("customers") == 2_000_000_000


@pytest.fixture
async def standin() -> AsyncIterator[tuple[StripeStandin, str]]:
    scenario = generate(
        ScenarioConfig(customers=24, months=3, seed=3, old_api_share=0.0, basil_share=1.0)
    )
    events = list(scenario.events)
    now = max(e["created"] for e in events) + 10 * DAY  # the last ~20 days are in events
    server = StripeStandin(events, now=now, api_version=BASIL, page_cap=2, rate_limit_every=5)
    runner = web.AppRunner(server.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def objects_of(events: list[dict], account: str | None, livemode: bool) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in events:
        if e.get("account") == account and e["livemode"] == livemode:
            obj = e["data"]["object"]
            out.setdefault(obj["object"], set()).add(obj["id"])
    return out


async def test_pages_429s_and_accounts_against_the_standin(
    standin: tuple[StripeStandin, str], tmp_path: Path
) -> None:
    server, url = standin
    connected = [e["account"] for e in server.events if e.get("account")]
    account = max(set(connected), key=connected.count)
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": url}, max_network_retries=0)
    pages = StripePages(client, requests_per_s=500, account=account, api_version=BASIL)
    store = CursorStore(tmp_path, Scope(account, livemode=False, since=0))
    recorder = Recorder()
    since = min(e["created"] for e in server.events)
    slices = plan_slices(
        OBJECT_SOURCES, since=since, until=server.now, cutoff=server.now, slice_s=400 * DAY,
        done_until=store.done_until,
    )  # fmt: skip
    totals = await Backfill(pages, recorder, store, BASIL, account, False).run(slices, NoProgress())
    # Every object of that account and mode was read, across pages of 2 and 429s.
    want = objects_of(list(server.events), account, livemode=False)
    got: dict[str, set[str]] = {}
    for envelope in recorder.envelopes:
        assert envelope.account == account and envelope.livemode is False
        obj = json.loads(envelope.verified.body)["data"]["object"]
        got.setdefault(obj["object"], set()).add(obj["id"])
    want.pop("credit_note", None)  # not a backfill source: the ledger does not use it
    assert got == want
    assert server.rate_limited > 0 and pages.rate_limited == server.rate_limited
    assert max(len(v) for v in want.values()) > server.page_cap, {
        k: len(v) for k, v in want.items()
    }
    assert any("starting_after" in q for _, q, _ in server.requests)
    assert all(a == account for _, _, a in server.requests)
    assert totals.objects_read >= sum(len(v) for v in want.values())

    # A second run with the same cursors reads nothing: everything is done.
    again = plan_slices(
        OBJECT_SOURCES, since=since, until=server.now, cutoff=server.now, slice_s=400 * DAY,
        done_until=CursorStore(tmp_path, Scope(account, False, 0)).done_until,
    )  # fmt: skip
    assert again == []


async def test_a_second_run_publishes_the_same_event_ids(
    standin: tuple[StripeStandin, str], tmp_path: Path
) -> None:
    server, url = standin
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": url})
    cutoff = server.now - 30 * DAY + 3600
    ids = []
    for run in range(2):
        pages = StripePages(client, requests_per_s=500, account=None, api_version=BASIL)
        store = CursorStore(tmp_path / str(run), Scope(None, False, 0))
        recorder = Recorder()
        slices = plan_slices(
            ALL_SOURCES,
            since=min(e["created"] for e in server.events),
            until=server.now,
            cutoff=cutoff,
            slice_s=7 * DAY,
            done_until=store.done_until,
        )
        await Backfill(pages, recorder, store, BASIL, None, False).run(slices, NoProgress())
        ids.append(sorted(e.event_id for e in recorder.envelopes))
    assert ids[0] == ids[1] and ids[0]
    # The recent part came from the Events API with Stripe's own ids.
    real_ids = {e["id"] for e in server.events}
    assert any(i in real_ids for i in ids[0]) and any(i.startswith("evt_bf_") for i in ids[0])
