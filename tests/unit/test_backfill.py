"""The backfill's pure parts: slice planning, objects -> events, cursors, arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from backfill.cli import UsageError, backfill, parse_day
from backfill.cursor import CursorStore, Scope
from backfill.run import ordered, plan_slices
from backfill.sources import ALL_SOURCES, EVENT_TYPES, EVENTS, OBJECT_SOURCES, sources_named
from backfill.synthesize import events_for
from ingress.envelope import FetchedBody, parse_envelope
from refstream.settings import load_settings

DAY = 86_400


def test_slices_read_objects_before_the_cutoff_and_events_after() -> None:
    slices = plan_slices(
        ALL_SOURCES, since=0, until=10 * DAY, cutoff=7 * DAY + 5, slice_s=3 * DAY,
        done_until=lambda _: None,
    )  # fmt: skip
    assert [(s.start, s.end) for s in slices] == [
        (0, 3 * DAY), (3 * DAY, 6 * DAY), (6 * DAY, 7 * DAY + 5), (7 * DAY + 5, 9 * DAY),
        (9 * DAY, 10 * DAY),
    ]  # fmt: skip
    for s in slices:
        names = {src.name for src in s.sources}
        assert names == ({EVENTS} if s.start >= 7 * DAY + 5 else set(names) - {EVENTS})
        assert names


def test_slices_resume_after_each_sources_cursor() -> None:
    done = {"customers": 6 * DAY}
    slices = plan_slices(
        sources_named(["customers", "charges"]), since=0, until=9 * DAY, cutoff=9 * DAY,
        slice_s=3 * DAY, done_until=done.get,
    )  # fmt: skip
    assert [(s.start, [x.name for x in s.sources]) for s in slices] == [
        (0, ["charges"]), (3 * DAY, ["charges"]), (6 * DAY, ["customers", "charges"]),
    ]  # fmt: skip


def test_unknown_types_are_named() -> None:
    with pytest.raises(ValueError, match="unknown --types invoicez"):
        sources_named(["invoices", "invoicez"])
    assert len(EVENT_TYPES) <= 20  # Stripe's limit for the `types` filter


def charge(**extra: object) -> dict:
    return {
        "id": "ch_1", "object": "charge", "created": 100, "livemode": False,
        "status": "succeeded", "captured": True, "amount": 500, "amount_refunded": 0,
        "customer": "cus_1", "payment_intent": "pi_1", **extra,
    }  # fmt: skip


def test_an_object_becomes_the_events_of_its_current_state_with_stable_ids() -> None:
    plain = events_for(charge(), api_version="2025-03-31.basil", account=None)
    assert [e["type"] for e in plain] == ["charge.succeeded"]
    refunded = events_for(charge(amount_refunded=200), api_version="V", account="acct_1")
    assert [e["type"] for e in refunded] == ["charge.succeeded", "charge.refunded"]
    assert all(e["account"] == "acct_1" and e["api_version"] == "V" for e in refunded)
    again = events_for(charge(amount_refunded=200), api_version="V", account="acct_1")
    assert [e["id"] for e in again] == [e["id"] for e in refunded]  # a rerun: same ids
    # A changed object (another refund since) gets new ids, so it is not dropped as a repeat.
    later = events_for(charge(amount_refunded=300), api_version="V", account="acct_1")
    assert not {e["id"] for e in later} & {e["id"] for e in refunded}
    # Another account's object with the same content is another event.
    other = events_for(charge(amount_refunded=200), api_version="V", account="acct_2")
    assert not {e["id"] for e in other} & {e["id"] for e in refunded}
    assert events_for(charge(status="failed"), api_version="V", account=None) == []


def test_synthesized_events_pass_the_ingress_checks_and_keep_its_key_rule() -> None:
    (event,) = events_for(
        {"id": "dp_1", "object": "dispute", "created": 5, "livemode": True, "charge": "ch_9",
         "payment_intent": None, "status": "needs_response", "amount": 100},
        api_version="V", account=None,
    )  # fmt: skip
    import json

    envelope = parse_envelope(FetchedBody(json.dumps(event).encode(), "objects"), 1)
    assert not hasattr(envelope, "reason")
    assert (envelope.partition_key, envelope.key_source, envelope.backfill) == (  # type: ignore[union-attr]
        "ch_9", "charge", "objects",
    )  # fmt: skip


def test_a_slice_is_published_in_stripe_time_then_type_order_once_per_id() -> None:
    events = [
        {"id": "b", "created": 5, "type": "invoice.paid"},
        {"id": "a", "created": 5, "type": "customer.created"},
        {"id": "c", "created": 1, "type": "charge.refunded"},
        {"id": "a", "created": 5, "type": "customer.created"},
    ]
    assert [e["id"] for e in ordered(events)] == ["c", "a", "b"]


def test_cursors_survive_a_new_store_and_scopes_are_apart(tmp_path: Path) -> None:
    scope = Scope("acct_1", livemode=False, since=10)
    CursorStore(tmp_path, scope).advance(["customers", "charges"], 500)
    reopened = CursorStore(tmp_path, scope)
    assert reopened.done_until("charges") == 500 and reopened.done_until("refunds") is None
    assert CursorStore(tmp_path, Scope("acct_1", True, 10)).done_until("charges") is None
    (tmp_path / scope.file_name()).write_text("{broken")
    with pytest.raises(ValueError, match="delete it to restart"):
        CursorStore(tmp_path, scope)


def args(**over: object) -> argparse.Namespace:
    base = {"since": "2025-01-01", "until": None, "types": None, "account": None,
            "live": False, "api_version": None, "slice_days": 1.0}  # fmt: skip
    return argparse.Namespace(**{**base, **over})


@pytest.mark.parametrize(
    ("env", "over", "message"),
    [
        ({}, {}, "REFSTREAM_STRIPE_API_KEY"),
        ({"REFSTREAM_STRIPE_API_KEY": "sk_live_x"}, {}, "pass --live"),
        ({"REFSTREAM_STRIPE_API_KEY": "sk_test_x"}, {"live": True}, "test-mode key"),
        ({"REFSTREAM_STRIPE_API_KEY": "sk_test_x"}, {"account": "cus_1"}, "acct_"),
        ({"REFSTREAM_STRIPE_API_KEY": "sk_test_x"}, {"since": "01/02/2025"}, "--since"),
        ({"REFSTREAM_STRIPE_API_KEY": "sk_test_x"}, {"until": "2024-01-01"}, "after --since"),
        ({"REFSTREAM_STRIPE_API_KEY": "sk_test_x"}, {"types": "nope"}, "unknown --types"),
    ],
)
async def test_bad_arguments_are_refused_before_any_request(
    env: dict[str, str], over: dict[str, object], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        await backfill(load_settings(env), args(**over))


def test_days_are_utc() -> None:
    assert parse_day("2025-05-01", "--since") == 1_746_057_600
    assert {s.name for s in OBJECT_SOURCES} | {EVENTS} == {s.name for s in ALL_SOURCES}


async def test_an_event_kafka_refuses_is_counted_and_the_slice_still_completes(
    tmp_path: Path,
) -> None:
    from backfill.run import Backfill, Slice, Totals
    from backfill.stripe_pages import Page
    from ingress.envelope import Envelope
    from ingress.publisher import PublishRefusedError, Receipt

    class Pages:
        async def page(self, path: str, params: object, starting_after: str | None = None) -> Page:
            return Page([charge(id="ch_1"), charge(id="ch_2")], has_more=False)

    class Publisher:
        async def publish(self, envelope: Envelope) -> Receipt:
            if envelope.object_id == "ch_2":
                raise PublishRefusedError("record_too_large", "too large")
            return Receipt(0, 0)

    class Quiet:
        def update(self, slice_: Slice, totals: Totals) -> None:
            pass

    store = CursorStore(tmp_path, Scope(None, False, 0))
    runner = Backfill(Pages(), Publisher(), store, "V", None, False)  # type: ignore[arg-type]
    totals = await runner.run([Slice(0, 10, sources_named(["charges"]))], Quiet())
    assert (totals.events_published, totals.skipped) == (1, 1)
    assert store.done_until("charges") == 10
