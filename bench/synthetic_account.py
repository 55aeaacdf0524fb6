"""A synthetic Stripe account, as the records the ingress and the workers put on the topics.

Shaped like a real subscription business: `customers` customers, `months` monthly invoices
each (basil-shaped: the invoice lists its charge among its payments, and the charge
arrives as charge.succeeded too), one invoice in ten refunded by half. Seven customers in
ten were referred (one referrer per 20 customers), two are organic, one awaits
attribution. Every referred invoice earns a 20% reward (program `default` v1 for the first
half of the year, v2 after; every 13th customer is in program `partner`), every refunded
one a clawback of half of it; rewards older than two months are payable, older than four
paid, with one payout per referrer, month, currency and mode. One customer in five is in
test mode, one in seven pays in eur, one in eleven belongs to a Connect account.

At 100,000 customers and 12 months this is about 2.5 million Stripe events and 840,000
rewards: the account of issue 11. Records are generated lazily, per topic, in a
deterministic order (the same arguments always give the same records).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

START_S = 1_735_689_600  # 2025-01-01 00:00:00 UTC
MONTH_S = 30 * 86_400
API_VERSION = "2026-10-28.endive"


@dataclass(frozen=True)
class Customer:
    index: int

    @property
    def key(self) -> str:
        return f"cus_{self.index:07d}"

    @property
    def kind(self) -> str:
        return {7: "organic", 8: "organic", 9: "unattributed"}.get(self.index % 10, "referred")

    @property
    def code(self) -> str:
        return f"ref_{self.index // 20:05d}"

    @property
    def live(self) -> bool:
        return self.index % 5 != 0

    @property
    def currency(self) -> str:
        return "eur" if self.index % 7 == 0 else "usd"

    @property
    def account(self) -> str | None:
        return f"acct_{self.index % 3:04d}" if self.index % 11 == 0 else None

    @property
    def mode(self) -> str:
        base = "live" if self.live else "test"
        return f"{base}@{self.account}" if self.account else base

    def amount(self, month: int) -> int:
        return 1000 + (self.index * 7 + month * 13) % 9000

    def refunded(self, month: int) -> bool:
        return (self.index + month) % 10 == 0

    def program(self, month: int) -> tuple[str, int]:
        if self.index % 13 == 0:
            return "partner", 1
        return "default", 1 if month < 6 else 2


def _at(customer: Customer, month: int) -> int:
    return START_S + month * MONTH_S + customer.index % 86_400


def _event(customer: Customer, event_id: str, event_type: str, created: int,
           obj: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    body = {"id": event_id, "object": "event", "type": event_type, "created": created,
            "livemode": customer.live, "api_version": API_VERSION, "account": customer.account,
            "data": {"object": obj}}  # fmt: skip
    return {
        "event_id": event_id,
        "type": event_type,
        "created": created,
        "api_version": API_VERSION,
        "livemode": customer.live,
        "account": customer.account,
        "object_type": obj["object"],
        "object_id": obj["id"],
        "partition_key": customer.key,
        "key_source": "customer",
        "received_at_ms": created * 1000 + 250,
        "body": json.dumps(body, separators=(",", ":")).encode(),
    }


def _charge(customer: Customer, month: int, refunded: int) -> dict[str, Any]:
    amount = customer.amount(month)
    return {"id": f"ch_{customer.index}_{month}", "object": "charge", "customer": customer.key,
            "currency": customer.currency, "amount": amount, "amount_captured": amount,
            "amount_refunded": refunded, "captured": True,
            "payment_intent": f"pi_{customer.index}_{month}", "status": "succeeded"}  # fmt: skip


def stripe_events(customers: int, months: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(customers):
        customer = Customer(i)
        for month in range(months):
            at, amount = _at(customer, month), customer.amount(month)
            charge, intent = f"ch_{i}_{month}", f"pi_{i}_{month}"
            invoice = {"id": f"in_{i}_{month}", "object": "invoice", "customer": customer.key,
                       "currency": customer.currency, "amount_paid": amount,
                       "amount_due": amount, "status": "paid",
                       "payments": {"data": [{"payment": {"type": "charge", "charge": charge,
                                                          "payment_intent": intent}}]}}  # fmt: skip
            yield customer.key, _event(customer, f"evt_in_{i}_{month}", "invoice.paid", at, invoice)
            yield customer.key, _event(customer, f"evt_ch_{i}_{month}", "charge.succeeded", at,
                                       _charge(customer, month, 0))  # fmt: skip
            if customer.refunded(month):
                refund = _charge(customer, month, amount // 2)
                event_id = f"evt_rf_{i}_{month}"
                yield (
                    customer.key,
                    _event(customer, event_id, "charge.refunded", at + 86_400, refund),
                )


def attributions(customers: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for i in range(customers):
        customer = Customer(i)
        if customer.kind == "unattributed":
            continue
        referred = customer.kind == "referred"
        kind = "attribution" if referred else "organic"
        yield customer.key, {
            "attribution_id": f"{kind}:{customer.key}", "kind": kind,
            "customer_key": customer.key, "customer_id": customer.key,
            "referral_code": customer.code if referred else None, "new_user_id": None,
            "new_user_organization_id": None,
            "source": "customer_metadata" if referred else "none",
            "source_object_id": customer.key, "event_id": f"evt_cus_{i}",
            "event_type": "customer.created", "attributed_at": START_S - 60,
            "livemode": customer.live, "account": customer.account,
        }  # fmt: skip


def _reward_amount(customer: Customer, month: int) -> int:
    return customer.amount(month) // 5


def _referred(customers: int, months: int) -> Iterator[tuple[Customer, int]]:
    for i in range(customers):
        customer = Customer(i)
        if customer.kind == "referred":
            for month in range(months):
                yield customer, month


def rewards(customers: int, months: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for customer, month in _referred(customers, months):
        at, (program, version) = _at(customer, month), customer.program(month)
        amount = customer.amount(month)
        yield customer.key, {
            "reward_id": f"rw_{customer.index}_{month}", "line": "invoice",
            "referral_code": customer.code, "customer_key": customer.key,
            "customer_id": customer.key, "new_user_id": None,
            "new_user_organization_id": None, "invoice_id": f"in_{customer.index}_{month}",
            "charge_id": f"ch_{customer.index}_{month}", "payment_intent_id": None,
            "subscription_id": f"sub_{customer.index}", "payment_amount_minor": amount,
            "base_amount_minor": amount, "reward_amount_minor": _reward_amount(customer, month),
            "currency": customer.currency, "rate": "0.20", "basis": "gross",
            "tenure_month": month + 1, "program_id": program, "program_version": version,
            "livemode": customer.live, "status": "pending", "hold_until": at + 30 * 86_400,
            "paid_at": at, "source_event_id": f"evt_in_{customer.index}_{month}",
            "decided_at": at, "revision": 0, "account": customer.account,
        }  # fmt: skip


def clawbacks(customers: int, months: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for customer, month in _referred(customers, months):
        if not customer.refunded(month):
            continue
        amount = _reward_amount(customer, month) // 2
        yield customer.key, {
            "clawback_id": f"cb_{customer.index}_{month}",
            "reward_id": f"rw_{customer.index}_{month}", "kind": "clawback",
            "reason": "refund", "mode": "cancel", "referral_code": customer.code,
            "customer_key": customer.key, "amount_minor": amount,
            "currency": customer.currency, "livemode": customer.live,
            "charge_id": f"ch_{customer.index}_{month}", "refund_id": None, "dispute_id": None,
            "refunded_total_minor": customer.amount(month) // 2,
            "source_event_id": f"evt_rf_{customer.index}_{month}",
            "occurred_at": _at(customer, month) + 86_400, "applied_to_status": "pending",
            "account": customer.account,
        }  # fmt: skip


def _payout_id(customer: Customer, month: int) -> str:
    return f"po_{customer.code}_{month}_{customer.currency}_{customer.mode}"


def statuses(customers: int, months: int) -> Iterator[tuple[str, dict[str, Any]]]:
    for customer, month in _referred(customers, months):
        age = months - month
        if age <= 2:
            continue
        paid = age > 4
        yield customer.code, {
            "status_id": f"rw_{customer.index}_{month}:{'paid' if paid else 'payable'}",
            "reward_id": f"rw_{customer.index}_{month}", "referral_code": customer.code,
            "status": "paid" if paid else "payable", "previous_status": "payable" if paid
            else "pending", "amount_minor": _reward_amount(customer, month),
            "currency": customer.currency, "livemode": customer.live,
            "payout_id": _payout_id(customer, month) if paid else None, "reason": None,
            "effective_at": _at(customer, month) + 60 * 86_400, "account": customer.account,
        }  # fmt: skip


def payouts(customers: int, months: int) -> Iterator[tuple[str, dict[str, Any]]]:
    lines: dict[str, dict[str, Any]] = {}
    for customer, month in _referred(customers, months):
        if months - month <= 4 or customer.account:
            continue  # payouts carry no Connect account
        payout_id = _payout_id(customer, month)
        line = lines.setdefault(payout_id, {
            "payout_id": payout_id, "referral_code": customer.code, "reward_ids": [],
            "amount_minor": 0, "currency": customer.currency, "livemode": customer.live,
            "paid_at": _at(customer, month) + 60 * 86_400,
        })  # fmt: skip
        # A clawed-back reward is paid at its standing amount.
        cut = _reward_amount(customer, month) // 2 if customer.refunded(month) else 0
        line["reward_ids"].append(f"rw_{customer.index}_{month}")
        line["amount_minor"] += _reward_amount(customer, month) - cut
    for line in lines.values():
        yield str(line["referral_code"]), line
