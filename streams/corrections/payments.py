"""Per-customer correction state: turns what Stripe says about payments into corrections.

The rules are docs/STRIPE_FLOWS.md §2-§4. In short, for a reward R on an invoice with
earning amount A, paid by payments p (a payment intent, or a charge without one) with
shares a_p, captured c_p, refunded r_p and disputed d_p (chargebacks only, never more than
what is not refunded):

    F = sum a_p * r_p / c_p          (money of the invoice refunded, exact fraction)
    L = F + sum a_p * d_p / c_p      (money lost, capped at A)
    refund target  = RHU(R * F / A)
    total target   = RHU(R * L / A); each dispute's target is its cumulative share of
                     (total - refund target), in dispute id order

Every fact moves the targets; the difference to what is already clawed becomes a new
record: a clawback when positive, a reinstatement when negative (a refund failed or was
canceled, a dispute was won). Reinstatements are emitted before clawbacks so the
referrer side never sees a reward clawed below zero in between.

State (JSON, one value per customer key; `new_customer_state()`):

    {"format": 2,
     "charges": {charge_id: {"pi", "currency", "captured", "release",
                             "snap": [at, rank, amount_refunded] | None,
                             "refunds": {refund_id: {"amount", "rank", "created", "void_at"}},
                             "disputes": {dispute_id: {"amount", "currency", "rank",
                                                       "opened", "closed"}}}},
     "links": {invoice_id: {payment_key: share_minor | None}},
     "rewards": {reward_id: {"ref", "clawed": {"refund": int, "disputes": {id: int}},
                             "ids": [record ids used]}},
     "cause": {"event_id", "occurred_at", "charge_id", "refund_id"} | None,
     "cold": {"oldest", "blob", "keys"} | {},   # compacted payments, exact: cold.py
     "who": [customer_key, livemode, account] | None, "dropped_before": int}

Format 3 added the cold storage (cold.py); `upgrade` reads formats 1 and 2.

Every entry point returns a new state and leaves the one given alone, unless it is called
with `in_place=True` (a caller that owns the state and can rebuild it if a step raises):
then it changes the state given and returns it, without the copy.

Facts are kept even when no reward exists yet (a refund before its payment): they settle
when the reward registers. A charge whose captured amount is not known yet is assumed to
have paid exactly its share (the usual case); when the charge shows up the targets move
and the difference is recorded.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from streams.corrections import cold
from streams.corrections.clawback_math import fraction_half_up
from streams.corrections.errors import BeyondHorizon, CorrectionInputError, invariant
from streams.corrections.refs import DisputeFact, PaymentLink, RefundFact, RewardRef

Correction = dict[str, Any]
State = dict[str, Any]
FORMAT = 3

# Refund statuses move forward only; failed and canceled are terminal and count nothing.
REFUND_RANK = {"pending": 0, "requires_action": 0, "succeeded": 1, "failed": 2, "canceled": 2}
VOID_RANK = 2
# Dispute status classes, in the only order they move: inquiry < chargeback < lost < won.
DISPUTE_RANK = {
    "warning_needs_response": 0,
    "warning_under_review": 0,
    "warning_closed": 1,
    "needs_response": 2,
    "under_review": 2,
    "lost": 3,
    "won": 4,
    "prevented": 4,
}
CHARGEBACK_RANKS = frozenset({2, 3})  # funds withdrawn and not given back
# Kept for readers of the previous module (simulator, docs).
FAVOURABLE_DISPUTE_STATUSES = frozenset({"won", "warning_closed", "prevented"})
LOST_DISPUTE_STATUSES = frozenset({"lost"})


def new_customer_state() -> State:
    return {
        "format": FORMAT,
        "charges": {},
        "links": {},
        "rewards": {},
        "cause": None,
        **cold.empty_cold(),
    }


def _deep_copy(state: Mapping[str, Any]) -> State:
    return pickle.loads(pickle.dumps(dict(state), protocol=pickle.HIGHEST_PROTOCOL))  # type: ignore[no-any-return]  # noqa: S301 -- our own bytes


def upgrade(state: Mapping[str, Any], *, in_place: bool = False) -> State:
    """State of an earlier format, read into this one (format 1 kept payments by intent,
    format 2 had no cold storage); a private copy, or the state itself when `in_place`
    (and it is a dict of this format)."""
    if state.get("format") == FORMAT:
        if in_place and isinstance(state, dict):
            return state
        # pickle: a deep copy several times faster than copy.deepcopy
        return _deep_copy(state)
    if state.get("format") == 2:
        return {**_deep_copy(state), **cold.empty_cold(), "format": FORMAT}
    new = new_customer_state()
    for payment in state.get("payments", {}).values():
        pi = payment.get("payment_intent_id")
        for charge_id, charge in payment.get("charges", {}).items():
            mine = _charge(new, charge_id, pi, payment.get("currency"))
            if charge.get("refunded_max_minor"):
                mine["snap"] = [0, 0, charge["refunded_max_minor"]]
            for refund_id, amount in charge.get("refunds", {}).items():
                mine["refunds"][refund_id] = {
                    "amount": amount,
                    "rank": 1,
                    "created": 0,
                    "void_at": None,
                }
        for dispute_id, dispute in payment.get("disputes", {}).items():
            rank = {"open": 2, "lost": 3, "reinstated": 4}[dispute["state"]]
            mine = _charge(new, dispute["charge_id"], pi, payment.get("currency"))
            mine["disputes"][dispute_id] = {
                "amount": None,
                "currency": None,
                "rank": rank,
                "opened": dispute["opened"],
                "closed": dispute.get("closed"),
            }
        for reward_id, entry in payment.get("rewards", {}).items():
            new["rewards"][reward_id] = {
                "ref": entry["ref"],
                "clawed": {
                    "refund": entry["refund_clawed_minor"],
                    "disputes": {
                        d: entry["dispute_clawed"][d] - entry["reinstated"].get(d, 0)
                        for d in entry["dispute_clawed"]
                    },
                },
                "ids": [],
            }
        if payment.get("refund_cause"):
            new["cause"] = payment["refund_cause"]
    return new


# --- inputs -----------------------------------------------------------------------------


def register_reward(
    state: State, ref: RewardRef, *, in_place: bool = False
) -> tuple[State, list[Correction]]:
    """Record a reward and settle refunds and disputes already seen. A reward id seen
    before has no second effect."""
    state = upgrade(state, in_place=in_place)
    if ref.reward_id in state["rewards"] or cold.is_cold_reward(state, ref.reward_id):
        return state, []
    cold.thaw_touched(state, (ref.invoice_id, ref.payment_intent_id, ref.charge_id))
    state["rewards"][ref.reward_id] = {
        "ref": ref.to_dict(),
        "clawed": {"refund": 0, "disputes": {}},
        "ids": [],
    }
    if ref.invoice_id is not None and (ref.payment_intent_id or ref.charge_id):
        _link(state, ref.invoice_id, ref.payment_intent_id or ref.charge_id or "", None)
    if ref.charge_id is not None:
        _charge(state, ref.charge_id, ref.payment_intent_id, ref.currency)
    return state, _settle(state, state["cause"])


def link_payment(
    state: State, link: PaymentLink, *, in_place: bool = False
) -> tuple[State, list[Correction]]:
    """An invoice <-> payment link (invoice_payment.paid, invoice.payments, charge.invoice
    ...); a share seen once stays (links never move money twice)."""
    state = upgrade(state, in_place=in_place)
    key = link.payment_intent_id or link.charge_id
    if key is None:
        raise CorrectionInputError(f"{link.event_id}: a payment link names no payment")
    cold.thaw_touched(state, (link.invoice_id, link.payment_intent_id, link.charge_id))
    if link.charge_id is not None:
        _charge(state, link.charge_id, link.payment_intent_id, None)
    _link(state, link.invoice_id, key, link.share_minor)
    cause = {
        "event_id": link.event_id,
        "occurred_at": link.occurred_at,
        "charge_id": link.charge_id,
        "refund_id": None,
    }
    state["cause"] = cause
    return state, _settle(state, cause)


def apply_refund(
    state: State, fact: RefundFact, *, in_place: bool = False
) -> tuple[State, list[Correction]]:
    """A charge snapshot (cumulative amount_refunded) or one refund's status."""
    state = upgrade(state, in_place=in_place)
    cold.thaw_touched(state, (fact.charge_id, fact.payment_intent_id))
    _check_horizon(state, fact)
    charge = _charge(state, fact.charge_id, fact.payment_intent_id, fact.currency)
    if fact.amount_captured_minor is not None:
        charge["captured"] = fact.amount_captured_minor
    if fact.release_minor:
        charge["release"] = max(charge["release"], fact.release_minor)
    if fact.refunded_total_minor is not None:
        snap = [fact.occurred_at, 1 if fact.decreased else 0, fact.refunded_total_minor]
        if charge["snap"] is None or snap > charge["snap"]:
            charge["snap"] = snap
    if fact.refund_id is not None and fact.refund_amount_minor is not None:
        rank = REFUND_RANK.get(fact.refund_status or "succeeded", 1)
        if not fact.counts:
            rank = VOID_RANK
        refund = charge["refunds"].setdefault(
            fact.refund_id,
            {
                "amount": fact.refund_amount_minor,
                "rank": rank,
                "created": fact.refund_created if fact.refund_created is not None else 0,
                "void_at": None,
            },
        )
        if rank > refund["rank"]:
            refund["rank"] = rank
        if rank == VOID_RANK and refund["void_at"] is None:
            refund["void_at"] = fact.occurred_at
    cause = {
        "event_id": fact.event_id,
        "occurred_at": fact.occurred_at,
        "charge_id": fact.charge_id,
        "refund_id": fact.refund_id,
    }
    state["cause"] = cause
    return state, _settle(state, cause)


def apply_dispute(
    state: State, fact: DisputeFact, *, in_place: bool = False
) -> tuple[State, list[Correction]]:
    """A dispute observation. Its status class only moves forward (inquiry < chargeback <
    lost < won), so stale and reordered events change nothing."""
    state = upgrade(state, in_place=in_place)
    cold.thaw_touched(state, (fact.charge_id, fact.payment_intent_id))
    charge = _charge(state, fact.charge_id, fact.payment_intent_id, None)
    seen = {"event_id": fact.event_id, "occurred_at": fact.occurred_at}
    # A status Stripe adds later (e.g. an appeal's) is an open chargeback until it is final.
    rank = DISPUTE_RANK.get(fact.status, 2)
    dispute = charge["disputes"].setdefault(
        fact.dispute_id,
        {"amount": None, "currency": None, "rank": -1, "opened": seen, "closed": None},
    )
    if fact.amount_minor is not None:
        dispute["amount"] = fact.amount_minor
    if fact.currency is not None:
        dispute["currency"] = fact.currency.lower()
    if rank > dispute["rank"]:
        dispute["rank"] = rank
        if rank >= 3:
            dispute["closed"] = seen
    cause = {**seen, "charge_id": fact.charge_id, "refund_id": None}
    state["cause"] = cause
    return state, _settle(state, cause)


def reward_left_minor(entry: Mapping[str, Any]) -> int:
    """What is left of a reward after its refund and dispute corrections."""
    clawed = entry["clawed"]
    return entry["ref"]["amount_minor"] - clawed["refund"] - sum(clawed["disputes"].values())


# --- state helpers ----------------------------------------------------------------------


def _check_horizon(state: State, fact: RefundFact) -> None:
    """A snapshot of a charge no reward here uses, made before the payments dropped past
    the settled horizon: its reward (if any) is gone from this state, so no silent miss."""
    made = fact.charge_created
    keys = {fact.charge_id, fact.payment_intent_id} - {None}
    if (
        made is not None
        and made <= state["dropped_before"]
        and not keys & cold.live_keys(state)  # no live reward uses it (cold ones: thawed)
    ):
        raise BeyondHorizon(
            f"{fact.event_id}: charge {fact.charge_id} was made at {made}, before this "
            f"customer's payments dropped past the settled horizon (up to "
            f"{state['dropped_before']}); if it earned a reward, book its clawback by hand"
        )


def _charge(state: State, charge_id: str, pi: str | None, currency: str | None) -> dict:
    charge = state["charges"].setdefault(
        charge_id,
        {
            "pi": pi,
            "currency": None,
            "captured": None,
            "release": 0,
            "snap": None,
            "refunds": {},
            "disputes": {},
        },
    )
    if pi is not None and charge["pi"] is None:
        charge["pi"] = pi
    if pi is not None and charge["pi"] != pi:
        raise CorrectionInputError(f"charge {charge_id} seen under two payment intents")
    if currency:
        currency = currency.lower()
        if charge["currency"] is None:
            charge["currency"] = currency
        elif charge["currency"] != currency:
            raise CorrectionInputError(
                f"charge {charge_id}: currency {currency}, seen before as {charge['currency']}"
            )
    return charge


def _link(state: State, invoice_id: str, payment_key: str, share: int | None) -> None:
    links = state["links"].setdefault(invoice_id, {})
    if links.get(payment_key) is None:
        links[payment_key] = share


def _payment_key(charge_id: str, charge: Mapping[str, Any]) -> str:
    return charge["pi"] or charge_id


def _refunded(charge: Mapping[str, Any]) -> int:
    """Customer money returned on one charge (STRIPE_FLOWS.md §3)."""
    release = charge["release"]
    refunds = sorted(charge["refunds"].items(), key=lambda kv: (kv[1]["created"], kv[0]))
    release_refund = None
    if release:
        release_refund = next((rid for rid, r in refunds if r["amount"] == release), None)
    counted = sum(
        r["amount"] for rid, r in refunds if r["rank"] < VOID_RANK and rid != release_refund
    )
    from_snapshot = 0
    if charge["snap"] is not None:
        at, rank, amount = charge["snap"]
        voided_later = sum(
            r["amount"]
            for rid, r in refunds
            if rid != release_refund
            and r["void_at"] is not None
            and r["created"] <= at
            and (r["void_at"] > at or (r["void_at"] == at and rank == 0))
        )
        from_snapshot = max(0, amount - release - voided_later)
    total = max(counted, from_snapshot)
    captured = charge["captured"]
    return total if captured is None else min(total, captured)


def _never_refunded(charge: Mapping[str, Any]) -> bool:
    """No refund and no snapshot seen: _refunded is 0 (unless a captured amount below 0
    caps it)."""
    captured = charge["captured"]
    return not charge["refunds"] and charge["snap"] is None and (captured is None or captured >= 0)


def _disputed(charge: Mapping[str, Any], refunded: int) -> list[tuple[str, int | None]]:
    """(dispute id, money withdrawn) of a charge's chargebacks, in id order, never more in
    total than what refunds left; None: the whole charge, whose amount is not known yet."""
    captured = charge["captured"]
    room = None if captured is None else max(0, captured - refunded)
    out: list[tuple[str, int | None]] = []
    for dispute_id in sorted(charge["disputes"]):
        dispute = charge["disputes"][dispute_id]
        if dispute["rank"] not in CHARGEBACK_RANKS:
            out.append((dispute_id, 0))
            continue
        amount = dispute["amount"]
        other_currency = dispute["currency"] and dispute["currency"] != charge["currency"]
        if amount is None or other_currency:
            amount = captured  # the whole charge; None while the charge is not known
        if room is not None:
            amount = room if amount is None else min(amount, room)
            room -= amount
        out.append((dispute_id, amount))
    return out


def _payments_of(state: State, ref: Mapping[str, Any]) -> dict[str, int | None]:
    """The payments of a reward and their shares (None: the whole earning amount)."""
    if ref.get("invoice_id"):
        links: dict[str, int | None] = {}
        for key, share in state["links"].get(ref["invoice_id"], {}).items():
            charge = state["charges"].get(key)
            key = _payment_key(key, charge) if charge is not None else key  # one payment
            if links.get(key) is None:
                links[key] = share
        if links:
            return links
    key = ref.get("payment_intent_id") or ref.get("charge_id")
    if ref.get("charge_id") and ref["charge_id"] in state["charges"]:
        key = _payment_key(ref["charge_id"], state["charges"][ref["charge_id"]])
    return {} if key is None else {key: None}


class _Charges:
    """The book's charges by payment key (a charge is found by its own id and by its
    payment intent), with each charge's refunded money: read many times by one settlement,
    during which no charge changes."""

    def __init__(self, state: State) -> None:
        self.by_key: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for cid, charge in sorted(state["charges"].items()):
            self.by_key.setdefault(cid, []).append((cid, charge))
            key = _payment_key(cid, charge)
            if key != cid:
                self.by_key.setdefault(key, []).append((cid, charge))
        self._refunded: dict[str, int] = {}
        self._quiet: dict[str, bool] = {}

    def quiet(self, key: str) -> bool:
        """No charge of payment key `key` refunded or disputed: a reward all of whose
        payments are quiet has targets of 0 (what _targets computes then)."""
        found = self._quiet.get(key)
        if found is None:
            found = self._quiet[key] = all(
                not charge["disputes"]
                and (_never_refunded(charge) or self.refunded(cid, charge) == 0)
                for cid, charge in self.of(key)
            )
        return found

    def of(self, key: str) -> list[tuple[str, dict[str, Any]]]:
        """Charges whose id or payment intent is `key`, by charge id."""
        return self.by_key.get(key, [])

    def refunded(self, cid: str, charge: Mapping[str, Any]) -> int:
        found = self._refunded.get(cid)
        if found is None:
            found = self._refunded[cid] = _refunded(charge)
        return found


def _targets(state: State, entry: Mapping[str, Any], index: _Charges) -> tuple[int, dict[str, int]]:
    """(refund target, {dispute id: target}) of one reward now."""
    ref = entry["ref"]
    reward, whole = ref["amount_minor"], ref["payment_amount_minor"]
    payments = _payments_of(state, ref)
    explicit = sum(share for share in payments.values() if share is not None)
    refunded_money = Fraction(0)
    dispute_money: dict[str, Fraction] = {}
    for key, share in sorted(payments.items()):
        charges = index.of(key)
        known = [c["captured"] for _, c in charges if c["captured"] is not None]
        if share is None:
            share = max(0, whole - explicit) if len(payments) > 1 else whole
        captured = sum(known) if known else share
        if captured <= 0 or share <= 0:
            continue
        refunded = 0
        for cid, charge in charges:
            r = index.refunded(cid, charge)
            refunded += r
            for dispute_id, amount in _disputed(charge, r):
                amount = share if amount is None else amount  # the charge paid its share
                dispute_money[dispute_id] = Fraction(share * amount, captured)
        if refunded:
            refunded_money += Fraction(share * min(refunded, captured), captured)
    if not refunded_money and not dispute_money and whole > 0:
        return 0, {}  # nothing refunded or disputed (most rewards): what the math gives
    refunded_money = min(refunded_money, Fraction(whole))
    lost = min(Fraction(whole), refunded_money + sum(dispute_money.values(), Fraction(0)))
    refund_target = fraction_half_up(reward * refunded_money / whole)
    dispute_total = fraction_half_up(reward * lost / whole) - refund_target
    disputes: dict[str, int] = {}
    money_total = sum(dispute_money.values(), Fraction(0))
    running, given = Fraction(0), 0
    for dispute_id in sorted(dispute_money):
        running += dispute_money[dispute_id]
        upto = 0 if money_total == 0 else fraction_half_up(dispute_total * running / money_total)
        disputes[dispute_id] = upto - given
        given = upto
    return refund_target, disputes


# --- settlement -------------------------------------------------------------------------


def _settle(state: State, cause: Mapping[str, Any] | None) -> list[Correction]:
    """Bring every reward up to its targets. Idempotent: settling twice emits nothing."""
    out: list[Correction] = []
    if not state["rewards"]:
        return out  # nothing to settle (and no charge index to build)
    index = _Charges(state)
    for reward_id in sorted(state["rewards"]):
        entry = state["rewards"][reward_id]
        clawed = entry["clawed"]
        if _untouched(entry) and all(map(index.quiet, _payments_of(state, entry["ref"]))):
            # None of its payments is refunded or disputed, so its targets are 0 (what
            # _targets returns then), and it has nothing clawed: no move.
            _check_entry(entry)
            continue
        refund_target, dispute_targets = _targets(state, entry, index)
        moves: list[tuple[str, str | None, int]] = [
            ("refund", None, refund_target - clawed["refund"])
        ]
        for dispute_id in sorted(set(dispute_targets) | set(clawed["disputes"])):
            target = dispute_targets.get(dispute_id, 0)
            moves.append(("dispute", dispute_id, target - clawed["disputes"].get(dispute_id, 0)))
        # Give back first, then take: the reward never dips below zero in between.
        for reason, dispute_id, delta in sorted(moves, key=lambda m: m[2]):
            if delta == 0:
                continue
            invariant(cause is not None, f"reward {reward_id}: a correction without a cause")
            out.append(_record(state, entry, reason, dispute_id, delta, cause or {}, index))
        _check_entry(entry)
    return out


def _untouched(entry: Mapping[str, Any]) -> bool:
    """A reward with nothing clawed and a positive payment amount: when none of its
    payments is refunded or disputed its targets are 0, so settling it moves nothing."""
    clawed = entry["clawed"]
    return (
        entry["ref"]["payment_amount_minor"] > 0
        and clawed["refund"] == 0
        and not any(clawed["disputes"].values())
    )


def _record(
    state: State,
    entry: dict[str, Any],
    reason: str,
    dispute_id: str | None,
    delta: int,
    cause: Mapping[str, Any],
    index: _Charges,
) -> Correction:
    ref, clawed = entry["ref"], entry["clawed"]
    kind = "clawback" if delta > 0 else "reinstatement"
    if reason == "refund":
        clawed["refund"] += delta
        base = f"{ref['reward_id']}/refund/{_refunded_total(state, entry, index)}"
        charge_id, refund_id = cause.get("charge_id"), cause.get("refund_id")
    else:
        assert dispute_id is not None
        clawed["disputes"][dispute_id] = clawed["disputes"].get(dispute_id, 0) + delta
        base = f"{ref['reward_id']}/dispute/{dispute_id}"
        base += "/opened" if kind == "clawback" else "/reinstated"
        charge_id = _charge_of_dispute(state, dispute_id)
        refund_id = None
    if reason == "refund" and kind == "reinstatement":
        base += "/reinstated"
    record_id, n = base, 1
    while record_id in entry["ids"]:
        n += 1
        record_id = f"{base}/{n}"
    entry["ids"].append(record_id)
    return {
        "clawback_id": record_id,
        "reward_id": ref["reward_id"],
        "kind": kind,
        "reason": reason,
        "referral_code": ref["referral_code"],
        "customer_key": ref["customer_key"],
        "amount_minor": abs(delta),
        "currency": ref["currency"],
        "livemode": ref["livemode"],
        "account": ref.get("account"),
        "charge_id": charge_id,
        "refund_id": refund_id,
        "dispute_id": dispute_id,
        "refunded_total_minor": (
            _refunded_total(state, entry, index) if reason == "refund" else None
        ),
        "source_event_id": cause.get("event_id"),
        "occurred_at": cause.get("occurred_at"),
    }


def _charge_of_dispute(state: State, dispute_id: str) -> str | None:
    return next((cid for cid, c in state["charges"].items() if dispute_id in c["disputes"]), None)


def _refunded_total(state: State, entry: Mapping[str, Any], index: _Charges) -> int:
    """Refunded minor units of the reward's payments (what the record reports)."""
    found = {cid: c for key in _payments_of(state, entry["ref"]) for cid, c in index.of(key)}
    return sum(index.refunded(cid, c) for cid, c in found.items())


def _check_entry(entry: Mapping[str, Any]) -> None:
    ref, clawed = entry["ref"], entry["clawed"]
    left = reward_left_minor(entry)
    invariant(
        0 <= left <= ref["amount_minor"],
        f"reward {ref['reward_id']}: {left} left of {ref['amount_minor']}",
    )
    invariant(clawed["refund"] >= 0, f"reward {ref['reward_id']}: negative refund clawed")
    invariant(
        all(v >= 0 for v in clawed["disputes"].values()),
        f"reward {ref['reward_id']}: negative dispute clawed",
    )
