"""The revenue ledger's decisions (sinks/revenue/), on an in-memory store: whatever the
arrival order, window boundaries, duplicates and replays, the summed deltas equal the
revenue of the `revenue_entries` view's rules recomputed here from the distinct rows."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sinks.revenue.state import DAY_S, Attribution, Event, Money, Node
from sinks.revenue.windows import (
    AttributionRow,
    CustomerDay,
    Effects,
    attribution_window,
    stripe_window,
)

T0 = 1_760_000_000


class MemoryStore:
    """The revenue tables as dicts; `apply` does what the views of `revenue_in` do."""

    def __init__(self) -> None:
        self.key_states: dict[str, str] = {}
        self.customer_states: dict[str, str] = {}
        self.attribution_states: dict[str, str] = {}
        self.buckets: dict[tuple[Any, ...], list[int]] = {}  # revenue_daily
        self.days: dict[tuple[Any, ...], list[int]] = {}  # revenue_customer_daily

    def keys(self, keys: Collection[str]) -> dict[str, str]:
        return {k: self.key_states[k] for k in keys if k in self.key_states}

    def customers(self, keys: Collection[str]) -> dict[str, str]:
        return {k: self.customer_states[k] for k in keys if k in self.customer_states}

    def attributions(self, keys: Collection[str]) -> dict[str, str]:
        return {k: self.attribution_states[k] for k in keys if k in self.attribution_states}

    def customer_days(self, customer_keys: Collection[str]) -> list[CustomerDay]:
        return [CustomerDay(*k, *v) for k, v in self.days.items()
                if k[0] in customer_keys and any(v)]  # fmt: skip

    def apply(self, effects: Effects) -> None:
        self.key_states.update(effects.keys)
        for c in effects.customers:
            self.customer_states[f"{c.customer_key}\t{int(c.livemode)}\t{c.currency}"] = c.dumps()
        for a in effects.attributions:
            self.attribution_states[f"{a.customer_key}\t{int(a.livemode)}"] = a.dumps()
        for line in effects.lines:
            where = (line.customer_key, line.livemode, line.currency, line.account, line.day)
            total = self.buckets.setdefault((line.bucket, *where), [0, 0])
            total[0] += line.amount
            total[1] += line.entries
            if not line.rebucket:
                days = self.days.setdefault(where, [0, 0])
                days[0] += line.amount
                days[1] += line.entries

    def totals(self) -> dict[tuple[Any, ...], tuple[int, int]]:
        return {k: (v[0], v[1]) for k, v in self.buckets.items() if any(v)}


# A small world: three charges (one a guest's), two invoices that may list them.
CHARGES = {"ch_1": ("cus_a", "pi_1"), "ch_2": ("cus_b", "pi_2"), "ch_3": ("", "pi_3")}


def _event(kind: str, key: str, minor: int, day: int, *, charge: str = "", customer: str = "",
           pi: str = "", refs: tuple[str, ...] = (), seq: int = 0) -> Event:  # fmt: skip
    return Event(T0 + day * DAY_S, False, "", customer, customer or pi, "usd", charge, pi, refs,
                 kind, key, minor, seq)  # fmt: skip


@st.composite
def events(draw: st.DrawFn) -> Event:
    charge = draw(st.sampled_from(sorted(CHARGES)))
    customer, pi = CHARGES[charge]
    day = draw(st.integers(0, 40))
    minor = draw(st.integers(0, 300))
    what = draw(st.sampled_from(["charge", "invoice", "refund", "dispute", "owner"]))
    if what == "charge":
        return _event("charge", f"charge:{charge}", minor, day, charge=charge,
                      customer=customer, pi=pi)  # fmt: skip
    if what == "invoice":
        invoice = draw(st.sampled_from(["in_1", "in_2"]))
        refs = tuple(draw(st.lists(st.sampled_from([charge, pi]), max_size=2, unique=True)))
        return _event("invoice", f"invoice:{invoice}", minor, day, customer="cus_a", refs=refs)
    if what == "refund":
        return _event("refund", f"refund:{charge}", minor, day, charge=charge,
                      customer=customer, pi=pi, seq=draw(st.integers(0, 3)))  # fmt: skip
    if what == "dispute":
        return _event("dispute_lost", f"dispute:du_{charge}", minor, day, charge=charge)
    # a later snapshot naming the charge with its customer (the guest's gets one: cus_g)
    return _event("", "", 0, day, charge=charge, customer=customer or "cus_g", pi=pi)


attributions = st.builds(
    AttributionRow,
    attribution_id=st.sampled_from(["at_1", "at_2", "at_3"]),
    kind=st.sampled_from(["attribution", "organic", "conflict"]),
    customer_key=st.sampled_from(["cus_a", "cus_b", "cus_g", "pi_3"]),
    referral_code=st.sampled_from(["alice", "bob"]),
    attributed_at=st.integers(T0, T0 + 5),
    livemode=st.just(False),
    account=st.just(""),
)


def _consistent_attributions(rows: list[AttributionRow]) -> list[AttributionRow]:
    """One content per attribution id, as the deterministic ids guarantee."""
    first: dict[tuple[str, str], AttributionRow] = {}
    for r in rows:
        first.setdefault((r.attribution_id, r.customer_key), r)
    return [first[(r.attribution_id, r.customer_key)] for r in rows]


def reference(
    stripe: list[Event], rows: list[AttributionRow]
) -> dict[tuple[Any, ...], tuple[int, int]]:
    """The view's rules over the distinct rows: revenue (amount, entries) per bucket,
    customer and day."""
    distinct = set(stripe)
    listed = {ref for e in distinct for ref in e.payment_refs}
    owners: dict[str, str] = {}
    for e in distinct:
        if e.charge_id and e.customer_id:
            owners[e.charge_id] = min(owners.get(e.charge_id, e.customer_key), e.customer_key)
    groups: dict[str, list[Event]] = {}
    for e in sorted(distinct):
        if e.money_kind == "charge" and (e.charge_id in listed or e.payment_intent_id in listed):
            continue
        if e.money_kind:
            groups.setdefault(e.money_key, []).append(e)
    entries: list[tuple[str, int, int]] = []  # customer, day, amount
    for snapshots in groups.values():
        e0 = snapshots[0]
        customer = owners.get(e0.charge_id) or e0.customer_key
        if e0.money_kind == "refund":
            seqs: dict[int, list[int]] = {}
            for e in snapshots:
                seq = seqs.setdefault(e.money_seq, [e.money_minor, e.created])
                seq[0], seq[1] = max(seq[0], e.money_minor), min(seq[1], e.created)
            previous = 0
            for seq_no in sorted(seqs):
                total, created = seqs[seq_no]
                entries.append((customer, created // DAY_S, previous - total))
                previous = total
        else:
            amount = max(e.money_minor for e in snapshots)
            day = min(e.created for e in snapshots) // DAY_S
            entries.append((customer, day, -amount if e0.money_kind == "dispute_lost" else amount))
    states: dict[str, Attribution] = {}
    for r in set(rows):
        states.setdefault(r.customer_key, Attribution(r.customer_key, False)).absorb(
            r.kind, r.attributed_at, r.attribution_id, r.referral_code, r.account)  # fmt: skip
    out: dict[tuple[Any, ...], list[int]] = {}
    for customer, day, amount in entries:
        bucket = states.get(customer, Attribution(customer, False)).bucket
        total = out.setdefault((bucket, customer, False, "usd", "", day), [0, 0])
        total[0] += amount
        total[1] += 1
    return {k: (v[0], v[1]) for k, v in out.items() if any(v)}


def _run(store: MemoryStore, items: list[Event | AttributionRow], size: int) -> None:
    for start in range(0, len(items), size):
        window = items[start : start + size]
        stripe = [i for i in window if isinstance(i, Event)]
        people = [i for i in window if isinstance(i, AttributionRow)]
        store.apply(stripe_window(stripe, store))
        store.apply(attribution_window(people, store))


@settings(max_examples=300, deadline=None)
@given(
    stripe=st.lists(events(), max_size=30),
    people=st.lists(attributions, max_size=6),
    size=st.integers(1, 8),
    data=st.data(),
)
def test_any_order_and_windows_give_the_views_revenue(
    stripe: list[Event], people: list[AttributionRow], size: int, data: st.DataObject
) -> None:
    people = _consistent_attributions(people)
    items: list[Event | AttributionRow] = data.draw(st.permutations([*stripe, *people]))
    store = MemoryStore()
    _run(store, items, size)
    assert store.totals() == reference(stripe, people)
    # Every window read again (any boundaries) and every record re-emitted: no change.
    before = (dict(store.key_states), store.totals(), dict(store.customer_states))
    _run(store, data.draw(st.permutations(items)), data.draw(st.integers(1, 8)))
    assert (store.key_states, store.totals(), store.customer_states) == before


def test_a_replayed_window_moves_nothing() -> None:
    store = MemoryStore()
    window = [_event("charge", "charge:ch_1", 500, 1, charge="ch_1", customer="cus_a", pi="pi_1")]
    first = stripe_window(window, store)
    assert [line.amount for line in first.lines] == [500]
    store.apply(first)
    assert not stripe_window(window, store)


def test_an_invoice_listing_a_charge_later_retracts_the_charge() -> None:
    store = MemoryStore()
    store.apply(stripe_window([_event("charge", "charge:ch_1", 500, 1, charge="ch_1",
                                      customer="cus_a", pi="pi_1")], store))  # fmt: skip
    later = stripe_window([_event("invoice", "invoice:in_1", 500, 2, customer="cus_a",
                                  refs=("pi_1",))], store)  # fmt: skip
    assert sorted((line.day, line.amount) for line in later.lines) == [
        ((T0 // DAY_S) + 1, -500), ((T0 // DAY_S) + 2, 500)]  # fmt: skip
    assert Money.loads(later.keys["charge:ch_1"]).counted is None
    assert Node.loads(later.keys["node:pi_1"]).listed


def test_a_failed_refund_gives_the_revenue_back() -> None:
    store = MemoryStore()
    refund = [
        _event("refund", "refund:ch_1", 100, 3, charge="ch_1", customer="cus_a", seq=6),
        _event("refund", "refund:ch_1", 0, 5, charge="ch_1", customer="cus_a", seq=11),
    ]
    effects = stripe_window(refund, store)
    assert sorted(line.amount for line in effects.lines) == [-100, 100]


def test_an_earlier_first_touch_arriving_later_moves_the_revenue() -> None:
    store = MemoryStore()
    store.apply(stripe_window([_event("charge", "charge:ch_1", 500, 1, charge="ch_1",
                                      customer="cus_a")], store))  # fmt: skip
    late = AttributionRow("at_2", "attribution", "cus_a", "bob", T0 + 9, False, "")
    store.apply(attribution_window([late], store))
    earlier = AttributionRow("at_1", "attribution", "cus_a", "alice", T0, False, "")
    store.apply(attribution_window([earlier], store))
    assert {k[0].referral_code: v for k, v in store.totals().items()} == {"alice": (500, 1)}
