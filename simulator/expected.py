"""The ledger a simulated stream must produce, computed with plain integer/Fraction arithmetic.

Nothing here imports the pipeline (streams/, sinks/): the rules of docs/STRIPE_FLOWS.md and
docs/PROGRAMS.md are restated below and applied to the facts the scenario generated, so a
pipeline bug cannot hide in a shared helper. `RHU(x)` is ROUND_HALF_UP of an exact Fraction.

Facts (what the scenario wrote into the events):
- `PaymentFact`: one thing that earns: a paid invoice (earning amount `A` = money paid
  through Stripe: amount_paid - amount_paid_off_stripe on basil, 0 for a pre-basil
  paid_out_of_band invoice, amount_due when an old version has no amount_paid) or a one-time
  charge (A = amount_captured). `shares` names the charges that paid it with each one's
  share `a_p` (invoice_payment.amount_paid; a single-payment link: a_p = A).
- `ChargeFact`: a charge (amount authorized, `c` = amount_captured), its Refund objects
  (`RefundFact`: amount, created, voided by refund.failed / canceled at, or the pre-basil
  partial-capture release, which is not a customer refund) and its disputes (`DisputeFact`:
  amount and status history).

Rules (docs/STRIPE_FLOWS.md sections 1, 3, 4, 5; docs/PROGRAMS.md):
- tenure month of an invoice: month 1 starts at the service start of the customer's first
  invoice with amount paid > 0; month k+1 at the k-th monthly anniversary (UTC, day clamped
  like Stripe bills); an invoice's month is that of its own service start (`service_at`).
- terms: the tier covering the month, else the program's rate; months after
  `duration_months` earn nothing. One-time charges: the program's own rate, always.
- base = RHU(A x total_excluding_tax / total) (0 when total <= 0 or A <= 0);
  reward R = RHU(base x rate); a reward of 0 is not a reward.
- refunded r_p = min(c, customer refunds that were not voided); disputed d_p = sum over the
  charge's disputes of: inquiry (warning_*) 0, chargeback (needs_response, under_review) or
  lost min(amount, c), won / prevented 0.
- L_r = sum_p a_p x min(c, r_p) / c, L = sum_p a_p x min(c, r_p + d_p) / c;
  refund target T_r = RHU(R x min(L_r, A) / A), total target T = RHU(R x min(L, A) / A).
  Net clawed back = T at the end of the stream (order-independent). `clawbacks_minor` /
  `reinstatements_minor` replay the targets in Stripe time order (refund reason and the
  disputes' reason apart): informative only; the pipeline may split the same net figure
  differently in another delivery order.

Revenue (docs/ANALYTICS.md, with the choices it leaves open made here):
- + A of every paid invoice (money paid through Stripe: the off-Stripe part of a basil
  invoice and a pre-basil paid_out_of_band invoice add nothing), + amount_captured of a
  one-time charge;
- - the customer refunds of each charge that still count at the end (a refund that failed
  or was canceled costs 0; the pre-basil partial-capture release is not a refund);
- - the disputed amount of a lost dispute (a partial dispute lost costs its `amount`, not
  the charge); inquiries, won disputes: 0. Credit notes move no money by themselves (their
  refunds arrive as Refund objects).
- referred revenue: customers with a referral code; organic: the others.
Every sum is per referrer (or customer) x currency x mode x Connect account (None: the
platform); `ledger_mode` is `{mode}` or `{mode}@{account}` (docs/STRIPE_FLOWS.md section 6).
"""

from __future__ import annotations

import calendar
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

FORMAT = "refstream.simulator.expected/2"
KIND_INVOICE = "invoice"
KIND_ONE_TIME = "one_time"
INQUIRY_STATUSES = ("warning_needs_response", "warning_under_review", "warning_closed")
CHARGEBACK_STATUSES = ("needs_response", "under_review", "lost")
FAVOURABLE_STATUSES = ("won", "prevented")
DISPUTE_OUTCOMES = ("won", "lost", "inquiry")
REFUND_VOID_STATUSES = ("failed", "canceled")


class LedgerInvariantError(RuntimeError):
    """A money rule of the expected ledger broke: a bug in the simulator, never bad input."""


def invariant(condition: bool, message: str) -> None:
    if not condition:
        raise LedgerInvariantError(message)


def half_up(value: Fraction | Decimal | int) -> int:
    """ROUND_HALF_UP (halves away from zero) of an exact value."""
    x = Fraction(value)
    if x >= 0:
        return math.floor(x + Fraction(1, 2))
    return -math.floor(-x + Fraction(1, 2))


def share_minor(amount_minor: int, part: Fraction | int, whole: Fraction | int) -> int:
    """RHU(amount x part / whole), exactly."""
    invariant(whole > 0, f"share of a non-positive whole {whole}")
    return half_up(Fraction(amount_minor) * Fraction(part) / Fraction(whole))


def net_base_minor(amount_minor: int, total_excluding_tax_minor: int, total_minor: int) -> int:
    if total_minor <= 0 or amount_minor <= 0:
        return 0
    return share_minor(amount_minor, total_excluding_tax_minor, total_minor)


def percent(text: str) -> Fraction:
    invariant(text.endswith("%"), f"rate {text!r} needs a %")
    return Fraction(Decimal(text[:-1])) / 100


# --- tenure (restated from docs/PROGRAMS.md, not imported) ---------------------------------


def add_months(ts_s: int, months: int) -> int:
    """The `months`-th monthly anniversary of `ts_s` (UTC, day clamped to the month)."""
    a = datetime.fromtimestamp(ts_s, UTC)
    index = a.month - 1 + months
    year, month = a.year + index // 12, index % 12 + 1
    day = min(a.day, calendar.monthrange(year, month)[1])
    return int(a.replace(year=year, month=month, day=day).timestamp())


def tenure_month(anchor_s: int, at_s: int) -> int:
    """1 + the number of anniversaries k >= 1 of `anchor_s` at or before `at_s`."""
    k = 0
    while add_months(anchor_s, k + 1) <= at_s:
        k += 1
    return k + 1


# --- the program ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier:
    from_month: int
    to_month: int | None  # inclusive; None: onwards
    rate_percent: str

    def covers(self, month: int) -> bool:
        return self.from_month <= month and (self.to_month is None or month <= self.to_month)


@dataclass(frozen=True)
class SimProgram:
    """The one program the simulator's expectations assume is the only one in force:
    a rate by tenure-month tier, the program's own rate between tiers and for one-time
    payments, nothing after `duration_months`."""

    program_id: str = "sim-tiered"
    rate_percent: str = "20%"  # written like the program file writes it
    hold_days: int = 30
    tiers: tuple[Tier, ...] = (Tier(1, 2, "30%"), Tier(3, 4, "25%"))
    duration_months: int | None = 5

    @property
    def rate(self) -> Fraction:
        return percent(self.rate_percent)

    def rate_for_month(self, month: int) -> Fraction | None:
        """The rate of an invoice in tenure month `month`; None after the duration."""
        if self.duration_months is not None and month > self.duration_months:
            return None
        for tier in self.tiers:
            if tier.covers(month):
                return percent(tier.rate_percent)
        return self.rate

    def reward_minor(self, base_minor: int, rate: Fraction | None = None) -> int:
        return half_up(Fraction(base_minor) * (self.rate if rate is None else rate))

    def toml(self) -> str:
        """The program file (docs/PROGRAMS.md) to apply with `refstream programs apply`."""
        out = [
            "# Written by `refstream simulate`: the program its expected ledger assumes.",
            "# Apply it alone (no other active program), or the totals will differ.",
            "[[program]]",
            f'id = "{self.program_id}"',
            'description = "refstream simulator: tiered share of the net base, time-limited"',
            f'rate = "{self.rate_percent}"',
            f"hold_days = {self.hold_days}",
            'basis = "net"',
        ]
        if self.duration_months is not None:
            out.append(f"duration_months = {self.duration_months}")
        for tier in self.tiers:
            out += ["", "[[program.tiers]]", f"from_month = {tier.from_month}"]
            if tier.to_month is not None:
                out.append(f"to_month = {tier.to_month}")
            out.append(f'rate = "{tier.rate_percent}"')
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.program_id,
            "rate": self.rate_percent,
            "hold_days": self.hold_days,
            "basis": "net",
        }
        if self.duration_months is not None:
            out["duration_months"] = self.duration_months
        if self.tiers:
            out["tiers"] = [
                {
                    "from_month": t.from_month,
                    **({"to_month": t.to_month} if t.to_month is not None else {}),
                    "rate": t.rate_percent,
                }
                for t in self.tiers
            ]
        return out


# --- facts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefundFact:
    """One Refund object of a charge."""

    refund_id: str
    amount_minor: int
    created_at: int
    voided_at: int | None = None  # refund.failed / refund.updated (canceled) time
    void_status: str | None = None  # failed | canceled
    release: bool = False  # pre-basil partial capture remainder: not a customer refund

    def counts_at(self, t: int) -> bool:
        if self.release or self.created_at > t:
            return False
        return self.voided_at is None or self.voided_at > t

    @property
    def counts(self) -> bool:
        return not self.release and self.voided_at is None


@dataclass(frozen=True)
class DisputeFact:
    """One dispute (or inquiry) of a charge: its amount and status history."""

    dispute_id: str
    amount_minor: int
    history: tuple[tuple[int, str], ...]  # (at, status), Stripe time order

    def status_at(self, t: int) -> str | None:
        status = None
        for at, s in self.history:
            if at <= t:
                status = s
        return status

    @property
    def opened_at(self) -> int:
        return self.history[0][0]

    @property
    def closed_at(self) -> int:
        return self.history[-1][0]

    @property
    def final_status(self) -> str:
        return self.history[-1][1]

    @property
    def outcome(self) -> str:
        """won | lost | inquiry (an inquiry closed without escalating)."""
        s = self.final_status
        return "inquiry" if s in INQUIRY_STATUSES else ("lost" if s == "lost" else "won")

    @property
    def escalated(self) -> bool:
        return self.history[0][1] in INQUIRY_STATUSES and self.outcome != "inquiry"


def dispute_taken(status: str | None, amount_minor: int, captured_minor: int) -> int:
    """d of one dispute in `status` (docs/STRIPE_FLOWS.md section 3)."""
    if status in CHARGEBACK_STATUSES:
        return min(amount_minor, captured_minor)
    return 0  # None, inquiries, won, prevented


@dataclass(frozen=True)
class ChargeFact:
    charge_id: str
    payment_intent_id: str | None  # None: a charge made without a payment intent
    customer_key: str
    livemode: bool
    account: str | None
    currency: str
    amount_minor: int  # authorized
    captured_minor: int  # c
    paid_at: int
    refunds: tuple[RefundFact, ...] = ()
    disputes: tuple[DisputeFact, ...] = ()

    @property
    def payment_key(self) -> str:
        return self.payment_intent_id or self.charge_id

    @property
    def release_minor(self) -> int:
        return sum(r.amount_minor for r in self.refunds if r.release)

    def refunded_at(self, t: int) -> int:
        return min(self.captured_minor, sum(r.amount_minor for r in self.refunds if r.counts_at(t)))

    def disputed_at(self, t: int) -> int:
        return sum(
            dispute_taken(d.status_at(t), d.amount_minor, self.captured_minor)
            for d in self.disputes
        )

    @property
    def refunded_minor(self) -> int:
        return min(self.captured_minor, sum(r.amount_minor for r in self.refunds if r.counts))

    @property
    def lost_minor(self) -> int:
        return sum(
            min(d.amount_minor, self.captured_minor) for d in self.disputes if d.outcome == "lost"
        )

    @property
    def revenue_minor(self) -> int:
        """What the charge's corrections take from revenue (<= 0)."""
        return -self.refunded_minor - self.lost_minor

    def change_times(self) -> set[int]:
        times = {r.created_at for r in self.refunds if not r.release}
        times |= {r.voided_at for r in self.refunds if r.voided_at is not None}
        times |= {at for d in self.disputes for at, _ in d.history}
        return times


@dataclass(frozen=True)
class PaymentFact:
    """One paid invoice or one one-time charge: what earns, and the charges that paid it."""

    payment_id: str  # the invoice id, or the charge id of a one-time payment
    kind: str  # invoice | one_time
    customer_key: str  # customer id, or the payment intent of a guest checkout
    livemode: bool
    currency: str
    referral_code: str | None
    amount_minor: int  # A: the earning amount (money paid through Stripe)
    total_minor: int
    total_excluding_tax_minor: int
    paid_at: int
    shares: tuple[tuple[str, int], ...] = ()  # (charge id, a_p)
    account: str | None = None
    service_at: int | None = None  # the tenure point of an invoice (section 5)
    amount_paid_minor: int | None = None  # the invoice's amount paid (None: = amount_minor)
    billing_reason: str | None = None
    flows: tuple[str, ...] = ()  # the scenario's labels of the flows this payment shows

    @property
    def paid_minor(self) -> int:
        return self.amount_minor if self.amount_paid_minor is None else self.amount_paid_minor

    @property
    def charge_ids(self) -> tuple[str, ...]:
        return tuple(ch for ch, _ in self.shares)


@dataclass(frozen=True)
class CustomerFact:
    customer_key: str
    livemode: bool
    currency: str
    referral_code: str | None
    code_on: str  # where the story put the code (customer, subscription, charge, ...)
    kind: str  # subscriber | guest
    account: str | None = None
    api_version: str | None = None


@dataclass(frozen=True)
class PaymentOutcome:
    payment: PaymentFact
    tenure_month: int | None
    rate: Fraction | None
    base_minor: int
    reward_minor: int  # 0: no reward (organic, after the duration, or a base too small)
    clawed_back_minor: int  # net: the total target T at the end of the stream
    clawbacks_minor: int  # Stripe time order replay (see the module docstring)
    reinstatements_minor: int
    refund_clawed_minor: int  # T_r at the end


def _lost_share(
    payment: PaymentFact, charges: dict[str, ChargeFact], t: int | None
) -> tuple[Fraction, Fraction]:
    """(L_r, L) of a payment: money refunded and money lost on it, at `t` (None: the end)."""
    refunded, lost = Fraction(0), Fraction(0)
    for charge_id, share in payment.shares:
        ch = charges[charge_id]
        c = ch.captured_minor
        invariant(c > 0, f"{charge_id}: nothing captured")
        r = ch.refunded_minor if t is None else ch.refunded_at(t)
        d = (
            sum(dispute_taken(x.final_status, x.amount_minor, c) for x in ch.disputes)
            if t is None
            else ch.disputed_at(t)
        )
        refunded += Fraction(share * min(c, r), c)
        lost += Fraction(share * min(c, r + d), c)
    return refunded, lost


def _targets(reward: int, amount: int, refunded: Fraction, lost: Fraction) -> tuple[int, int]:
    whole = Fraction(amount)
    t_r = half_up(reward * min(refunded, whole) / whole)
    t = half_up(reward * min(lost, whole) / whole)
    return t_r, t


def settle_payment(
    payment: PaymentFact,
    charges: dict[str, ChargeFact],
    program: SimProgram,
    anchor_at: int | None = None,
) -> PaymentOutcome:
    """The reward of one payment and what its charges' refunds and disputes took back."""
    invariant(payment.amount_minor >= 0, f"{payment.payment_id}: negative earning amount")
    invariant(
        sum(a for _, a in payment.shares) == payment.amount_minor or payment.amount_minor == 0,
        f"{payment.payment_id}: shares {payment.shares} do not add up to {payment.amount_minor}",
    )
    month: int | None = None
    rate: Fraction | None = None
    if payment.kind == KIND_ONE_TIME:
        rate = program.rate
    else:
        invariant(payment.service_at is not None, f"{payment.payment_id}: no service start")
        service = payment.service_at or 0
        month = tenure_month(service if anchor_at is None else anchor_at, service)
        rate = program.rate_for_month(month)
    base = net_base_minor(
        payment.amount_minor, payment.total_excluding_tax_minor, payment.total_minor
    )
    reward = 0
    if payment.referral_code is not None and rate is not None:
        reward = program.reward_minor(base, rate)
    if reward <= 0:
        return PaymentOutcome(payment, month, rate, base, 0, 0, 0, 0, 0)
    amount = payment.amount_minor
    times = sorted({t for ch in payment.charge_ids for t in charges[ch].change_times()})
    prev_r = prev_d = clawbacks = reinstatements = 0
    for t in times:
        t_r, t_all = _targets(reward, amount, *_lost_share(payment, charges, t))
        for delta in (t_r - prev_r, (t_all - t_r) - prev_d):
            if delta > 0:
                clawbacks += delta
            else:
                reinstatements -= delta
        prev_r, prev_d = t_r, t_all - t_r
    t_r, t_all = _targets(reward, amount, *_lost_share(payment, charges, None))
    invariant(
        clawbacks - reinstatements == t_all,
        f"{payment.payment_id}: replay nets {clawbacks - reinstatements}, target {t_all}",
    )
    invariant(0 <= t_r <= t_all <= reward, f"{payment.payment_id}: clawed {t_all} of {reward}")
    return PaymentOutcome(payment, month, rate, base, reward, t_all, clawbacks, reinstatements, t_r)


def ledger_mode(livemode: bool, account: str | None) -> str:
    mode = "live" if livemode else "test"
    return f"{mode}@{account}" if account else mode


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"


@dataclass(frozen=True)
class ExpectedLedger:
    program: SimProgram
    outcomes: tuple[PaymentOutcome, ...]
    customers: tuple[CustomerFact, ...]
    charges: tuple[ChargeFact, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    def _customer(self) -> dict[tuple[str, bool, str | None], CustomerFact]:
        return {(c.customer_key, c.livemode, c.account): c for c in self.customers}

    def customer_revenue(self) -> dict[tuple[str, bool, str | None], int]:
        """Revenue per (customer key, livemode, account), docs/ANALYTICS.md as restated."""
        revenue: dict[tuple[str, bool, str | None], int] = defaultdict(int)
        for o in self.outcomes:
            p = o.payment
            revenue[(p.customer_key, p.livemode, p.account)] += p.amount_minor
        for ch in self.charges:
            revenue[(ch.customer_key, ch.livemode, ch.account)] += ch.revenue_minor
        return revenue

    def referrer_rows(self) -> list[dict[str, Any]]:
        """Per (referral code, currency, mode, account): rewards, net clawbacks, net and
        referred revenue (what referrer_balances / referrer_daily sum to)."""
        rows: dict[tuple[str, str, bool, str], dict[str, Any]] = {}
        members: dict[tuple[str, str, bool, str], set[str]] = defaultdict(set)

        def row(code: str, currency: str, livemode: bool, account: str | None) -> dict[str, Any]:
            key = (code, currency, livemode, account or "")
            return rows.setdefault(
                key,
                {
                    "referral_code": code,
                    "currency": currency,
                    "livemode": livemode,
                    "mode": _mode(livemode),
                    "account": account,
                    "ledger_mode": ledger_mode(livemode, account),
                    "rewards_minor": 0,
                    "rewards_count": 0,
                    "clawed_back_minor": 0,
                    "net_minor": 0,
                    "referred_revenue_minor": 0,
                    "customers": 0,
                },
            )

        for o in self.outcomes:
            p = o.payment
            if p.referral_code is None:
                continue
            r = row(p.referral_code, p.currency, p.livemode, p.account)
            r["rewards_minor"] += o.reward_minor
            r["rewards_count"] += 1 if o.reward_minor > 0 else 0
            r["clawed_back_minor"] += o.clawed_back_minor
            r["net_minor"] += o.reward_minor - o.clawed_back_minor
        customers = self._customer()
        for (key, livemode, account), revenue in self.customer_revenue().items():
            c = customers.get((key, livemode, account))
            invariant(c is not None, f"revenue of an unknown customer {key}")
            if c is None or c.referral_code is None:
                continue
            r = row(c.referral_code, c.currency, livemode, account)
            r["referred_revenue_minor"] += revenue
            members[(c.referral_code, c.currency, livemode, account or "")].add(key)
        for row_key, r in rows.items():
            r["customers"] = len(members[row_key])
            invariant(
                0 <= r["clawed_back_minor"] <= r["rewards_minor"],
                f"referrer {row_key}: clawed back {r['clawed_back_minor']} of {r['rewards_minor']}",
            )
        return [rows[key] for key in sorted(rows)]

    def revenue_rows(self) -> list[dict[str, Any]]:
        """Per (currency, mode, account): referred vs organic revenue (revenue_split)."""
        rows: dict[tuple[str, bool, str], dict[str, Any]] = {}
        customers = self._customer()
        for (key, livemode, account), revenue in self.customer_revenue().items():
            c = customers[(key, livemode, account)]
            r = rows.setdefault(
                (c.currency, livemode, account or ""),
                {
                    "currency": c.currency,
                    "livemode": livemode,
                    "mode": _mode(livemode),
                    "account": account,
                    "ledger_mode": ledger_mode(livemode, account),
                    "referred_minor": 0,
                    "organic_minor": 0,
                    "unattributed_minor": 0,
                    "total_minor": 0,
                },
            )
            r["referred_minor" if c.referral_code else "organic_minor"] += revenue
            r["total_minor"] += revenue
        return [rows[key] for key in sorted(rows)]

    def customer_rows(self) -> list[dict[str, Any]]:
        revenue = self.customer_revenue()
        return [
            {
                "customer_key": c.customer_key,
                "livemode": c.livemode,
                "mode": _mode(c.livemode),
                "account": c.account,
                "api_version": c.api_version,
                "currency": c.currency,
                "kind": c.kind,
                "attribution": "referred" if c.referral_code else "organic",
                "referral_code": c.referral_code,
                "code_on": c.code_on,
                "revenue_minor": revenue.get((c.customer_key, c.livemode, c.account), 0),
            }
            for c in sorted(self.customers, key=lambda c: (c.customer_key, c.livemode))
        ]

    def payment_rows(self) -> list[dict[str, Any]]:
        rows = []
        for o in sorted(self.outcomes, key=lambda o: o.payment.payment_id):
            p = o.payment
            rows.append(
                {
                    "payment_id": p.payment_id,
                    "kind": p.kind,
                    "billing_reason": p.billing_reason,
                    "customer_key": p.customer_key,
                    "livemode": p.livemode,
                    "account": p.account,
                    "currency": p.currency,
                    "referral_code": p.referral_code,
                    "paid_at": p.paid_at,
                    "amount_minor": p.amount_minor,
                    "amount_paid_minor": p.paid_minor,
                    "shares": [[ch, a] for ch, a in p.shares],
                    "tenure_month": o.tenure_month,
                    "rate": None if o.rate is None else str(o.rate),
                    "base_minor": o.base_minor,
                    "reward_minor": o.reward_minor,
                    "clawed_back_minor": o.clawed_back_minor,
                    "refund_clawed_minor": o.refund_clawed_minor,
                    "flows": list(p.flows),
                }
            )
        return rows

    def charge_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "charge_id": ch.charge_id,
                "payment_intent_id": ch.payment_intent_id,
                "customer_key": ch.customer_key,
                "account": ch.account,
                "amount_minor": ch.amount_minor,
                "captured_minor": ch.captured_minor,
                "release_minor": ch.release_minor,
                "refunded_minor": ch.refunded_minor,
                "voided_refunds": [r.void_status for r in ch.refunds if r.voided_at is not None],
                "disputes": [
                    {"amount_minor": d.amount_minor, "statuses": [s for _, s in d.history]}
                    for d in ch.disputes
                ],
                "revenue_minor": ch.revenue_minor,
            }
            for ch in sorted(self.charges, key=lambda ch: ch.charge_id)
        ]

    def referrer_summary(self) -> dict[tuple[str, str, str], tuple[int, int, int]]:
        """{(referral_code, currency, ledger_mode): (rewards, clawed back net, net)} of every
        referrer with a reward or a clawback: what an end-to-end check compares."""
        return {
            (r["referral_code"], r["currency"], r["ledger_mode"]): (
                r["rewards_minor"],
                r["clawed_back_minor"],
                r["net_minor"],
            )
            for r in self.referrer_rows()
            if r["rewards_minor"] or r["clawed_back_minor"]
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "program": self.program.to_json(),
            "counts": dict(self.counts),
            "referrers": self.referrer_rows(),
            "revenue": self.revenue_rows(),
            "customers": self.customer_rows(),
            "payments": self.payment_rows(),
            "charges": self.charge_rows(),
        }


def tenure_anchors(payments: Iterable[PaymentFact]) -> dict[tuple[str, bool, str | None], int]:
    """Per customer: the service start of its first invoice with amount paid > 0."""
    first: dict[tuple[str, bool, str | None], tuple[int, int]] = {}
    for p in payments:
        if p.kind != KIND_INVOICE or p.paid_minor <= 0 or p.service_at is None:
            continue
        key = (p.customer_key, p.livemode, p.account)
        if key not in first or (p.paid_at, p.service_at) < first[key]:
            first[key] = (p.paid_at, p.service_at)
    return {key: service for key, (_, service) in first.items()}


def build_ledger(
    payments: Iterable[PaymentFact],
    customers: Iterable[CustomerFact],
    program: SimProgram,
    counts: dict[str, int] | None = None,
    charges: Iterable[ChargeFact] = (),
) -> ExpectedLedger:
    payments = list(payments)
    charge_list = list(charges)
    by_id = {ch.charge_id: ch for ch in charge_list}
    invariant(len(by_id) == len(charge_list), "two charge facts share an id")
    for ch in charge_list:
        invariant(
            0 <= ch.refunded_minor + ch.lost_minor <= ch.captured_minor,
            f"{ch.charge_id}: refunded {ch.refunded_minor} + lost {ch.lost_minor} "
            f"of {ch.captured_minor}",
        )
    anchors = tenure_anchors(payments)
    outcomes = tuple(
        settle_payment(p, by_id, program, anchors.get((p.customer_key, p.livemode, p.account)))
        for p in payments
    )
    return ExpectedLedger(
        program, outcomes, tuple(customers), tuple(charge_list), dict(counts or {})
    )
