"""The payment-link agent's decisions: parking, re-keying, probe answers."""

from __future__ import annotations

import pytest

from streams.ledger.payment_links import on_link_message

OWNER = {"owner": "cus_a", "key_source": "customer"}
PROBE = {"owner": "cus_a", "key_source": "customer", "state_key": "test:cus_a", "charge_id": "ch_1"}


def test_events_park_until_the_owner_is_known_then_go_in_arrival_order() -> None:
    first = on_link_message(None, {"event": "aa"})
    second = on_link_message(first.state, {"event": "bb"})
    assert first.reroute == second.reroute == []
    owned = on_link_message(second.state, OWNER)
    assert owned.reroute == ["aa", "bb"] and owned.state["parked"] == []
    later = on_link_message(owned.state, {"event": "cc"})
    assert later.reroute == ["cc"] and later.state["owner"] == "cus_a"


def test_a_probe_is_answered_after_what_was_parked_and_names_the_owner() -> None:
    parked = on_link_message(None, {"event": "aa"})
    step = on_link_message(parked.state, {"probe": PROBE})
    assert step.reroute == ["aa"] and step.answers == [PROBE]
    assert step.state["owner"] == "cus_a"
    again = on_link_message(step.state, {"probe": PROBE})
    assert again.reroute == [] and again.answers == [PROBE]  # answering twice is harmless


def test_the_first_owner_named_wins() -> None:
    step = on_link_message(
        on_link_message(None, OWNER).state, {"owner": "cus_b", "key_source": "customer"}
    )
    assert step.state["owner"] == "cus_a"


def test_a_links_message_of_no_known_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="owner/event/probe"):
        on_link_message(None, {"something": 1})
