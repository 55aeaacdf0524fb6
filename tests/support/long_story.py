"""Years of one subscriber's Stripe events, with refunds, disputes and Stripe's retries.

    events = long_story(BASIL, seed=3, months=120)    # Stripe time order

Built on simulator.stripe_factory.subscription_story (both API families: pre-basil links
charge and invoice in the payloads, basil through invoice_payment.paid), plus per invoice
n (counting from 0):
- n % 10 == 3: half refunded 5 days after payment (refund.created + charge.refunded);
- n % 40 == 17: a second refund of the rest 20 days after payment;
- n % 25 == 11: a chargeback 40 days after payment, closed 30 days later (lost, or won
  every other time);
- n % 30 == 29: a refund that fails after it was counted (refund.failed + charge.updated);
- n % 6 == 1: a quarter refunded 45 days after payment (after the payment was compacted);
- every 7th event delivered again an hour later (a Stripe retry).
"""

from __future__ import annotations

import copy

from simulator.stripe_factory import DAY, DEFAULT_START, Json, StripeFactory, subscription_story


def long_story(
    api_version: str,
    *,
    seed: int,
    months: int = 120,
    code: str = "ACME",
    start: int = DEFAULT_START,
    retries: bool = True,
) -> list[Json]:
    f = StripeFactory(api_version=api_version, livemode=True, seed=seed)
    story = subscription_story(
        f, start=start, months=months, code=code, invoice_payment_events=f.basil
    )
    events = list(story.events)
    for n, (inv, charge) in enumerate(zip(story.invoices, story.charges, strict=True)):
        paid_at = inv["status_transitions"]["paid_at"]
        amount = charge["amount_captured"]
        refunds: list[Json] = []
        if n % 10 == 3:
            half = f.refund(charge, amount=amount // 2, created=paid_at + 5 * DAY)
            refunds.append(half)
            events.append(f.event("refund.created", half, created=paid_at + 5 * DAY))
            refunded = f.refunded_charge(charge, refunds)
            events.append(f.event("charge.refunded", refunded, created=paid_at + 5 * DAY + 1))
            if n % 40 == 17:
                rest = f.refund(charge, amount=amount - amount // 2, created=paid_at + 20 * DAY)
                refunds.append(rest)
                events.append(f.event("refund.created", rest, created=paid_at + 20 * DAY))
                refunded = f.refunded_charge(charge, refunds)
                events.append(f.event("charge.refunded", refunded, created=paid_at + 20 * DAY))
        if n % 30 == 29:
            doomed = f.refund(charge, amount=amount // 4, created=paid_at + 3 * DAY)
            events.append(f.event("refund.created", doomed, created=paid_at + 3 * DAY))
            refunded = f.refunded_charge(charge, [doomed])
            events.append(f.event("charge.refunded", refunded, created=paid_at + 3 * DAY + 1))
            events += f.refund_failure_events(charge, [doomed], doomed, created=paid_at + 6 * DAY)
        if n % 6 == 1 and not refunds:
            late = f.refund(charge, amount=amount // 4, created=paid_at + 45 * DAY)
            events.append(f.event("refund.created", late, created=paid_at + 45 * DAY))
            refunded = f.refunded_charge(charge, [late])
            events.append(f.event("charge.refunded", refunded, created=paid_at + 45 * DAY + 1))
        if n % 25 == 11 and not refunds and n % 6 != 1:
            opened = f.dispute(charge, created=paid_at + 40 * DAY)
            closed = {**copy.deepcopy(opened), "status": "won" if n % 50 == 11 else "lost"}
            events.append(f.event("charge.dispute.created", opened, created=paid_at + 40 * DAY))
            events.append(f.event("charge.dispute.closed", closed, created=paid_at + 70 * DAY))
    events.sort(key=lambda e: e["created"])  # stable: same-second order is kept
    if retries:
        again = [
            (e["created"] + 3_600, i, e) for i, e in enumerate(events) if i % 7 == 6
        ]  # an hour later, Stripe retries the very same event
        merged = [(e["created"], i, e) for i, e in enumerate(events)] + again
        events = [e for _, _, e in sorted(merged, key=lambda t: (t[0], t[1]))]
    return events
