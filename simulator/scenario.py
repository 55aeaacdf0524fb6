"""A seeded, realistic multi-customer Stripe event stream and the ledger it must produce.

    scenario = generate(ScenarioConfig(customers=200, months=12, seed=7))
    scenario.events                 # tuple of Stripe events (dicts), Stripe time order
    scenario.expected.to_json()     # the expected ledger (simulator/expected.py)
    scenario.program.toml()         # the one program the expectations assume

Customers (each one a story built from simulator.stripe_factory):
- subscribers, either API family, usd or eur, test or live mode: monthly renewals for up to
  `months` months, upgrades (prorated `subscription_update` invoice at once) and
  downgrades (prorations on the next renewal), churn, coupons, sales tax or VAT (inclusive
  or exclusive), sometimes a one-time add-on bought through Checkout;
- guests: a one-time Checkout purchase without a customer, keyed by its payment intent;
- referred (a code under `code_key`, on the customer, the subscription, the Checkout
  Session, only the invoices' subscription snapshot, or the charge) or organic (no code);
- refunds of any paid charge (partial steps or full; refund.created + charge.refunded with
  the cumulative amount_refunded) and disputes (created, then closed won or lost).

The stories stay inside what the pipeline can decide the same way in any delivery order:
one code per customer, carried by events of that customer's stream; every charge of a
basil invoice is named by the invoice's `payments` (always when it is later refunded or
disputed) or by an invoice_payment.paid event, so no charge is counted twice; add-on
purchases go through Checkout and never share an amount with an invoice paid within two
days; refunds come before a dispute of the same charge and never exceed what was paid.
"""

from __future__ import annotations

import copy
import random
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from itertools import accumulate
from typing import Any

from simulator.expected import (
    KIND_INVOICE,
    KIND_ONE_TIME,
    CustomerFact,
    DisputeFact,
    ExpectedLedger,
    PaymentFact,
    RefundStep,
    SimProgram,
    build_ledger,
    half_up,
    invariant,
)
from simulator.stripe_factory import (
    API_VERSIONS,
    DAY,
    DEFAULT_START,
    Json,
    Line,
    StripeFactory,
    _price,
)
from streams.tenure import add_months

# Monthly plans (basic, pro, business) and one-time purchases, in minor units.
PLANS = {"usd": (1_900, 4_900, 9_900), "eur": (1_700, 4_500, 8_900)}
PLAN_NAMES = ("basic", "pro", "business")
ONE_TIME_AMOUNTS = {"usd": (2_900, 14_900, 19_900, 49_900), "eur": (2_500, 13_900, 17_900, 45_900)}
# (rate, inclusive): none, US sales tax added on top, EU VAT contained in the price.
TAX_PROFILES = {
    "usd": ((None, False), (None, False), ("0.0825", False)),
    "eur": ((None, False), ("0.2", True), ("0.19", False)),
}
SUBSCRIBER_CODE_PLACES = ("customer", "subscription", "checkout_session", "invoice_only")
GUEST_CODE_PLACES = ("charge", "checkout_session")
DISPUTE_REASONS = ("fraudulent", "product_not_received", "subscription_canceled")
MAX_CUSTOMERS = 10_000  # about 350k events and 1.5 GB in memory
MAX_MONTHS = 36


class ScenarioError(ValueError):
    """A scenario setting out of range."""


@dataclass(frozen=True)
class ScenarioConfig:
    """Everything that shapes a scenario; the same config always yields the same stream."""

    customers: int = 200  # customer stories (subscribers and guests)
    months: int = 12  # renewals per subscriber, at most
    seed: int = 1
    referrers: int | None = None  # referral codes; default: one per 8 customers
    start: int = DEFAULT_START  # first signup (unix seconds); signups spread over 28 days
    currencies: tuple[str, ...] = ("usd", "eur")
    live_ratio: float = 0.2  # share of customers in live mode
    organic_ratio: float = 0.25  # share of customers without a referral code
    guest_ratio: float = 0.1  # share of guest checkouts among customers
    add_on_ratio: float = 0.15  # share of subscribers who also buy once
    upgrade_rate: float = 0.04  # per subscriber-month
    downgrade_rate: float = 0.03  # per subscriber-month
    churn_rate: float = 0.03  # per subscriber-month
    refund_rate: float = 0.06  # per payment
    full_refund_share: float = 0.4  # of refunded payments
    dispute_rate: float = 0.015  # per payment
    dispute_won_share: float = 0.5
    code_key: str = "cello_ucc"  # REFSTREAM_REFERRAL_CODE_KEY of the pipeline
    new_user_id_key: str = "new_user_id"
    program: SimProgram = field(default_factory=SimProgram)

    def validate(self) -> None:
        if not 1 <= self.customers <= MAX_CUSTOMERS:
            raise ScenarioError(f"customers must be 1..{MAX_CUSTOMERS}, got {self.customers}")
        if not 1 <= self.months <= MAX_MONTHS:
            raise ScenarioError(f"months must be 1..{MAX_MONTHS}, got {self.months}")
        if self.referrers is not None and self.referrers < 1:
            raise ScenarioError(f"referrers must be >= 1, got {self.referrers}")
        unknown = [c for c in self.currencies if c not in PLANS]
        if not self.currencies or unknown:
            raise ScenarioError(f"currencies must be among {sorted(PLANS)}, got {unknown}")
        for name in (
            "live_ratio",
            "organic_ratio",
            "guest_ratio",
            "add_on_ratio",
            "upgrade_rate",
            "downgrade_rate",
            "churn_rate",
            "refund_rate",
            "full_refund_share",
            "dispute_rate",
            "dispute_won_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ScenarioError(f"{name} must be within 0..1, got {value}")
        if self.upgrade_rate + self.downgrade_rate > 1.0:
            raise ScenarioError("upgrade_rate + downgrade_rate must be <= 1")

    @property
    def referrer_count(self) -> int:
        return self.referrers if self.referrers is not None else max(1, self.customers // 8)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["currencies"] = list(self.currencies)
        out["program"] = self.program.to_json()
        return out


@dataclass(frozen=True)
class Scenario:
    config: ScenarioConfig
    events: tuple[Json, ...]  # Stripe time order (ties: generation order)
    customers: tuple[CustomerFact, ...]
    payments: tuple[PaymentFact, ...]
    expected: ExpectedLedger

    @property
    def program(self) -> SimProgram:
        return self.config.program

    def expected_document(self) -> dict[str, Any]:
        """The expected-ledger JSON document (`refstream simulate --expect-file`)."""
        return {**self.expected.to_json(), "scenario": self.config.to_json()}


def referral_codes(count: int) -> list[str]:
    return [f"REF{n:04d}" for n in range(1, count + 1)]


def generate(config: ScenarioConfig) -> Scenario:
    """The scenario of `config`: its events and its independently computed ledger."""
    config.validate()
    return _Builder(config).build()


@dataclass
class _Story:
    """One customer being written: its factory, mode, currency, code and invoices."""

    f: StripeFactory
    currency: str
    code: str | None
    code_on: str
    customer_id: str | None
    invoices: list[tuple[int, int]] = field(default_factory=list)  # (paid_at, amount_paid)

    @property
    def livemode(self) -> bool:
        return self.f.livemode


class _Builder:
    def __init__(self, config: ScenarioConfig) -> None:
        self.cfg = config
        self.rng = _Random(config.seed)
        self.codes = referral_codes(config.referrer_count)
        # A few referrers bring most customers (Zipf-like weights), as in real programs.
        self.code_weights = list(accumulate(1.0 / (rank + 1) for rank in range(len(self.codes))))
        self._events: list[tuple[int, int, Json]] = []
        self.payments: list[PaymentFact] = []
        self.customers: list[CustomerFact] = []
        self.counts = {"refunds": 0, "disputes": 0, "upgrades": 0, "downgrades": 0, "churned": 0}

    # --- output ---

    def emit(self, f: StripeFactory, type_: str, obj: Json, at: int, **kw: Any) -> None:
        self._events.append((at, len(self._events), f.event(type_, obj, created=at, **kw)))

    def build(self) -> Scenario:
        for _ in range(self.cfg.customers):
            if self.rng.chance(self.cfg.guest_ratio):
                self.guest()
            else:
                self.subscriber()
        events = tuple(e for _, _, e in sorted(self._events, key=lambda t: (t[0], t[1])))
        ids = [e["id"] for e in events]
        invariant(len(set(ids)) == len(ids), "two simulated events share an id")
        counts = {
            "events": len(events),
            "customers": len(self.customers),
            "payments": len(self.payments),
            **self.counts,
        }
        expected = build_ledger(self.payments, self.customers, self.cfg.program, counts)
        return Scenario(self.cfg, events, tuple(self.customers), tuple(self.payments), expected)

    # --- who ---

    def new_story(self, code_places: tuple[str, ...]) -> _Story:
        rng = self.rng
        f = StripeFactory(
            api_version=rng.choice(API_VERSIONS),
            livemode=rng.chance(self.cfg.live_ratio),
            seed=rng.getrandbits(63),
        )
        currency = rng.choice(self.cfg.currencies)
        code = None
        if not rng.chance(self.cfg.organic_ratio):
            code = rng.choices(self.codes, cum_weights=self.code_weights)[0]
        code_on = rng.choice(code_places) if code else "none"
        return _Story(f, currency, code, code_on, customer_id=None)

    def metadata(self, story: _Story, place: str) -> dict[str, str]:
        if story.code is None or story.code_on != place:
            return {}
        user = f"usr_{story.f.new_id('u', 10)[2:]}"
        return {self.cfg.code_key: story.code, self.cfg.new_user_id_key: user}

    def register(self, story: _Story, key: str, kind: str) -> None:
        self.customers.append(
            CustomerFact(key, story.livemode, story.currency, story.code, story.code_on, kind)
        )

    # --- subscribers ---

    def subscriber(self) -> None:
        rng, cfg = self.rng, self.cfg
        story = self.new_story(SUBSCRIBER_CODE_PLACES)
        f, currency = story.f, story.currency
        cus_id = story.customer_id = f.new_id("cus", 14)
        signup = cfg.start + rng.randrange(0, 28 * DAY)
        tax_rate, tax_inclusive = rng.choice(TAX_PROFILES[currency])
        tier = rng.randrange(len(PLANS[currency]))
        coupon = rng.chance(0.15)
        cus = f.customer(
            created=signup, metadata=self.metadata(story, "customer"), customer_id=cus_id
        )
        self.emit(f, "customer.created", cus, signup)
        self.register(story, cus_id, "subscriber")
        sub_meta = self.metadata(story, "subscription") or self.metadata(story, "invoice_only")
        anchor = signup + 2
        sub = f.subscription(
            cus_id,
            created=anchor,
            unit_amount=PLANS[currency][tier],
            currency=currency,
            metadata=sub_meta,
            period_start=anchor,
            price_id=_price_id(tier),
        )
        if story.code_on == "checkout_session" or rng.chance(0.3):
            session = f.checkout_session(
                mode="subscription",
                created=signup + 3,
                amount_total=PLANS[currency][tier],
                currency=currency,
                customer=cus_id,
                subscription=sub["id"],
                metadata=self.metadata(story, "checkout_session"),
            )
            self.emit(f, "checkout.session.completed", session, signup + 5)
        if story.code_on != "invoice_only":
            self.emit(f, "customer.subscription.created", sub, anchor)

        def invoice(lines: list[Line], created: int, reason: str, discount: int = 0) -> None:
            self.subscription_invoice(
                story,
                cus_id,
                sub["id"],
                sub_meta,
                lines,
                created=created,
                reason=reason,
                tax=(tax_rate, tax_inclusive),
                discount_minor=discount,
            )

        pending: list[Line] = []  # downgrade prorations, billed on the next renewal
        for m in range(cfg.months):
            start, end = add_months(anchor, m), add_months(anchor, m + 1)
            price = PLANS[currency][tier]
            lines = [
                Line(
                    price,
                    start,
                    end,
                    description=f"1 x {PLAN_NAMES[tier].title()}",
                    metadata=sub_meta or None,
                ),
                *pending,
            ]
            pending = []
            discount = half_up(Decimal(price) * Decimal("0.2")) if coupon and m == 0 else 0
            reason = "subscription_create" if m == 0 else "subscription_cycle"
            invoice(lines, start, reason, discount)
            roll = rng.random()
            change = None
            if roll < cfg.upgrade_rate and tier + 1 < len(PLANS[currency]):
                change = tier + 1
            elif roll < cfg.upgrade_rate + cfg.downgrade_rate and tier > 0:
                change = tier - 1
            if change is not None:
                at = start + (end - start) * rng.randrange(30, 71) // 100
                prorations = _prorations(PLANS[currency], tier, change, at, start, end)
                updated = copy.deepcopy(sub)
                item = updated["items"]["data"][0]
                item["price"] = _price(_price_id(change), PLANS[currency][change], currency)
                if "plan" in updated:
                    updated["plan"] = item["price"]
                self.emit(
                    f,
                    "customer.subscription.updated",
                    updated,
                    at,
                    previous_attributes={"items": sub["items"]},
                )
                sub = updated
                if change > tier:
                    self.counts["upgrades"] += 1
                    invoice(prorations, at, "subscription_update")
                else:
                    self.counts["downgrades"] += 1
                    # Billed with the next renewal, when the credit still leaves it positive.
                    if PLANS[currency][change] + sum(li.amount for li in prorations) > 0:
                        pending = prorations
                tier = change
            if 1 <= m < cfg.months - 1 and rng.chance(cfg.churn_rate):
                canceled = copy.deepcopy(sub)
                canceled.update(status="canceled", canceled_at=end - 60, ended_at=end)
                self.emit(f, "customer.subscription.deleted", canceled, end)
                self.counts["churned"] += 1
                break
        if rng.chance(cfg.add_on_ratio) and story.invoices:
            paid_at = rng.choice(story.invoices)[0]
            self.one_time(story, at=paid_at + rng.randrange(3 * DAY, 20 * DAY))

    def subscription_invoice(
        self,
        story: _Story,
        cus_id: str,
        subscription_id: str,
        sub_meta: dict[str, str],
        lines: list[Line],
        *,
        created: int,
        reason: str,
        tax: tuple[str | None, bool],
        discount_minor: int,
    ) -> None:
        rng, f = self.rng, story.f
        refund, dispute = self.trouble()
        pi, ch_id = f.new_id("pi"), f.new_id("ch")
        paid_at = created + (3_700 if reason == "subscription_cycle" else 60)
        # Basil webhooks usually lack invoice.payments; a refunded or disputed payment needs
        # it (the reward must name its charge), the others name it by invoice_payment.paid.
        include_payments = f.basil and (refund or dispute or rng.chance(0.5))
        common: dict[str, Any] = {
            "lines": lines,
            "created": created,
            "billing_reason": reason,
            "currency": story.currency,
            "subscription": subscription_id,
            "subscription_metadata": sub_meta,
            "tax_rate": tax[0],
            "tax_inclusive": tax[1],
            "discount_minor": discount_minor,
            "payment_intent": pi,
        }
        inv = f.invoice(
            cus_id, paid_at=paid_at, charge=ch_id, include_payments=include_payments, **common
        )
        invariant(inv["amount_paid"] > 0, f"invoice {inv['id']} pays nothing")
        if reason == "subscription_cycle" and rng.chance(0.5):
            draft = f.invoice(cus_id, paid_at=None, invoice_id=inv["id"], **common)
            self.emit(f, "invoice.created", draft, created)
        ch = f.charge(
            amount=inv["amount_paid"],
            created=paid_at - 2,
            currency=story.currency,
            customer=cus_id,
            payment_intent=pi,
            invoice=inv["id"],
            charge_id=ch_id,
        )
        self.emit(f, "charge.succeeded", ch, paid_at - 1)
        self.emit(f, "invoice.paid", inv, paid_at)
        if rng.chance(0.3):
            self.emit(f, "invoice.payment_succeeded", inv, paid_at)
        if f.basil and (not include_payments or rng.chance(0.3)):
            payment = f.invoice_payment(inv, payment_intent=pi, created=paid_at)
            self.emit(f, "invoice_payment.paid", payment, paid_at)
        story.invoices.append((paid_at, inv["amount_paid"]))
        refunds, disputed = self.corrections(f, ch, paid_at, refund, dispute)
        self.payments.append(
            PaymentFact(
                payment_id=inv["id"],
                kind=KIND_INVOICE,
                customer_key=cus_id,
                livemode=f.livemode,
                currency=story.currency,
                referral_code=story.code,
                amount_minor=inv["amount_paid"],
                total_minor=inv["total"],
                total_excluding_tax_minor=inv["total_excluding_tax"],
                paid_at=paid_at,
                charge_id=ch_id,
                refunds=refunds,
                dispute=disputed,
            )
        )

    # --- one-time purchases ---

    def guest(self) -> None:
        story = self.new_story(GUEST_CODE_PLACES)
        span = max(DAY, self.cfg.months * 30 * DAY)
        self.one_time(story, at=self.cfg.start + self.rng.randrange(0, span))

    def one_time(self, story: _Story, *, at: int) -> None:
        """A one-time purchase: a guest's (its own story) or a subscriber's add-on."""
        rng, f, currency = self.rng, story.f, story.currency
        guest = story.customer_id is None
        amount = rng.choice(ONE_TIME_AMOUNTS[currency])
        # Never the amount of an invoice paid near it: the pipeline may match a charge to an
        # unlinked invoice by amount (streams/customer_ledger.py, rule 4).
        while any(abs(paid - at) <= 2 * DAY and amt == amount for paid, amt in story.invoices):
            amount += 100
        via_checkout = not guest or story.code_on == "checkout_session" or rng.chance(0.8)
        amount_tax = 0
        if via_checkout and rng.chance(0.3):
            amount_tax = half_up(Decimal(amount) * Decimal("0.2") / Decimal("1.2"))
        pi = f.new_id("pi")
        key = story.customer_id or pi
        if guest:
            self.register(story, pi, "guest")
        refund, dispute = self.trouble()
        ch = f.charge(
            amount=amount,
            created=at + 10,
            currency=currency,
            customer=story.customer_id,
            payment_intent=pi,
            metadata=self.metadata(story, "charge") if guest else None,
        )
        self.emit(f, "charge.succeeded", ch, at + 11)
        if via_checkout:
            session = f.checkout_session(
                mode="payment",
                created=at,
                amount_total=amount,
                currency=currency,
                customer=story.customer_id,
                payment_intent=pi,
                amount_tax=amount_tax,
                metadata=self.metadata(story, "checkout_session") if guest else None,
            )
            self.emit(f, "checkout.session.completed", session, at + 12)
        refunds, disputed = self.corrections(f, ch, at + 10, refund, dispute)
        self.payments.append(
            PaymentFact(
                payment_id=ch["id"],
                kind=KIND_ONE_TIME,
                customer_key=key,
                livemode=f.livemode,
                currency=currency,
                referral_code=story.code,
                amount_minor=amount,
                total_minor=amount,
                total_excluding_tax_minor=amount - amount_tax,
                paid_at=at + 10,
                charge_id=ch["id"],
                refunds=refunds,
                dispute=disputed,
            )
        )

    # --- refunds and disputes ---

    def trouble(self) -> tuple[bool, bool]:
        """Whether the next payment will be refunded and/or disputed."""
        return self.rng.chance(self.cfg.refund_rate), self.rng.chance(self.cfg.dispute_rate)

    def corrections(
        self, f: StripeFactory, charge: Json, paid_at: int, refund: bool, dispute: bool
    ) -> tuple[tuple[RefundStep, ...], DisputeFact | None]:
        rng, amount = self.rng, charge["amount"]
        at = paid_at + rng.randrange(DAY, 20 * DAY)
        steps: list[RefundStep] = []
        refunds: list[Json] = []
        snapshot = charge
        if refund:
            self.counts["refunds"] += 1
            first = max(1, min(amount - 1, amount * rng.randrange(10, 61) // 100))
            full = rng.chance(self.cfg.full_refund_share)
            if full and rng.chance(0.5):
                points = [amount]
            elif full:
                points = [first, amount]
            elif rng.chance(0.5) and first < amount - 1:
                points = [first, first + max(1, (amount - 1 - first) * rng.randrange(1, 90) // 100)]
            else:
                points = [first]
            for total in points:
                delta = total - sum(r["amount"] for r in refunds)
                refunds.append(f.refund(charge, amount=delta, created=at))
                self.emit(f, "refund.created", refunds[-1], at)
                snapshot = f.refunded_charge(charge, refunds)
                self.emit(f, "charge.refunded", snapshot, at + 1)
                steps.append(RefundStep(at + 1, total))
                at += rng.randrange(DAY, 10 * DAY)
        refunded = steps[-1].refunded_total_minor if steps else 0
        if not dispute or refunded >= amount:
            return tuple(steps), None
        self.counts["disputes"] += 1
        opened = at + rng.randrange(5 * DAY, 30 * DAY)
        closed = opened + rng.randrange(10 * DAY, 45 * DAY)
        outcome = "won" if rng.chance(self.cfg.dispute_won_share) else "lost"
        du = f.dispute(
            snapshot,
            created=opened,
            amount=amount - refunded,
            reason=rng.choice(DISPUTE_REASONS),
        )
        self.emit(f, "charge.dispute.created", du, opened)
        self.emit(f, "charge.dispute.closed", {**du, "status": outcome}, closed)
        fact = DisputeFact(du["id"], opened, closed, outcome, amount - refunded)
        return tuple(steps), fact


class _Random(random.Random):
    """One seeded generator for every draw of a scenario."""

    def chance(self, p: float) -> bool:
        return self.random() < p


def _price_id(tier: int) -> str:
    return f"price_{PLAN_NAMES[tier]}_monthly"


def _prorations(
    prices: tuple[int, ...], old: int, new: int, at: int, start: int, end: int
) -> list[Line]:
    """Stripe's prorations of a plan change at `at` within the period start..end."""
    remaining = Decimal(end - at) / Decimal(end - start)
    return [
        Line(
            -half_up(prices[old] * remaining),
            at,
            end,
            kind="proration",
            description=f"Unused time on {PLAN_NAMES[old].title()}",
        ),
        Line(
            half_up(prices[new] * remaining),
            at,
            end,
            kind="proration",
            description=f"Remaining time on {PLAN_NAMES[new].title()}",
        ),
    ]
