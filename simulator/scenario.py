"""A seeded, realistic multi-customer Stripe event stream and the ledger it must produce.

    scenario = generate(ScenarioConfig(customers=200, months=12, seed=7))
    scenario.events                 # tuple of Stripe events (dicts), Stripe time order
    scenario.expected.to_json()     # the expected ledger (simulator/expected.py)
    scenario.program.toml()         # the one (tiered, time-limited) program it assumes

Customers (each one a story built from simulator.stripe_factory):
- subscribers on any API version (2018-02-06 without amount_paid, 2019-02-19 with `date`,
  pre-basil, basil), usd or eur, test or live mode, on the platform or on a Connect
  account (events with `account`): monthly renewals for up to `months` months, upgrades
  (invoiced at once or prorations riding on the next renewal), downgrades (prorations on
  the next renewal), metered usage billed in arrears, churn, coupons, tax or VAT,
  truncated invoice lines (`has_more`), out-of-band payments (basil: part off Stripe;
  pre-basil: paid_out_of_band, earns nothing) sometimes with a credit note, and add-ons
  bought once (through Checkout, or a charge without a payment intent);
- guests: a one-time Checkout purchase without a customer, keyed by its payment intent;
- referred (a code under `code_key`, on the customer, the subscription, the Checkout
  Session, only the invoices' subscription snapshot, or the charge) or organic (no code);
- basil invoice payments: one `invoice_payment.paid` per payment after its charge (never
  `invoice.payments`: webhooks do not render that includable field); partial payments
  (two payment intents, each its share); one payment intent paying two invoices;
- corrections of any charge: refunds (partial steps or full; refund.created +
  charge.refunded), refunds that fail or are canceled after they were counted (then
  charge.updated with amount_refunded back down, sometimes a new refund later),
  pre-basil partial captures (the released remainder is a Refund that is no customer
  refund), disputes whole or partial, won or lost, inquiries closed or escalated.

The stories stay inside what the pipeline can decide the same way in any delivery order
(docs/STRIPE_FLOWS.md): one code per customer, carried by that customer's events; every
invoice charge is linked (pre-basil `invoice.charge` / `charge.invoice`, basil an
invoice_payment.paid per payment), so no amount-match guess is needed; one-time charges
never share an amount with an invoice paid within two days; the first invoice of a
subscriber is always paid through Stripe (it starts the tenure clock); refunds come
before a dispute of the same charge and refunds + disputed amount never exceed what was
captured; a voided refund's charge.updated comes a second after its refund.failed /
refund.updated; every dispute is closed by the end of the stream.
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
    ChargeFact,
    CustomerFact,
    DisputeFact,
    ExpectedLedger,
    PaymentFact,
    RefundFact,
    SimProgram,
    add_months,
    build_ledger,
    half_up,
    invariant,
)
from simulator.stripe_factory import (
    BASIL,
    DAY,
    DEFAULT_START,
    OLD_2018,
    OLD_2019,
    PRE_BASIL,
    Json,
    Line,
    StripeFactory,
    _price,
    plan_of,
)

# Monthly plans (basic, pro, business) and one-time purchases, in minor units.
PLANS = {"usd": (1_900, 4_900, 9_900), "eur": (1_700, 4_500, 8_900)}
PLAN_NAMES = ("basic", "pro", "business")
ONE_TIME_AMOUNTS = {"usd": (2_900, 14_900, 19_900, 49_900), "eur": (2_500, 13_900, 17_900, 45_900)}
USAGE_UNIT = {"usd": 3, "eur": 3}  # per API call, metered in arrears
SEAT_PRICE = {"usd": 500, "eur": 450}  # extra seats on an invoice with many lines
MANUAL_AMOUNTS = {"usd": (2_500, 7_500), "eur": (2_200, 6_900)}  # one-off invoices
# (rate, inclusive): none, US sales tax added on top, EU VAT contained in the price.
TAX_PROFILES = {
    "usd": ((None, False), (None, False), ("0.0825", False)),
    "eur": ((None, False), ("0.2", True), ("0.19", False)),
}
SUBSCRIBER_CODE_PLACES = ("customer", "subscription", "checkout_session", "invoice_only")
GUEST_CODE_PLACES = ("charge", "checkout_session")
DISPUTE_REASONS = ("fraudulent", "product_not_received", "subscription_canceled")
MAX_CUSTOMERS = 10_000  # about 400k events and 2 GB in memory
MAX_MONTHS = 36
LINES_SHOWN = 10  # a truncated invoice shows its first 10 lines (has_more)


class ScenarioError(ValueError):
    """A scenario setting out of range."""


_RATES = (
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
    "partial_dispute_share",
    "inquiry_rate",
    "inquiry_escalation_share",
    "refund_void_share",
    "partial_capture_rate",
    "partial_payment_rate",
    "multi_invoice_payment_rate",
    "upgrade_invoiced_now_share",
    "metered_share",
    "truncated_lines_rate",
    "old_api_share",
    "basil_share",
    "out_of_band_rate",
    "credit_note_share",
    "connect_share",
    "no_payment_intent_share",
    "no_payment_intent_dispute_rate",
)


@dataclass(frozen=True)
class ScenarioConfig:
    """Everything that shapes a scenario; the same config always yields the same stream.
    Rates are per subscriber-month, per payment or per charge as noted; shares are of the
    thing named."""

    customers: int = 200  # customer stories (subscribers and guests)
    months: int = 12  # renewals per subscriber, at most
    seed: int = 1
    referrers: int | None = None  # referral codes; default: one per 8 customers
    start: int = DEFAULT_START  # first signup (unix seconds); signups spread over 28 days
    currencies: tuple[str, ...] = ("usd", "eur")
    live_ratio: float = 0.2  # share of customers in live mode
    organic_ratio: float = 0.25  # share of customers without a referral code
    guest_ratio: float = 0.1  # share of guest checkouts among customers
    add_on_ratio: float = 0.25  # share of subscribers who also buy once
    upgrade_rate: float = 0.05  # per subscriber-month
    downgrade_rate: float = 0.04  # per subscriber-month
    upgrade_invoiced_now_share: float = 0.5  # else the prorations ride on the next renewal
    churn_rate: float = 0.03  # per subscriber-month
    metered_share: float = 0.25  # subscribers with a metered item billed in arrears
    truncated_lines_rate: float = 0.05  # renewals with more lines than a webhook shows
    refund_rate: float = 0.07  # per charge
    full_refund_share: float = 0.4  # of refunded charges
    refund_void_share: float = 0.3  # of refunded charges: one refund fails or is canceled
    dispute_rate: float = 0.03  # per charge (chargebacks)
    dispute_won_share: float = 0.5
    partial_dispute_share: float = 0.4  # of disputes and escalated inquiries
    inquiry_rate: float = 0.03  # per charge
    inquiry_escalation_share: float = 0.4  # of inquiries
    partial_capture_rate: float = 0.3  # of one-time charges (pre-basil: a release refund)
    no_payment_intent_share: float = 0.3  # of add-ons: a Charges API charge, no Checkout
    no_payment_intent_dispute_rate: float = 0.6  # of those charges (their disputes name no PI)
    partial_payment_rate: float = 0.06  # of basil invoices: paid by two payment intents
    multi_invoice_payment_rate: float = 0.04  # of basil renewals: + a one-off invoice, one PI
    out_of_band_rate: float = 0.04  # of renewals (never a first invoice)
    credit_note_share: float = 0.5  # of out-of-band invoices
    old_api_share: float = 0.15  # customers on 2018-02-06 / 2019-02-19
    basil_share: float = 0.5  # of the other customers
    connect_share: float = 0.15  # customers of a connected account
    connected_accounts: int = 2
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
        if not 0 <= self.connected_accounts <= 100:
            raise ScenarioError(f"connected_accounts must be 0..100, got {self.connected_accounts}")
        unknown = [c for c in self.currencies if c not in PLANS]
        if not self.currencies or unknown:
            raise ScenarioError(f"currencies must be among {sorted(PLANS)}, got {unknown}")
        for name in _RATES:
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
    charges: tuple[ChargeFact, ...]
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
    """One customer being written: its factory, mode, account, currency, code, invoices."""

    f: StripeFactory
    currency: str
    code: str | None
    code_on: str
    customer_id: str | None
    account: str | None = None
    invoices: list[tuple[int, int]] = field(default_factory=list)  # (paid_at, A)

    @property
    def livemode(self) -> bool:
        return self.f.livemode

    @property
    def key(self) -> str:
        invariant(self.customer_id is not None, "a guest story has no customer id")
        return self.customer_id or ""


class _Builder:
    def __init__(self, config: ScenarioConfig) -> None:
        self.cfg = config
        self.rng = _Random(config.seed)
        self.codes = referral_codes(config.referrer_count)
        # A few referrers bring most customers (Zipf-like weights), as in real programs.
        self.code_weights = list(accumulate(1.0 / (rank + 1) for rank in range(len(self.codes))))
        self.accounts = [
            f"acct_{_Random(config.seed * 1_000 + n).getrandbits(64):016x}"
            for n in range(config.connected_accounts)
        ]
        self._events: list[tuple[int, int, Json]] = []
        self.payments: list[PaymentFact] = []
        self.charges: list[ChargeFact] = []
        self.customers: list[CustomerFact] = []
        self.counts: dict[str, int] = {
            k: 0
            for k in (
                "refunds",
                "voided_refunds",
                "disputes",
                "partial_disputes",
                "inquiries",
                "escalated_inquiries",
                "partial_captures",
                "partial_payments",
                "multi_invoice_payments",
                "out_of_band",
                "credit_notes",
                "truncated_lines",
                "metered",
                "upgrades",
                "downgrades",
                "churned",
                "no_payment_intent",
                "old_api",
            )
        }

    # --- output ---

    def emit(self, story: _Story, type_: str, obj: Json, at: int, **kw: Any) -> None:
        event = story.f.event(type_, obj, created=at, account=story.account, **kw)
        self._events.append((at, len(self._events), event))

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
            "charges": len(self.charges),
            **self.counts,
        }
        expected = build_ledger(
            self.payments, self.customers, self.cfg.program, counts, self.charges
        )
        return Scenario(
            self.cfg,
            events,
            tuple(self.customers),
            tuple(self.payments),
            tuple(self.charges),
            expected,
        )

    # --- who ---

    def new_story(self, code_places: tuple[str, ...], *, guest: bool = False) -> _Story:
        rng, cfg = self.rng, self.cfg
        if not guest and rng.chance(cfg.old_api_share):
            # Alternating, so that even a small scenario has both old versions.
            version = (OLD_2018, OLD_2019)[self.counts["old_api"] % 2]
            self.counts["old_api"] += 1
        else:
            version = BASIL if rng.chance(cfg.basil_share) else PRE_BASIL
        f = StripeFactory(
            api_version=version, livemode=rng.chance(cfg.live_ratio), seed=rng.getrandbits(63)
        )
        account = None
        if self.accounts and not guest and rng.chance(cfg.connect_share):
            account = rng.choice(self.accounts)
        currency = rng.choice(cfg.currencies)
        code = None
        if not rng.chance(cfg.organic_ratio):
            code = rng.choices(self.codes, cum_weights=self.code_weights)[0]
        code_on = rng.choice(code_places) if code else "none"
        return _Story(f, currency, code, code_on, customer_id=None, account=account)

    def metadata(self, story: _Story, place: str) -> dict[str, str]:
        if story.code is None or story.code_on != place:
            return {}
        user = f"usr_{story.f.new_id('u', 10)[2:]}"
        return {self.cfg.code_key: story.code, self.cfg.new_user_id_key: user}

    def register(self, story: _Story, key: str, kind: str) -> None:
        self.customers.append(
            CustomerFact(
                key,
                story.livemode,
                story.currency,
                story.code,
                story.code_on,
                kind,
                account=story.account,
                api_version=story.f.api_version,
            )
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
        metered = rng.chance(cfg.metered_share)
        if metered:
            self.counts["metered"] += 1
        cus = f.customer(
            created=signup, metadata=self.metadata(story, "customer"), customer_id=cus_id
        )
        self.emit(story, "customer.created", cus, signup)
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
            self.emit(story, "checkout.session.completed", session, signup + 5)
        if story.code_on != "invoice_only":
            self.emit(story, "customer.subscription.created", sub, anchor)
        tax = (tax_rate, tax_inclusive)
        pending: list[Line] = []  # prorations billed on the next renewal
        for m in range(cfg.months):
            start, end = add_months(anchor, m), add_months(anchor, m + 1)
            price = PLANS[currency][tier]
            lines = [*pending]
            pending = []
            if metered and m > 0:
                calls = rng.randrange(200, 5_000)
                prev = add_months(anchor, m - 1)
                lines.append(
                    Line(
                        calls * USAGE_UNIT[currency],
                        prev,
                        start,
                        kind="metered",
                        description=f"{calls} x API calls (usage)",
                        quantity=calls,
                    )
                )
            truncated = m > 0 and rng.chance(cfg.truncated_lines_rate)
            if truncated:
                self.counts["truncated_lines"] += 1
                lines = [
                    Line(SEAT_PRICE[currency], start, end, kind="item",
                         description=f"Extra seat {n + 1}")
                    for n in range(LINES_SHOWN)
                ] + lines  # fmt: skip
            lines.append(
                Line(
                    price,
                    start,
                    end,
                    description=f"1 x {PLAN_NAMES[tier].title()}",
                    metadata=sub_meta or None,
                    price_id=_price_id(tier),
                )
            )
            discount = half_up(Decimal(price) * Decimal("0.2")) if coupon and m == 0 else 0
            reason = "subscription_create" if m == 0 else "subscription_cycle"
            self.subscription_invoice(
                story,
                sub["id"],
                sub_meta,
                lines,
                created=start,
                reason=reason,
                tax=tax,
                discount_minor=discount,
                service_at=start,
                lines_shown=LINES_SHOWN if truncated else None,
            )
            roll = rng.random()
            change = None
            if roll < cfg.upgrade_rate and tier + 1 < len(PLANS[currency]):
                change = tier + 1
            elif roll < cfg.upgrade_rate + cfg.downgrade_rate and tier > 0:
                change = tier - 1
            if change is not None and m + 1 < cfg.months:
                at = start + (end - start) * rng.randrange(30, 71) // 100
                prorations = _prorations(PLANS[currency], tier, change, at, start, end)
                updated = copy.deepcopy(sub)
                item = updated["items"]["data"][0]
                item["price"] = _price(_price_id(change), PLANS[currency][change], currency)
                if "plan" in updated:
                    updated["plan"] = plan_of(item["price"])
                self.emit(
                    story,
                    "customer.subscription.updated",
                    updated,
                    at,
                    previous_attributes={"items": sub["items"]},
                )
                sub = updated
                if change > tier:
                    self.counts["upgrades"] += 1
                    if rng.chance(cfg.upgrade_invoiced_now_share):
                        self.subscription_invoice(
                            story,
                            sub["id"],
                            sub_meta,
                            prorations,
                            created=at,
                            reason="subscription_update",
                            tax=tax,
                            discount_minor=0,
                            service_at=None,  # no subscription line: its paid_at
                        )
                    else:
                        pending = prorations
                else:
                    self.counts["downgrades"] += 1
                    # Billed with the next renewal, when the credit still leaves it positive.
                    if PLANS[currency][change] + sum(li.amount for li in prorations) > 0:
                        pending = prorations
                tier = change
            if 1 <= m < cfg.months - 1 and rng.chance(cfg.churn_rate):
                canceled = copy.deepcopy(sub)
                canceled.update(status="canceled", canceled_at=end - 60, ended_at=end)
                self.emit(story, "customer.subscription.deleted", canceled, end)
                self.counts["churned"] += 1
                break
        if rng.chance(cfg.add_on_ratio) and story.invoices:
            paid_at = rng.choice(story.invoices)[0]
            self.one_time(story, at=paid_at + rng.randrange(3 * DAY, 20 * DAY))

    def subscription_invoice(
        self,
        story: _Story,
        subscription_id: str,
        sub_meta: dict[str, str],
        lines: list[Line],
        *,
        created: int,
        reason: str,
        tax: tuple[str | None, bool],
        discount_minor: int,
        service_at: int | None,
        lines_shown: int | None = None,
    ) -> None:
        rng, f, cfg = self.rng, story.f, self.cfg
        cus_id = story.key
        paid_at = created + (3_700 if reason == "subscription_cycle" else 60)
        first = not story.invoices
        out_of_band = not first and rng.chance(cfg.out_of_band_rate)
        partial = f.basil and not out_of_band and rng.chance(cfg.partial_payment_rate)
        multi = (
            f.basil
            and reason == "subscription_cycle"
            and not out_of_band
            and not partial
            and rng.chance(cfg.multi_invoice_payment_rate)
        )
        pis = [f.new_id("pi")] + ([f.new_id("pi")] if partial else [])
        ch_ids = [f.new_id("ch") for _ in pis]
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
            "lines_shown": lines_shown,
        }
        inv_id = f.new_id("in")
        link: dict[str, Any] = (
            {} if f.basil or out_of_band else {"payment_intent": pis[0], "charge": ch_ids[0]}
        )
        inv = f.invoice(
            cus_id, paid_at=paid_at, invoice_id=inv_id, out_of_band=out_of_band, **link, **common
        )
        due = inv["amount_due"]
        invariant(due > 0, f"invoice {inv_id} pays nothing")
        flows = [reason]
        if lines_shown is not None:
            flows.append("truncated_lines")
        if any(li.kind == "metered" for li in lines):
            flows.append("metered")
        if any(li.kind == "proration" for li in lines) and reason == "subscription_cycle":
            flows.append("prorations_on_renewal")
        if f.api_version in (OLD_2018, OLD_2019):
            flows.append(f"api_{f.api_version}")
        if story.account:
            flows.append("connect")
        # What was paid through Stripe (A) and by which payment.
        through_stripe = due
        if out_of_band:
            self.counts["out_of_band"] += 1
            flows.append("out_of_band")
            if f.basil:
                # Partly marked paid outside Stripe: the rest is paid by a payment intent.
                off = max(1, min(due - 1, due * rng.randrange(30, 71) // 100))
                inv["amount_paid_off_stripe"] = off
                through_stripe = due - off
            else:
                through_stripe = 0  # paid_out_of_band: amount_paid 0, no charge
        amounts = [through_stripe]
        if partial:
            self.counts["partial_payments"] += 1
            flows.append("partial_payment")
            first_part = max(1, min(due - 1, due * rng.randrange(30, 71) // 100))
            amounts = [first_part, due - first_part]
        if reason == "subscription_cycle" and rng.chance(0.5):
            draft = f.invoice(cus_id, paid_at=None, invoice_id=inv_id, **common)
            self.emit(story, "invoice.created", draft, created)
        # The one-off invoice a multi-invoice payment intent also pays.
        manual: Json | None = None
        if multi:
            self.counts["multi_invoice_payments"] += 1
            flows.append("multi_invoice_payment")
            amount = rng.choice(MANUAL_AMOUNTS[story.currency])
            manual = f.invoice(
                cus_id,
                lines=[Line(amount, created, created, kind="item", description="Onboarding")],
                created=created - 600,
                paid_at=paid_at,
                billing_reason="manual",
                currency=story.currency,
            )
        shares: list[tuple[str, int]] = []
        times = [paid_at - 2 * DAY, paid_at] if partial else [paid_at]
        for n, (pi, ch_id, amount, at) in enumerate(zip(pis, ch_ids, amounts, times, strict=True)):
            if amount <= 0:
                continue
            charge_amount = amount + (manual["amount_paid"] if manual and n == 0 else 0)
            ch = f.charge(
                amount=charge_amount,
                created=at - 2,
                currency=story.currency,
                customer=cus_id,
                payment_intent=pi,
                invoice=None if f.basil else inv_id,
                charge_id=ch_id,
            )
            self.emit(story, "charge.succeeded", ch, at - 1)
            if f.basil:
                ip = f.invoice_payment(
                    inv, payment_intent=pi, created=at, amount_paid=amount,
                    amount_requested=amount if (partial or out_of_band) else None,
                )  # fmt: skip
                self.emit(story, "invoice_payment.paid", ip, at)
                if manual is not None and n == 0:
                    ipm = f.invoice_payment(manual, payment_intent=pi, created=at)
                    self.emit(story, "invoice_payment.paid", ipm, at)
            shares.append((ch_id, amount))
            self.settle_charge(story, ch, at)
        self.emit(story, "invoice.paid", inv, paid_at)
        if not out_of_band and rng.chance(0.3):
            self.emit(story, "invoice.payment_succeeded", inv, paid_at)
        if out_of_band and rng.chance(cfg.credit_note_share):
            self.counts["credit_notes"] += 1
            flows.append("credit_note")
            credited = max(1, due // 5)
            note = f.credit_note(
                inv,
                created=paid_at + rng.randrange(DAY, 5 * DAY),
                amount=credited,
                out_of_band_amount=credited,
                reason="order_change",
            )
            self.emit(story, "credit_note.created", note, note["created"])
        story.invoices.append((paid_at, through_stripe))
        self.payments.append(
            PaymentFact(
                payment_id=inv_id,
                kind=KIND_INVOICE,
                customer_key=cus_id,
                livemode=f.livemode,
                currency=story.currency,
                referral_code=story.code,
                amount_minor=through_stripe,
                total_minor=inv["total"],
                total_excluding_tax_minor=inv["total_excluding_tax"],
                paid_at=paid_at,
                shares=tuple(shares),
                account=story.account,
                service_at=paid_at if service_at is None else service_at,
                amount_paid_minor=0 if (out_of_band and not f.basil) else due,
                billing_reason=reason,
                flows=tuple(flows),
            )
        )
        if manual is not None:
            self.emit(story, "invoice.paid", manual, paid_at)
            story.invoices.append((paid_at, manual["amount_paid"]))
            self.payments.append(
                PaymentFact(
                    payment_id=manual["id"],
                    kind=KIND_INVOICE,
                    customer_key=cus_id,
                    livemode=f.livemode,
                    currency=story.currency,
                    referral_code=story.code,
                    amount_minor=manual["amount_paid"],
                    total_minor=manual["total"],
                    total_excluding_tax_minor=manual["total_excluding_tax"],
                    paid_at=paid_at,
                    shares=((ch_ids[0], manual["amount_paid"]),),
                    account=story.account,
                    service_at=paid_at,  # no subscription line: its paid_at
                    billing_reason="manual",
                    flows=("manual", "multi_invoice_payment"),
                )
            )

    # --- one-time purchases ---

    def guest(self) -> None:
        story = self.new_story(GUEST_CODE_PLACES, guest=True)
        span = max(DAY, self.cfg.months * 30 * DAY)
        self.one_time(story, at=self.cfg.start + self.rng.randrange(0, span))

    def one_time(self, story: _Story, *, at: int) -> None:
        """A one-time purchase: a guest's (its own story) or a subscriber's add-on."""
        rng, f, currency, cfg = self.rng, story.f, story.currency, self.cfg
        guest = story.customer_id is None
        amount = rng.choice(ONE_TIME_AMOUNTS[currency])
        no_pi = not guest and rng.chance(cfg.no_payment_intent_share)
        partial_capture = not no_pi and rng.chance(cfg.partial_capture_rate)
        captured = amount
        if partial_capture:
            captured = amount * rng.randrange(50, 91) // 100
        # Never the amount of an invoice paid near it: the pipeline may match an unlinked
        # charge to an unlinked invoice by amount (docs/STRIPE_FLOWS.md section 2).
        while any(
            abs(paid - at) <= 2 * DAY and a in (captured, amount) for paid, a in story.invoices
        ):
            amount += 100
            captured += 100
        via_checkout = not no_pi and (
            not guest or story.code_on == "checkout_session" or rng.chance(0.8)
        )
        amount_tax = 0
        if via_checkout and not partial_capture and rng.chance(0.3):
            amount_tax = half_up(Decimal(amount) * Decimal("0.2") / Decimal("1.2"))
        pi = None if no_pi else f.new_id("pi")
        ch_id = f.new_id("ch")
        key = story.customer_id or pi or ch_id
        if guest:
            self.register(story, key, "guest")
        flows = ["one_time"]
        if no_pi:
            self.counts["no_payment_intent"] += 1
            flows.append("no_payment_intent")
        ch = f.charge(
            amount=amount,
            created=at + 10,
            currency=currency,
            customer=story.customer_id,
            payment_intent=pi,
            metadata=self.metadata(story, "charge") if guest else None,
            charge_id=ch_id,
            captured=not partial_capture,
        )
        self.emit(story, "charge.succeeded", ch, at + 11)
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
            self.emit(story, "checkout.session.completed", session, at + 12)
        paid_at = at + 10
        if partial_capture:
            # Captured later for less than authorized (manual capture).
            self.counts["partial_captures"] += 1
            flows.append("partial_capture")
            paid_at = at + 3_600
            ch = f.charge(
                amount=amount,
                created=at + 10,
                currency=currency,
                customer=story.customer_id,
                payment_intent=pi,
                metadata=self.metadata(story, "charge") if guest else None,
                charge_id=ch_id,
                amount_captured=captured,
            )
            self.emit(story, "charge.captured", ch, paid_at)
            release = f.release_refund(ch)
            if release is not None:
                release["created"] = paid_at
                ch["refunds"]["data"] = [release]
                self.emit(story, "refund.created", release, paid_at)
                self.emit(story, "charge.refunded", ch, paid_at)
        shares = ((ch_id, captured),)
        self.settle_charge(
            story, ch, paid_at, key=key, refund_rate=0.5 if partial_capture else None
        )
        self.payments.append(
            PaymentFact(
                payment_id=ch_id,
                kind=KIND_ONE_TIME,
                customer_key=key,
                livemode=f.livemode,
                currency=currency,
                referral_code=story.code,
                amount_minor=captured,
                total_minor=captured,
                total_excluding_tax_minor=captured - amount_tax,
                paid_at=paid_at,
                shares=shares,
                account=story.account,
                flows=tuple(flows),
            )
        )

    # --- refunds and disputes ---

    def settle_charge(
        self,
        story: _Story,
        charge: Json,
        paid_at: int,
        *,
        key: str | None = None,
        refund_rate: float | None = None,
    ) -> None:
        """Refunds, disputes and inquiries of one charge; records its ChargeFact."""
        rng, cfg, f = self.rng, self.cfg, story.f
        captured = charge["amount_captured"]
        release_refunds = [r for r in charge["refunds"]["data"]]
        refunds: list[Json] = list(release_refunds)
        facts: list[RefundFact] = [
            RefundFact(r["id"], r["amount"], r["created"], release=True) for r in release_refunds
        ]
        at = paid_at + rng.randrange(DAY, 20 * DAY)
        counted = 0  # customer refunds that count
        if rng.chance(cfg.refund_rate if refund_rate is None else refund_rate):
            self.counts["refunds"] += 1
            first = max(1, min(captured - 1, captured * rng.randrange(10, 61) // 100))
            full = rng.chance(cfg.full_refund_share)
            if full and rng.chance(0.5):
                points = [captured]
            elif full:
                points = [first, captured]
            elif rng.chance(0.5) and first < captured - 1:
                points = [
                    first,
                    first + max(1, (captured - 1 - first) * rng.randrange(1, 90) // 100),
                ]
            else:
                points = [first]
            void_at = rng.randrange(len(points)) if rng.chance(cfg.refund_void_share) else None
            for n, total in enumerate(points):
                delta = total - counted
                if delta <= 0:
                    continue
                voided = n == void_at
                status = rng.choice(("pending", "requires_action")) if voided else "succeeded"
                refund = f.refund(charge, amount=delta, created=at, status=status)
                refunds.append(refund)
                self.emit(story, "refund.created", refund, at)
                snapshot = f.refunded_charge(charge, refunds)
                self.emit(story, "charge.refunded", snapshot, at + 1)
                if not voided:
                    counted = total
                    facts.append(RefundFact(refund["id"], delta, at))
                    at += rng.randrange(DAY, 10 * DAY)
                    continue
                self.counts["voided_refunds"] += 1
                gone = at + rng.randrange(DAY, 5 * DAY)
                void_status = "failed" if status == "pending" else "canceled"
                dead = f.failed_refund(refund, status=void_status)
                after, previous = f.charge_after_refund_failure(charge, refunds, dead)
                refunds[-1] = dead
                type_ = "refund.failed" if void_status == "failed" else "refund.updated"
                self.emit(story, type_, dead, gone, previous_attributes={"status": status})
                self.emit(story, "charge.updated", after, gone + 1, previous_attributes=previous)
                facts.append(RefundFact(refund["id"], delta, at, gone, void_status))
                at = gone + rng.randrange(DAY, 5 * DAY)
                if rng.chance(0.5):  # the customer is refunded again, this time for good
                    again = f.refund(charge, amount=delta, created=at)
                    refunds.append(again)
                    self.emit(story, "refund.created", again, at)
                    self.emit(story, "charge.refunded", f.refunded_charge(charge, refunds), at + 1)
                    facts.append(RefundFact(again["id"], delta, at))
                    counted = total
                    at += rng.randrange(DAY, 10 * DAY)
                break  # no later steps after a void: keep the story short
        snapshot = f.refunded_charge(charge, refunds) if refunds else charge
        disputes: list[DisputeFact] = []
        left = captured - counted
        inquiry = rng.chance(cfg.inquiry_rate)
        dispute_rate = cfg.dispute_rate
        if charge.get("payment_intent") is None:
            dispute_rate = cfg.no_payment_intent_dispute_rate
        chargeback = not inquiry and rng.chance(dispute_rate)
        if (inquiry or chargeback) and left > 0:
            disputes.append(self.dispute(story, snapshot, at, left, inquiry))
        self.charges.append(
            ChargeFact(
                charge_id=charge["id"],
                payment_intent_id=charge.get("payment_intent"),
                customer_key=key or story.key,
                livemode=f.livemode,
                account=story.account,
                currency=charge["currency"],
                amount_minor=charge["amount"],
                captured_minor=captured,
                paid_at=paid_at,
                refunds=tuple(facts),
                disputes=tuple(disputes),
            )
        )

    def dispute(
        self, story: _Story, charge: Json, after: int, left: int, inquiry: bool
    ) -> DisputeFact:
        rng, cfg = self.rng, self.cfg
        opened = after + rng.randrange(5 * DAY, 30 * DAY)
        amount = left
        escalates = inquiry and rng.chance(cfg.inquiry_escalation_share)
        if (not inquiry or escalates) and rng.chance(cfg.partial_dispute_share) and left > 1:
            amount = max(1, left * rng.randrange(20, 81) // 100)
            self.counts["partial_disputes"] += 1
        history: list[tuple[int, str]] = []
        du = story.f.dispute(
            charge,
            created=opened,
            amount=amount,
            reason=rng.choice(DISPUTE_REASONS),
            status="warning_needs_response" if inquiry else "needs_response",
        )

        def step(type_: str, status: str, at: int, **kw: Any) -> None:
            du["status"] = status
            if status not in ("warning_needs_response", "warning_under_review", "warning_closed"):
                du["is_charge_refundable"] = False
            self.emit(story, type_, du, at, **kw)
            history.append((at, status))

        t = opened
        if inquiry:
            self.counts["inquiries"] += 1
            step("charge.dispute.created", "warning_needs_response", t)
            t += rng.randrange(2 * DAY, 7 * DAY)
            step("charge.dispute.updated", "warning_under_review", t,
                 previous_attributes={"status": "warning_needs_response"})  # fmt: skip
            t += rng.randrange(2 * DAY, 10 * DAY)
            if not escalates:
                step("charge.dispute.closed", "warning_closed", t)
                return DisputeFact(du["id"], amount, tuple(history))
            self.counts["escalated_inquiries"] += 1
            step("charge.dispute.updated", "needs_response", t,
                 previous_attributes={"status": "warning_under_review"})  # fmt: skip
        else:
            self.counts["disputes"] += 1
            step("charge.dispute.created", "needs_response", t)
        self.emit(story, "charge.dispute.funds_withdrawn", du, t)
        t += rng.randrange(10 * DAY, 45 * DAY)
        outcome = "won" if rng.chance(cfg.dispute_won_share) else "lost"
        step("charge.dispute.closed", outcome, t)
        if outcome == "won":
            self.emit(story, "charge.dispute.funds_reinstated", du, t)
        return DisputeFact(du["id"], amount, tuple(history))


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
