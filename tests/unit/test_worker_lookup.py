"""When and how the worker asks the Stripe API for a parked customer's referral."""

from __future__ import annotations

from refstream.topics import ATTRIBUTIONS, REWARDS
from streams.ledger.attribution import Touch
from streams.ledger.config import LedgerConfig
from streams.ledger.programs import ProgramVersion, parse_programs_toml
from streams.worker.cores import CustomerCore
from tests.support.factories import PRE_BASIL, StripeFactory, subscription_story

NOW = 1_800_000_000
PROGRAMS = {"p": ProgramVersion(parse_programs_toml('[[program]]\nid = "p"\nrate = "20%"\n')[0], 1)}


def parked_state(core: CustomerCore, livemode: bool = False) -> tuple[bytes, str, int]:
    """A customer whose first paid invoice arrived without any referral code."""
    f = StripeFactory(PRE_BASIL, livemode=livemode, seed=3)
    story = subscription_story(f, code=None, code_on="none", months=1)
    raw: bytes | None = None
    due = None
    for event in story.events:
        routed = core.route(f.envelope(event))
        assert routed is not None
        result = core.on_event(raw, routed, PROGRAMS, NOW, event)
        raw = result.state or raw
        due = result.due_s
    assert raw is not None and story.customer_id and due is not None
    return raw, story.customer_id, due


def touch(customer_id: str) -> Touch:
    return Touch("ACME", "u_1", None, "stripe_lookup", customer_id, "lookup:x", "lookup", NOW)


def test_lookup_is_due_after_the_delay_and_settles_the_revenue_once() -> None:
    core = CustomerCore(LedgerConfig(), lookup_livemode=False, lookup_after_s=60)
    raw, customer_id, due = parked_state(core)
    assert due == NOW + 60
    assert core.lookup_target(raw, NOW + 59) is None
    assert core.lookup_target(raw, NOW + 60) == (customer_id, None)

    result = core.on_lookup(raw, touch(customer_id), PROGRAMS, NOW + 60)
    topics = [o.topic for o in result.outputs]
    assert topics.count(REWARDS) == 1 and topics.count(ATTRIBUTIONS) == 1
    attribution = next(o.record for o in result.outputs if o.topic == ATTRIBUTIONS)
    assert (attribution["source"], attribution["referral_code"]) == ("stripe_lookup", "ACME")
    assert result.state is not None
    assert core.lookup_target(result.state, NOW + 10_000) is None


def test_a_lookup_that_finds_nothing_is_not_repeated() -> None:
    core = CustomerCore(LedgerConfig(), lookup_livemode=False, lookup_after_s=60)
    raw, _, _ = parked_state(core)
    result = core.on_lookup(raw, None, PROGRAMS, NOW + 60)
    assert result.outputs == [] and result.state is not None
    assert core.lookup_target(result.state, NOW + 10_000) is None


def test_no_lookup_without_a_key_or_for_the_other_mode() -> None:
    off = CustomerCore(LedgerConfig())
    raw, _, due = parked_state(off)
    assert off.lookup_target(raw, NOW + 10**6) is None
    assert due != NOW + 60  # only the ledger's own windows are scheduled
    live_key = CustomerCore(LedgerConfig(), lookup_livemode=True, lookup_after_s=60)
    raw, _, _ = parked_state(live_key, livemode=False)
    assert live_key.lookup_target(raw, NOW + 10**6) is None
