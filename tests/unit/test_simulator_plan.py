"""Delivery plans: duplicates and reordering never lose or invent an event."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.plan import (
    DeliveryOptions,
    PlanError,
    add_duplicates,
    delivery_plan,
    window_shuffle,
)
from simulator.scenario import ScenarioConfig, generate
from simulator.stripe_factory import Json, routing_key

EVENTS = list(generate(ScenarioConfig(customers=40, months=4, seed=3)).events)


def ids(events: list[Json]) -> Counter[str]:
    return Counter(e["id"] for e in events)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    window=st.integers(0, 300),
    customer_shuffle=st.floats(0, 1),
)
def test_reordering_keeps_the_multiset_of_event_ids(
    seed: int, window: int, customer_shuffle: float
) -> None:
    options = DeliveryOptions(seed, 0.0, window, customer_shuffle)
    assert ids(delivery_plan(EVENTS, options)) == ids(EVENTS)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), ratio=st.floats(0, 3), window=st.integers(0, 100))
def test_duplicates_add_exactly_the_requested_deliveries(
    seed: int, ratio: float, window: int
) -> None:
    plan = delivery_plan(EVENTS, DeliveryOptions(seed, ratio, window, 0.5))
    n = len(EVENTS)
    whole = int(ratio)
    assert len(plan) == n * (1 + whole) + round((ratio - whole) * n)
    counts = ids(plan)
    assert set(counts) == set(ids(EVENTS))
    assert {c - 1 for c in counts.values()} <= {whole, whole + 1}


def test_every_event_twice() -> None:
    plan = delivery_plan(EVENTS, DeliveryOptions(seed=1, duplicates=1.0))
    assert ids(plan) == Counter({e["id"]: 2 for e in EVENTS})


def test_a_copy_is_delivered_after_its_original() -> None:
    numbered = [{"id": str(i)} for i in range(500)]
    out = add_duplicates(numbered, 0.5, random.Random(4))
    first_seen: dict[str, int] = {}
    for position, event in enumerate(out):
        first_seen.setdefault(event["id"], position)
    # Originals keep their relative order; copies only ever come later.
    originals = [e["id"] for i, e in enumerate(out) if first_seen[e["id"]] == i]
    assert originals == [str(i) for i in range(500)]


@given(seed=st.integers(0, 2**32), window=st.integers(1, 50))
def test_window_shuffle_moves_a_delivery_at_most_window_places_earlier(
    seed: int, window: int
) -> None:
    items = [{"id": str(i)} for i in range(300)]
    out = window_shuffle(items, window, random.Random(seed))
    for position, item in enumerate(out):
        assert position >= int(item["id"]) - window
    assert out != items


def test_customer_shuffle_reorders_whole_customers_only() -> None:
    def per_customer(events: list[Json]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for event in events:
            out[routing_key(event)[0]].append(event["id"])
        return out

    before = per_customer(EVENTS)
    untouched = delivery_plan(EVENTS, DeliveryOptions(seed=2, customer_shuffle=0.0))
    assert untouched == EVENTS
    shuffled = delivery_plan(EVENTS, DeliveryOptions(seed=2, customer_shuffle=1.0))
    after = per_customer(shuffled)
    assert {k: sorted(v) for k, v in after.items()} == {k: sorted(v) for k, v in before.items()}
    assert any(after[k] != before[k] for k in before)
    # The slots a customer occupies in the stream do not change, only who fills them.
    keys_before = [routing_key(e)[0] for e in EVENTS]
    assert [routing_key(e)[0] for e in shuffled] == keys_before


def test_the_same_seed_gives_the_same_plan() -> None:
    options = DeliveryOptions(seed=9, duplicates=0.3, shuffle_window=40, customer_shuffle=0.2)
    first = [e["id"] for e in delivery_plan(EVENTS, options)]
    assert first == [e["id"] for e in delivery_plan(EVENTS, options)]
    other = DeliveryOptions(seed=10, duplicates=0.3, shuffle_window=40, customer_shuffle=0.2)
    assert first != [e["id"] for e in delivery_plan(EVENTS, other)]


@pytest.mark.parametrize(
    "options",
    [
        DeliveryOptions(duplicates=-0.1),
        DeliveryOptions(duplicates=11),
        DeliveryOptions(shuffle_window=-1),
        DeliveryOptions(customer_shuffle=1.5),
    ],
)
def test_out_of_range_options_are_refused(options: DeliveryOptions) -> None:
    with pytest.raises(PlanError):
        delivery_plan(EVENTS, options)
