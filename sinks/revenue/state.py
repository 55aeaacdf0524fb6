"""What the revenue ledger keeps: the sufficient statistics of the stored rows, as JSON.

Every update here is a merge that gives the same result when a row is applied twice (max,
min, set union, logical or), so a window read again changes no state and moves no money.

- `Money`, per money key (invoice:, charge:, refund:, dispute:): the rules of the
  `revenue_entries` view (sinks/ddl/0003): the largest amount and the earliest `created` of
  its snapshots, per refund snapshot sequence (`money_seq`) the largest running total and
  its earliest `created`; plus `counted`, the entries the totals hold for it now (so a
  change retracts exactly what was added, whatever changed meanwhile).
- `Node`, per charge or payment intent id: whether an invoice lists it (`payment_refs`),
  the charge's owner (the customer of the rows naming it), the money keys that depend on it.
- `Customer`, per customer x mode x currency: lifetime revenue, entries, paid days.
- `Attribution`, per customer x mode: the first touch and the organic flag.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DAY_S = 86_400
REVENUE_KINDS = ("invoice", "charge", "refund", "dispute_lost")


class Event(NamedTuple):
    """The revenue columns of one stripe_events row (sinks/stripe_events.py's mapping)."""

    created: int
    livemode: bool
    account: str
    customer_id: str
    customer_key: str
    currency: str
    charge_id: str
    payment_intent_id: str
    payment_refs: tuple[str, ...]
    money_kind: str
    money_key: str
    money_minor: int
    money_seq: int


class Entry(NamedTuple):
    """One revenue entry: its UTC day (days since 1970-01-01), signed amount, and whether
    it is a payment (an invoice or charge entry > 0: what first_paid_date looks at)."""

    day: int
    amount: int
    paid: bool


class Counted(NamedTuple):
    """The entries the totals hold for a money key, and the customer they belong to."""

    customer_key: str
    entries: tuple[Entry, ...]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass
class Money:
    kind: str
    customer_key: str
    charge_ref: str
    payment_intent: str
    livemode: bool
    account: str
    currency: str
    amount: int = 0
    created: int = 0
    # refunds: money_seq -> [largest running total, earliest created]
    seqs: dict[int, list[int]] = field(default_factory=dict)
    counted: Counted | None = None

    @classmethod
    def first(cls, e: Event) -> Money:
        return cls(e.money_kind, e.customer_key, e.charge_id,
                   e.payment_intent_id if e.money_kind == "charge" else "", e.livemode,
                   e.account, e.currency, e.money_minor, e.created)  # fmt: skip

    def absorb(self, e: Event) -> None:
        """Merge one snapshot (idempotent). Identity fields keep their first non-empty
        value (the view's `any`: the snapshots of one object agree on them)."""
        self.customer_key = self.customer_key or e.customer_key
        self.charge_ref = self.charge_ref or e.charge_id
        if self.kind == "charge":
            self.payment_intent = self.payment_intent or e.payment_intent_id
        self.currency = self.currency or e.currency
        self.account = self.account or e.account
        if self.kind == "refund":
            seq = self.seqs.get(e.money_seq)
            if seq is None:
                self.seqs[e.money_seq] = [e.money_minor, e.created]
            else:
                seq[0], seq[1] = max(seq[0], e.money_minor), min(seq[1], e.created)
        else:
            self.amount = max(self.amount, e.money_minor)
            self.created = min(self.created, e.created)

    def nodes(self) -> tuple[str, ...]:
        """The charge / payment intent ids its entries depend on."""
        charge, intent = self.charge_ref, self.payment_intent
        if intent and intent != charge:
            return (charge, intent) if charge else (intent,)
        return (charge,) if charge else ()

    def entries(self, nodes: dict[str, Node]) -> Counted | None:
        """What counts for it now, given the nodes (None: nothing, e.g. an invoice lists
        this charge). The customer is the charge's owner when the charge has one."""
        if self.kind == "charge" and any(nodes[i].listed for i in self.nodes()):
            return None
        owner = nodes[self.charge_ref].owner if self.charge_ref else ""
        customer = owner or self.customer_key
        if self.kind == "refund":
            out, previous = [], 0
            for seq in sorted(self.seqs):
                total, created = self.seqs[seq]
                out.append(Entry(created // DAY_S, previous - total, False))
                previous = total
            return Counted(customer, tuple(out))
        if self.kind == "dispute_lost":
            return Counted(customer, (Entry(self.created // DAY_S, -self.amount, False),))
        entry = Entry(self.created // DAY_S, self.amount, self.amount > 0)
        return Counted(customer, (entry,))

    def dumps(self) -> str:
        counted = None if self.counted is None else [
            self.counted.customer_key, [list(e) for e in self.counted.entries]
        ]  # fmt: skip
        return _dumps({
            "k": self.kind, "c": self.customer_key, "r": self.charge_ref,
            "p": self.payment_intent, "l": self.livemode, "a": self.account,
            "y": self.currency, "m": self.amount, "t": self.created,
            "s": sorted([seq, *v] for seq, v in self.seqs.items()), "o": counted,
        })  # fmt: skip

    @classmethod
    def loads(cls, text: str) -> Money:
        d = json.loads(text)
        counted = None
        if d["o"] is not None:
            customer, entries = d["o"]
            counted = Counted(customer, tuple(Entry(x, y, bool(z)) for x, y, z in entries))
        return cls(d["k"], d["c"], d["r"], d["p"], d["l"], d["a"], d["y"], d["m"], d["t"],
                   {s: [t, c] for s, t, c in d["s"]}, counted)  # fmt: skip


@dataclass
class Node:
    listed: bool = False  # an invoice (or invoice payment) names it among its payments
    owner: str = ""  # the smallest customer_key of the rows naming this charge with a customer
    deps: list[str] = field(default_factory=list)  # money keys whose entries read it

    def dumps(self) -> str:
        return _dumps({"l": self.listed, "o": self.owner, "d": self.deps})

    @classmethod
    def loads(cls, text: str) -> Node:
        d = json.loads(text)
        return cls(d["l"], d["o"], d["d"])


@dataclass
class Customer:
    customer_key: str
    livemode: bool
    currency: str
    revenue: int = 0
    entries: int = 0
    paid_days: dict[int, int] = field(default_factory=dict)  # day -> payment entries

    def add(self, entry: Entry, sign: int) -> None:
        self.revenue += sign * entry.amount
        self.entries += sign
        if entry.paid:
            count = self.paid_days.get(entry.day, 0) + sign
            if count:
                self.paid_days[entry.day] = count
            else:
                self.paid_days.pop(entry.day, None)

    @property
    def first_paid_day(self) -> int | None:
        days = [day for day, count in self.paid_days.items() if count > 0]
        return min(days) if days else None

    def dumps(self) -> str:
        return _dumps({"r": self.revenue, "e": self.entries,
                       "d": sorted([d, c] for d, c in self.paid_days.items())})  # fmt: skip

    @classmethod
    def loads(cls, customer_key: str, livemode: bool, currency: str, text: str) -> Customer:
        d = json.loads(text)
        return cls(customer_key, livemode, currency, d["r"], d["e"], {x: c for x, c in d["d"]})


class Bucket(NamedTuple):
    """Where a customer's revenue goes: referred (with the code and the attribution's
    Connect account), organic, or unattributed (awaiting attribution)."""

    kind: str
    referral_code: str = ""
    attr_account: str = ""


UNATTRIBUTED = Bucket("unattributed")


@dataclass
class Attribution:
    customer_key: str
    livemode: bool
    # the first touch: (attributed_at, attribution_id, referral_code, account)
    first: tuple[int, str, str, str] | None = None
    organic: bool = False

    def absorb(self, kind: str, at: int, attribution_id: str, code: str, account: str) -> None:
        if kind == "attribution":
            touch = (at, attribution_id, code, account)
            if self.first is None or touch[:2] < self.first[:2]:
                self.first = touch
        elif kind == "organic":
            self.organic = True

    @property
    def referral_code(self) -> str:
        return self.first[2] if self.first else ""

    @property
    def account(self) -> str:
        return self.first[3] if self.first else ""

    @property
    def bucket(self) -> Bucket:
        if self.referral_code:
            return Bucket("referred", self.referral_code, self.account)
        return Bucket("organic") if self.organic else UNATTRIBUTED

    def dumps(self) -> str:
        return _dumps({"f": list(self.first) if self.first else None, "o": self.organic})

    @classmethod
    def loads(cls, customer_key: str, livemode: bool, text: str) -> Attribution:
        d = json.loads(text)
        first = tuple(d["f"]) if d["f"] else None
        return cls(customer_key, livemode, first, d["o"])  # type: ignore[arg-type]


class Line(NamedTuple):
    """A delta of the totals: revenue_daily/_monthly by bucket, revenue_customer_daily by
    customer (`rebucket` lines move money between buckets and leave the customer's days)."""

    bucket: Bucket
    customer_key: str
    livemode: bool
    currency: str
    account: str
    day: int
    amount: int
    entries: int
    rebucket: bool = False


def customer_key_of(customer_key: str, livemode: bool, currency: str) -> str:
    return f"{customer_key}\t{int(livemode)}\t{currency}"


def attribution_key_of(customer_key: str, livemode: bool) -> str:
    return f"{customer_key}\t{int(livemode)}"


def sum_lines(lines: list[Line]) -> list[Line]:
    """Lines of one key summed; lines that move nothing dropped."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    for line in lines:
        key = (line.bucket, line.customer_key, line.livemode, line.currency, line.account,
               line.day, line.rebucket)  # fmt: skip
        total = sums.setdefault(key, [0, 0])
        total[0] += line.amount
        total[1] += line.entries
    return [
        Line(k[0], k[1], k[2], k[3], k[4], k[5], amount, entries, k[6])
        for k, (amount, entries) in sums.items()
        if amount or entries
    ]
