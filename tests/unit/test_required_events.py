"""The required Stripe event types: the README says the same as the code, and the checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from refstream.doctor import Endpoint, Seen, report
from streams.ledger.required_events import (
    BASIL,
    PRE_BASIL,
    REQUIRED_EVENTS,
    enabled_covers,
    family_of,
    missing,
    required_types,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_lists_exactly_the_required_events_per_family() -> None:
    text = README.read_text()
    section = text.split("## Stripe events to enable", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_.]+)` \| (yes|—) \| (yes|—) \|", section, re.M)
    listed = {t: (pre == "yes", basil == "yes") for t, pre, basil in rows}
    assert listed == {
        e.type: (PRE_BASIL in e.families, BASIL in e.families) for e in REQUIRED_EVENTS
    }


def test_basil_needs_invoice_payment_paid_and_pre_basil_does_not() -> None:
    assert "invoice_payment.paid" in required_types(BASIL)
    assert "invoice_payment.paid" not in required_types(PRE_BASIL)
    with pytest.raises(ValueError, match="unknown API family"):
        required_types("dahlia")


def test_families_and_wildcards() -> None:
    assert family_of("2025-03-31.basil") == family_of("2026-08-26.dahlia") == BASIL
    assert family_of("2024-06-20") == family_of(None) == PRE_BASIL
    assert enabled_covers(["*"], "refund.failed")
    assert enabled_covers(["charge.*"], "charge.dispute.created")
    assert not enabled_covers(["charge.succeeded"], "charge.refunded")
    assert [e.type for e in missing(BASIL, ["*"])] == []


def test_the_seed_integrations_usual_list_misses_disputes_refunds_and_links() -> None:
    seed = [
        "invoice.paid",
        "charge.succeeded",
        "charge.refunded",
        "charge.updated",
        "customer.*",
        "customer.subscription.*",
    ]
    gaps = {e.type for e in missing(BASIL, seed)}
    assert {"invoice_payment.paid", "charge.dispute.created", "refund.failed"} <= gaps
    assert "checkout.session.completed" in gaps and "customer.created" not in gaps


def test_report_skips_disabled_endpoints_and_other_families() -> None:
    seen = Seen(records=3)
    seen.types.update(required_types(PRE_BASIL))
    endpoints = [
        Endpoint("we_off", "https://x", None, (), "disabled"),
        Endpoint("we_old", "https://y", "2024-06-20", ("*",), "enabled"),
        Endpoint("we_new", "https://z", "2025-03-31.basil", ("invoice.paid",), "enabled"),
    ]
    result = report(seen, endpoints, [PRE_BASIL])
    assert result["ok"] and [c.get("endpoint") for c in result["checks"]] == [None, "we_old"]
    result = report(seen, endpoints, [BASIL])
    assert not result["ok"]
    assert {c.get("endpoint") for c in result["checks"]} == {None, "we_new"}
