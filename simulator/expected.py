"""The ledger a simulated stream must produce, computed with plain arithmetic.

Nothing here imports the pipeline (streams/, sinks/): the rules are restated from
docs/PROGRAMS.md and streams/corrections/README.md and applied to the facts the scenario
generated, so a pipeline bug cannot hide in a shared helper.

Rules, per payment of a referred customer (one simple program, `SimProgram`):
- base = ROUND_HALF_UP(amount_paid x total_excluding_tax / total) (0 when total <= 0);
  reward R = ROUND_HALF_UP(base x rate); a reward of 0 is not a reward.
- refunds: with cumulative refunded r on a payment P, refunds owe back in total
  ROUND_HALF_UP(R x min(r, P) / P); each step claws the difference to what refunds took,
  never more than is left of R.
- disputes: opening claws back what is left; `won` gives exactly that back and then lets
  refunds catch up; `lost` keeps it.
- clawed back = clawbacks - reinstatements. Only this net figure is order-independent: the
  pipeline may see a refund after a dispute opened and split the same total differently
  between clawbacks and reinstatements, so the ledger reports the net figure only.

Revenue follows docs/ANALYTICS.md: + amount paid of a paid invoice or a standalone charge,
- the refunded total of its charge, - the disputed amount of a lost dispute. Referred
revenue is that of customers with a referral code; organic, that of the others.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

FORMAT = "refstream.simulator.expected/1"
KIND_INVOICE = "invoice"
KIND_ONE_TIME = "one_time"
DISPUTE_OUTCOMES = ("won", "lost")
# R x r / P needs < 40 significant digits for any Stripe amount; 60 leaves no doubt.
_PRECISION = 60


class LedgerInvariantError(RuntimeError):
    """A money rule of the expected ledger broke: a bug in the simulator, never bad input."""


def invariant(condition: bool, message: str) -> None:
    if not condition:
        raise LedgerInvariantError(message)


def half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def share_minor(amount_minor: int, part_minor: int, whole_minor: int) -> int:
    """ROUND_HALF_UP(amount x part / whole), exactly."""
    invariant(whole_minor > 0, f"share of a non-positive whole {whole_minor}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return half_up(Decimal(amount_minor) * Decimal(part_minor) / Decimal(whole_minor))


def net_base_minor(amount_minor: int, total_excluding_tax_minor: int, total_minor: int) -> int:
    if total_minor <= 0 or amount_minor <= 0:
        return 0
    return share_minor(amount_minor, total_excluding_tax_minor, total_minor)


@dataclass(frozen=True)
class SimProgram:
    """The one program the simulator's expectations assume is the only one in force."""

    program_id: str = "sim-standard"
    rate_percent: str = "20%"  # written like the program file writes it
    hold_days: int = 30

    @property
    def rate(self) -> Decimal:
        invariant(self.rate_percent.endswith("%"), f"rate {self.rate_percent!r} needs a %")
        return Decimal(self.rate_percent[:-1]) / 100

    def reward_minor(self, base_minor: int) -> int:
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            return half_up(Decimal(base_minor) * self.rate)

    def toml(self) -> str:
        """The program file (docs/PROGRAMS.md) to apply with `refstream programs apply`."""
        return (
            "# Written by `refstream simulate`: the program its expected ledger assumes.\n"
            "# Apply it alone (no other active program), or the totals will differ.\n"
            "[[program]]\n"
            f'id = "{self.program_id}"\n'
            'description = "refstream simulator: a share of the net base, after a hold"\n'
            f'rate = "{self.rate_percent}"\n'
            f"hold_days = {self.hold_days}\n"
            'basis = "net"\n'
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.program_id,
            "rate": self.rate_percent,
            "hold_days": self.hold_days,
            "basis": "net",
        }


@dataclass(frozen=True)
class RefundStep:
    """A charge.refunded point: the charge's cumulative refunded amount from `at` on."""

    at: int
    refunded_total_minor: int


@dataclass(frozen=True)
class DisputeFact:
    dispute_id: str
    opened_at: int
    closed_at: int
    outcome: str  # won | lost
    amount_minor: int


@dataclass(frozen=True)
class PaymentFact:
    """One paid invoice or one standalone (one-time) charge, and what happened to it."""

    payment_id: str  # the invoice id, or the charge id of a one-time payment
    kind: str  # invoice | one_time
    customer_key: str  # customer id, or the payment intent of a guest checkout
    livemode: bool
    currency: str
    referral_code: str | None
    amount_minor: int  # amount_paid of the invoice / amount captured by the charge
    total_minor: int
    total_excluding_tax_minor: int
    paid_at: int
    charge_id: str
    refunds: tuple[RefundStep, ...] = ()
    dispute: DisputeFact | None = None

    @property
    def refunded_minor(self) -> int:
        return max((step.refunded_total_minor for step in self.refunds), default=0)


@dataclass(frozen=True)
class CustomerFact:
    customer_key: str
    livemode: bool
    currency: str
    referral_code: str | None
    code_on: str  # where the story put the code (customer, subscription, charge, ...)
    kind: str  # subscriber | guest


@dataclass(frozen=True)
class PaymentOutcome:
    payment: PaymentFact
    reward_minor: int  # 0: no reward (organic, or a base too small)
    clawbacks_minor: int  # in Stripe time order (see the module docstring)
    reinstatements_minor: int
    revenue_minor: int

    @property
    def clawed_back_minor(self) -> int:
        return self.clawbacks_minor - self.reinstatements_minor


def _timeline(payment: PaymentFact) -> list[tuple[int, int, str, int]]:
    """(at, rank, what, amount) in Stripe time order; at one instant, refunds come first."""
    steps = [(s.at, 0, "refund", s.refunded_total_minor) for s in payment.refunds]
    if payment.dispute is not None:
        d = payment.dispute
        steps.append((d.opened_at, 1, "opened", 0))
        steps.append((d.closed_at, 2, d.outcome, 0))
    return sorted(steps)


def settle_payment(payment: PaymentFact, program: SimProgram) -> PaymentOutcome:
    """The reward of one payment and what refunds and disputes took back, step by step."""
    invariant(payment.amount_minor > 0, f"{payment.payment_id}: nothing paid")
    invariant(
        0 <= payment.refunded_minor <= payment.amount_minor,
        f"{payment.payment_id}: refunded {payment.refunded_minor} of {payment.amount_minor}",
    )
    lost = payment.dispute is not None and payment.dispute.outcome == "lost"
    revenue = (
        payment.amount_minor
        - payment.refunded_minor
        - (payment.dispute.amount_minor if lost and payment.dispute else 0)
    )
    reward = 0
    if payment.referral_code is not None:
        base = net_base_minor(
            payment.amount_minor, payment.total_excluding_tax_minor, payment.total_minor
        )
        reward = program.reward_minor(base)
    if reward == 0:
        return PaymentOutcome(payment, 0, 0, 0, revenue)

    whole = payment.amount_minor
    refunded = refund_taken = dispute_taken = clawbacks = reinstatements = 0

    def left() -> int:
        return reward - refund_taken - dispute_taken

    def refund_catch_up() -> None:
        nonlocal refund_taken, clawbacks
        owed = share_minor(reward, min(refunded, whole), whole)
        step = max(0, min(owed - refund_taken, left()))
        refund_taken += step
        clawbacks += step

    for _, _, what, amount in _timeline(payment):
        if what == "refund":
            refunded = max(refunded, amount)
            refund_catch_up()
        elif what == "opened":
            dispute_taken = left()
            clawbacks += dispute_taken
        elif what == "won":
            reinstatements += dispute_taken
            dispute_taken = 0
            refund_catch_up()
        invariant(0 <= left() <= reward, f"{payment.payment_id}: {left()} left of {reward}")
    return PaymentOutcome(payment, reward, clawbacks, reinstatements, revenue)


@dataclass(frozen=True)
class ExpectedLedger:
    program: SimProgram
    outcomes: tuple[PaymentOutcome, ...]
    customers: tuple[CustomerFact, ...]
    counts: dict[str, int] = field(default_factory=dict)

    def referrer_rows(self) -> list[dict[str, Any]]:
        """Per (referral code, currency, mode): what referrer_balances / referrer_daily sum to."""
        rows: dict[tuple[str, str, bool], dict[str, Any]] = {}
        customers: dict[tuple[str, str, bool], set[str]] = defaultdict(set)
        for o in self.outcomes:
            p = o.payment
            if p.referral_code is None:
                continue
            key = (p.referral_code, p.currency, p.livemode)
            row = rows.setdefault(
                key,
                {
                    "referral_code": p.referral_code,
                    "currency": p.currency,
                    "livemode": p.livemode,
                    "mode": _mode(p.livemode),
                    "rewards_minor": 0,
                    "rewards_count": 0,
                    "clawed_back_minor": 0,
                    "net_minor": 0,
                    "referred_revenue_minor": 0,
                    "customers": 0,
                },
            )
            row["rewards_minor"] += o.reward_minor
            row["rewards_count"] += 1 if o.reward_minor > 0 else 0
            row["clawed_back_minor"] += o.clawed_back_minor
            row["net_minor"] += o.reward_minor - o.clawed_back_minor
            row["referred_revenue_minor"] += o.revenue_minor
            customers[key].add(p.customer_key)
        for key, row in rows.items():
            row["customers"] = len(customers[key])
            invariant(
                0 <= row["clawed_back_minor"] <= row["rewards_minor"],
                f"referrer {key}: clawed back {row['clawed_back_minor']} of {row['rewards_minor']}",
            )
        return [rows[key] for key in sorted(rows)]

    def revenue_rows(self) -> list[dict[str, Any]]:
        """Per (currency, mode): referred vs organic revenue (the revenue_split report)."""
        rows: dict[tuple[str, bool], dict[str, Any]] = {}
        for o in self.outcomes:
            p = o.payment
            row = rows.setdefault(
                (p.currency, p.livemode),
                {
                    "currency": p.currency,
                    "livemode": p.livemode,
                    "mode": _mode(p.livemode),
                    "referred_minor": 0,
                    "organic_minor": 0,
                    "unattributed_minor": 0,
                    "total_minor": 0,
                },
            )
            row["referred_minor" if p.referral_code else "organic_minor"] += o.revenue_minor
            row["total_minor"] += o.revenue_minor
        return [rows[key] for key in sorted(rows)]

    def customer_rows(self) -> list[dict[str, Any]]:
        revenue: dict[tuple[str, bool], int] = defaultdict(int)
        for o in self.outcomes:
            revenue[(o.payment.customer_key, o.payment.livemode)] += o.revenue_minor
        return [
            {
                "customer_key": c.customer_key,
                "livemode": c.livemode,
                "mode": _mode(c.livemode),
                "currency": c.currency,
                "kind": c.kind,
                "attribution": "referred" if c.referral_code else "organic",
                "referral_code": c.referral_code,
                "code_on": c.code_on,
                "revenue_minor": revenue[(c.customer_key, c.livemode)],
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
                    "charge_id": p.charge_id,
                    "customer_key": p.customer_key,
                    "livemode": p.livemode,
                    "currency": p.currency,
                    "referral_code": p.referral_code,
                    "paid_at": p.paid_at,
                    "amount_minor": p.amount_minor,
                    "reward_minor": o.reward_minor,
                    "refunded_minor": p.refunded_minor,
                    "refund_points_minor": [s.refunded_total_minor for s in p.refunds],
                    "dispute": None if p.dispute is None else p.dispute.outcome,
                    "clawed_back_minor": o.clawed_back_minor,
                    "revenue_minor": o.revenue_minor,
                }
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "program": self.program.to_json(),
            "counts": dict(self.counts),
            "referrers": self.referrer_rows(),
            "revenue": self.revenue_rows(),
            "customers": self.customer_rows(),
            "payments": self.payment_rows(),
        }


def build_ledger(
    payments: Iterable[PaymentFact],
    customers: Iterable[CustomerFact],
    program: SimProgram,
    counts: dict[str, int] | None = None,
) -> ExpectedLedger:
    outcomes = tuple(settle_payment(p, program) for p in payments)
    return ExpectedLedger(program, outcomes, tuple(customers), dict(counts or {}))


def _mode(livemode: bool) -> str:
    return "live" if livemode else "test"
