"""One window's effect on the revenue ledger: new states and the deltas of the totals.

`stripe_window` (a window of stripe_events rows) and `attribution_window` (a window of
attributions) read the states they touch through a `Store` and return `Effects`: the
states that changed and the delta lines, which the caller writes in one insert.

Deltas are "minus what was counted, plus what counts now", per money key: each key's
state remembers the entries the totals hold for it (`Money.counted`), so a change of any
input (a later snapshot, an invoice listing a charge, a charge's owner appearing) retracts
exactly those and adds the new ones. The bucket of a customer's revenue (referred, organic,
unattributed) is its attribution's at the time of the window; an attribution window that
changes a customer's bucket moves the customer's days from the old bucket to the new one
(`Store.customer_days`). This needs the windows applied one at a time, each seeing every
earlier one's effects: the sink writes serially (one window at a time, all topics).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sinks.revenue.state import (
    REVENUE_KINDS,
    Attribution,
    Counted,
    Customer,
    Event,
    Line,
    Money,
    Node,
    attribution_key_of,
    customer_key_of,
    sum_lines,
)

NODE = "node:"


class CustomerDay(NamedTuple):
    """A customer's revenue on one day as the totals hold it (revenue_customer_daily)."""

    customer_key: str
    livemode: bool
    currency: str
    account: str
    day: int
    amount: int
    entries: int


class Store(Protocol):
    """The stored states, by key (JSON texts as the state classes dump them)."""

    def keys(self, keys: Collection[str]) -> dict[str, str]: ...
    def customers(self, keys: Collection[str]) -> dict[str, str]: ...
    def attributions(self, keys: Collection[str]) -> dict[str, str]: ...
    def customer_days(self, customer_keys: Collection[str]) -> list[CustomerDay]: ...


@dataclass
class Effects:
    keys: dict[str, str] = field(default_factory=dict)  # revenue_keys rows that changed
    customers: list[Customer] = field(default_factory=list)
    attributions: list[Attribution] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.keys or self.customers or self.attributions or self.lines)


class AttributionRow(NamedTuple):
    attribution_id: str
    kind: str
    customer_key: str
    referral_code: str
    attributed_at: int
    livemode: bool
    account: str


class _Keys:
    """The money and node states a window reads, loaded on demand, with their originals."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.original: dict[str, str] = {}
        self.money: dict[str, Money] = {}
        self.nodes: dict[str, Node] = {}
        self.dirty: set[str] = set()  # keys of states that may have changed

    def load(self, money: Iterable[str], nodes: Iterable[str]) -> None:
        wanted = [k for k in dict.fromkeys(money) if k not in self.money]
        wanted += [NODE + i for i in dict.fromkeys(nodes) if i not in self.nodes]
        if not wanted:
            return
        found = self._store.keys(wanted)
        self.original.update(found)
        for key in wanted:
            if key.startswith(NODE):
                text = found.get(key)
                self.nodes[key[len(NODE) :]] = Node.loads(text) if text else Node()
            elif key in found:
                self.money[key] = Money.loads(found[key])

    def changed(self) -> dict[str, str]:
        out = {}
        for key in self.dirty:
            if key.startswith(NODE):
                text = self.nodes[key[len(NODE) :]].dumps()
                if self.original.get(key, _EMPTY_NODE) != text:
                    out[key] = text
            else:
                text = self.money[key].dumps()
                if self.original.get(key) != text:
                    out[key] = text
        return out


_EMPTY_NODE = Node().dumps()


def stripe_window(events: Sequence[Event], store: Store) -> Effects:
    """The effect of a window of stripe_events rows (accepted by the table)."""
    money_events = [e for e in events if e.money_kind in REVENUE_KINDS and e.money_key]
    listed = {ref for e in events for ref in e.payment_refs if ref}
    owners: dict[str, str] = {}
    for e in events:
        if e.charge_id and e.customer_id:
            seen = owners.get(e.charge_id)
            owners[e.charge_id] = e.customer_key if seen is None else min(seen, e.customer_key)
    if not money_events and not listed and not owners:
        return Effects()

    states = _Keys(store)
    ids = [*listed, *owners]
    ids += [i for e in money_events for i in (e.charge_id, e.payment_intent_id) if i]
    states.load((e.money_key for e in money_events), ids)

    # Charges and payment intents: listed by an invoice, the charge's owner.
    moved: set[str] = set()
    for ref in listed:
        node = states.nodes[ref]
        if not node.listed:
            node.listed = True
            moved.add(ref)
    for charge_id, owner in owners.items():
        node = states.nodes[charge_id]
        if not node.owner or owner < node.owner:
            node.owner = owner
            moved.add(charge_id)
    states.dirty.update(NODE + i for i in moved)

    # Money keys: the window's snapshots merged in, each key known to its nodes.
    touched: dict[str, None] = {}
    for e in money_events:
        money = states.money.get(e.money_key)
        if money is None:
            money = states.money[e.money_key] = Money.first(e)
        money.absorb(e)
        touched[e.money_key] = None
    states.load((), (i for key in touched for i in states.money[key].nodes()))
    for key in touched:
        for node_id in states.money[key].nodes():
            node = states.nodes[node_id]
            if key not in node.deps:
                node.deps = sorted({*node.deps, key})
                states.dirty.add(NODE + node_id)

    # Keys stored earlier whose entries read a node that changed.
    for node_id in moved:
        touched.update(dict.fromkeys(states.nodes[node_id].deps))
    states.load(touched, ())
    touched = {key: None for key in touched if key in states.money}
    states.load((), (i for key in touched for i in states.money[key].nodes()))

    changes: list[tuple[Counted | None, Counted | None, Money]] = []
    for key in touched:
        money = states.money[key]
        now = money.entries(states.nodes)
        if now != money.counted:
            changes.append((money.counted, now, money))
            money.counted = now
    states.dirty.update(touched)
    effects = _money_effects(changes, store)
    effects.keys = states.changed()
    return effects


def _money_effects(
    changes: list[tuple[Counted | None, Counted | None, Money]], store: Store
) -> Effects:
    """Lines and customer states of the entries that changed (old ones retracted)."""
    pairs = {
        (counted.customer_key, money.livemode)
        for old, new, money in changes
        for counted in (old, new)
        if counted is not None
    }
    found = store.attributions([attribution_key_of(*pair) for pair in pairs])
    buckets = {
        pair: Attribution.loads(*pair, found[key]).bucket
        if (key := attribution_key_of(*pair)) in found
        else Attribution(*pair).bucket
        for pair in pairs
    }
    customers: dict[str, Customer] = {}
    wanted = {
        customer_key_of(counted.customer_key, money.livemode, money.currency)
        for old, new, money in changes
        for counted in (old, new)
        if counted is not None
    }
    stored = store.customers(wanted)
    lines: list[Line] = []
    for old, new, money in changes:
        for counted, sign in ((old, -1), (new, 1)):
            if counted is None:
                continue
            key = customer_key_of(counted.customer_key, money.livemode, money.currency)
            customer = customers.get(key)
            if customer is None:
                text = stored.get(key)
                customer = customers[key] = (
                    Customer.loads(counted.customer_key, money.livemode, money.currency, text)
                    if text
                    else Customer(counted.customer_key, money.livemode, money.currency)
                )
            bucket = buckets[(counted.customer_key, money.livemode)]
            for entry in counted.entries:
                customer.add(entry, sign)
                lines.append(Line(bucket, counted.customer_key, money.livemode,
                                  money.currency, money.account, entry.day,
                                  sign * entry.amount, sign))  # fmt: skip
    changed = [c for k, c in customers.items() if stored.get(k) != c.dumps()]
    return Effects(customers=changed, lines=sum_lines(lines))


def attribution_window(rows: Sequence[AttributionRow], store: Store) -> Effects:
    """The effect of a window of attributions: first touches and organic flags merged in;
    a customer whose bucket changed has its revenue days moved to the new bucket."""
    pairs = list(dict.fromkeys((r.customer_key, r.livemode) for r in rows))
    if not pairs:
        return Effects()
    found = store.attributions([attribution_key_of(*pair) for pair in pairs])
    states = {
        pair: Attribution.loads(*pair, found[key])
        if (key := attribution_key_of(*pair)) in found
        else Attribution(*pair)
        for pair in pairs
    }
    before = {pair: state.bucket for pair, state in states.items()}
    for r in rows:
        states[(r.customer_key, r.livemode)].absorb(
            r.kind, r.attributed_at, r.attribution_id, r.referral_code, r.account
        )
    changed = [
        state
        for pair, state in states.items()
        if found.get(attribution_key_of(*pair)) != state.dumps()
    ]
    moved = {pair for pair, state in states.items() if state.bucket != before[pair]}
    lines: list[Line] = []
    if moved:
        for day in store.customer_days(sorted({customer for customer, _ in moved})):
            pair = (day.customer_key, day.livemode)
            if pair not in moved:
                continue
            for bucket, sign in ((before[pair], -1), (states[pair].bucket, 1)):
                lines.append(Line(bucket, day.customer_key, day.livemode, day.currency,
                                  day.account, day.day, sign * day.amount, sign * day.entries,
                                  True))  # fmt: skip
    return Effects(attributions=changed, lines=sum_lines(lines))
