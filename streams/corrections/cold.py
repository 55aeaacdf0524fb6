"""Cold storage of the customer correction book: settled payments in a compact, exact form.

A payment the ledger has compacted (streams/ledger/compaction.py: settled, past the dedup window)
moves out of the book's live `rewards` / `links` / `charges` into cold storage, one group
per invoice (or one-time charge) with what the clawback math needs and nothing it can
rebuild: the reward refs without the customer-wide fields (kept once in `who`), the
clawed amounts and record ids, the invoice's payment shares, and its charges (a charge
with no refund and no dispute as a short list). `thaw` restores a group exactly, so a late
refund, dispute or link of a cold payment meets the same state as if it had never been
compacted: every entry point of payments.py thaws the groups a fact touches first.

Why exact: `_settle` only emits for a reward whose targets moved, and a reward's targets
depend only on the charges and links of its own payments. A cold group is thawed before
any fact about its payments (charge id, payment intent or invoice id) is applied, so no
fact can move the targets of a reward while it is cold.

Layout: `book["cold"] = {"oldest": paid at of the oldest group, "blob": base64 of the
zlib-compressed JSON {group id: [paid at, rewards, links, charges]}, "keys": a Bloom
filter of the groups' ids and payment keys}` ({} when empty).
One opaque string, because cold groups are read only when a late fact touches them: the
book costs the same to copy and store however many it holds, and the ids that repeat in
a group (invoice, payment intent, charge) compress away.

Past the settled horizon a group is dropped: `dropped_before` remembers the latest payment
time dropped, and a charge snapshot of an unknown charge made before it raises
BeyondHorizon (payments.py) instead of being parked as a fact that no reward will meet.
Facts of charges that no reward uses (an organic customer's refunds, a refund of a
payment never seen) are dropped once their latest fact is past the horizon.

    freeze(book, payment_ids, who=(customer_key, livemode, account))
    drop(book, keep=payment_ids, before=watermark, now=now, horizon_s=...)
    thaw_touched(book, keys)          # by charge id / payment intent / invoice id
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

State = dict[str, Any]

# RewardRef fields kept per reward, in this order (customer_key, livemode, account: `who`).
REF_FIELDS = (
    "amount_minor",
    "payment_amount_minor",
    "currency",
    "charge_id",
    "payment_intent_id",
    "invoice_id",
    "paid_at",
    "hold_until",
    "status",
    "referral_code",
)
WHO_FIELDS = ("customer_key", "livemode", "account")
_CHARGE_FIELDS = ("pi", "currency", "captured", "release", "snap")


def empty_cold() -> dict[str, Any]:
    return {"cold": {}, "who": None, "dropped_before": 0}


Groups = dict[str, list[Any]]  # group id -> [paid at, rewards, links, charges]


def _groups(book: State) -> Groups:
    blob = book["cold"].get("blob")
    if not blob:
        return {}
    groups: Groups = json.loads(zlib.decompress(base64.b64decode(blob)))
    return groups


_BLOOM_BITS = 1024  # about 1% false positives at 75 keys (25 groups of 3)


def _bloom_positions(key: str) -> list[int]:
    digest = hashlib.blake2b(key.encode(), digest_size=6).digest()
    return [int.from_bytes(digest[i : i + 2], "big") % _BLOOM_BITS for i in (0, 2, 4)]


def _bloom(keys: Iterable[str]) -> str:
    bits = 0
    for key in keys:
        for position in _bloom_positions(key):
            bits |= 1 << position
    return base64.b64encode(bits.to_bytes(_BLOOM_BITS // 8, "big")).decode("ascii")


def _may_hold(bloom: str, key: str) -> bool:
    bits = int.from_bytes(base64.b64decode(bloom), "big")
    return all(bits >> position & 1 for position in _bloom_positions(key))


def _set_groups(book: State, groups: Groups) -> None:
    if not groups:
        book["cold"] = {}
        return
    raw = json.dumps(groups, separators=(",", ":"), sort_keys=True).encode()
    keys = set().union(*(_group_keys(g, group) for g, group in groups.items()))
    book["cold"] = {
        "oldest": min(g[0] for g in groups.values()),
        "blob": base64.b64encode(zlib.compress(raw)).decode("ascii"),
        # Which payment keys may be cold, without opening the blob (a false positive only
        # costs opening it).
        "keys": _bloom(keys),
    }


def _short_id(reward_id: str, group: str) -> str:
    """A reward id with its group's id (which it usually contains once) as `*`, marked by a
    leading `~` (only when the original has no `*`); any other id starting with `~` or `=`
    is kept behind a `=`."""
    if reward_id.count(group) == 1 and "*" not in reward_id:
        return "~" + reward_id.replace(group, "*")
    return "=" + reward_id if reward_id.startswith(("~", "=")) else reward_id


def _long_id(short: str, group: str) -> str:
    if short.startswith("~"):
        return short[1:].replace("*", group)
    return short[1:] if short.startswith("=") else short


def _group_of(ref: Mapping[str, Any]) -> str | None:
    return ref.get("invoice_id") or ref.get("charge_id")


def _keys_of_charge(charge_id: str, charge: Mapping[str, Any]) -> set[str]:
    return {charge_id} | ({charge["pi"]} if charge.get("pi") else set())


def live_keys(book: State) -> set[str]:
    """Payment keys a live reward or link still needs."""
    keys: set[str] = set()
    for entry in book["rewards"].values():
        ref = entry["ref"]
        keys |= {k for k in (ref.get("payment_intent_id"), ref.get("charge_id")) if k}
        keys |= set(book["links"].get(ref.get("invoice_id") or "", {}))
    return keys


def _charges_of(book: State, keys: set[str]) -> list[str]:
    return sorted(
        cid for cid, c in book["charges"].items() if cid in keys or (c["pi"] and c["pi"] in keys)
    )


def freeze(book: State, payment_ids: Collection[str], who: tuple[str, bool, str | None]) -> State:
    """Move the live rewards of `payment_ids` (invoice or one-time charge ids) and what only
    they use into cold storage. Returns the same (mutated) book."""
    by_group: dict[str, list[str]] = {}
    for reward_id, entry in book["rewards"].items():
        group = _group_of(entry["ref"])
        if group is not None and group in payment_ids:
            by_group.setdefault(group, []).append(reward_id)
    if not by_group:
        return book
    book["who"] = list(who)
    groups = _groups(book)
    for group, reward_ids in sorted(by_group.items()):
        paid_at, rewards, links, charges = 0, {}, {}, {}
        keys: set[str] = set()
        for reward_id in sorted(reward_ids):
            entry = book["rewards"].pop(reward_id)
            ref = entry["ref"]
            values = [ref.get(f) for f in REF_FIELDS]
            if ref.get("invoice_id") == group:
                values[REF_FIELDS.index("invoice_id")] = None  # the group's own id
            rewards[_short_id(reward_id, group)] = [
                *values,
                entry["clawed"]["refund"],
                entry["clawed"]["disputes"],
                entry["ids"],
            ]
            paid_at = max(paid_at, int(ref["paid_at"]))
            keys |= {k for k in (ref.get("payment_intent_id"), ref.get("charge_id")) if k}
        if group in book["links"]:  # every reward of the group is frozen at once
            links.update(book["links"].pop(group))
        keys |= set(links)
        still_live = live_keys(book)
        for charge_id in _charges_of(book, keys):
            charge = book["charges"][charge_id]
            plain = not charge["refunds"] and not charge["disputes"]
            charges[charge_id] = [charge[f] for f in _CHARGE_FIELDS] if plain else charge
            if not (_keys_of_charge(charge_id, charge) & still_live):
                del book["charges"][charge_id]
        groups[group] = [paid_at, rewards, links, charges]
    _set_groups(book, groups)
    return book


def _group_keys(group_id: str, group: list[Any]) -> set[str]:
    _, rewards, links, charges = group
    keys = {group_id} | set(links)
    for values in rewards.values():
        ref = dict(zip(REF_FIELDS, values, strict=False))
        keys |= {k for k in (ref["payment_intent_id"], ref["charge_id"]) if k}
    for charge_id, charge in charges.items():
        pi = charge[0] if isinstance(charge, list) else charge["pi"]
        keys |= {charge_id} | ({pi} if pi else set())
    return keys


def is_cold_reward(book: State, reward_id: str) -> bool:
    return any(
        _short_id(reward_id, group_id) in group[1] for group_id, group in _groups(book).items()
    )


def thaw_touched(book: State, keys: Iterable[str | None]) -> None:
    """Bring back every cold group whose payments `keys` (charge ids, payment intents,
    invoice ids) name, before a fact about them is applied."""
    wanted = {k for k in keys if k}
    if not wanted or not book["cold"]:
        return
    if not any(_may_hold(book["cold"]["keys"], key) for key in wanted):
        return
    groups = _groups(book)
    touched = sorted(g for g in groups if _group_keys(g, groups[g]) & wanted)
    for group_id in touched:
        _thaw(book, group_id, groups.pop(group_id))
    if touched:
        _set_groups(book, groups)


def _thaw(book: State, group_id: str, group: list[Any]) -> None:
    """Restore one cold group into the live book, exactly as it was frozen."""
    _, rewards, links, charges = group
    who = dict(zip(WHO_FIELDS, book["who"], strict=True))
    for short, values in rewards.items():
        reward_id = _long_id(short, group_id)
        ref = {**dict(zip(REF_FIELDS, values, strict=False)), **who, "reward_id": reward_id}
        if ref["invoice_id"] is None and ref["charge_id"] != group_id:
            ref["invoice_id"] = group_id
        refund, disputes, ids = values[len(REF_FIELDS) :]
        book["rewards"][reward_id] = {
            "ref": ref,
            "clawed": {"refund": refund, "disputes": disputes},
            "ids": ids,
        }
    if links:
        live = book["links"].setdefault(group_id, {})
        for key, share in links.items():
            if live.get(key) is None:
                live[key] = share
    for charge_id, charge in charges.items():
        if charge_id in book["charges"]:
            continue  # kept live for another payment: the live copy is the newer
        if isinstance(charge, list):
            charge = {
                **dict(zip(_CHARGE_FIELDS, charge, strict=True)),
                "refunds": {},
                "disputes": {},
            }
        book["charges"][charge_id] = charge


def _latest_fact(charge: Mapping[str, Any]) -> int:
    times = [charge["snap"][0]] if charge.get("snap") else []
    times += [r["created"] for r in charge["refunds"].values()]
    times += [r["void_at"] for r in charge["refunds"].values() if r.get("void_at")]
    for dispute in charge["disputes"].values():
        times += [d["occurred_at"] for d in (dispute["opened"], dispute["closed"]) if d]
    return max(times, default=0)


def drop(book: State, *, keep: Collection[str], before: int, now: int, horizon_s: int) -> State:
    """Forget cold groups the ledger dropped (not in `keep`, paid at or before `before`)
    and facts of charges no reward uses whose latest fact is past the horizon."""
    if book["cold"] and book["cold"]["oldest"] <= before:
        groups = _groups(book)
        for group_id in sorted(groups):
            paid_at = groups[group_id][0]
            if group_id not in keep and paid_at <= before:
                del groups[group_id]
                book["dropped_before"] = max(book["dropped_before"], paid_at)
        _set_groups(book, groups)
    used = live_keys(book)
    for charge_id in sorted(book["charges"]):
        charge = book["charges"][charge_id]
        if _keys_of_charge(charge_id, charge) & used:
            continue
        if _latest_fact(charge) + horizon_s <= now:
            del book["charges"][charge_id]
    for invoice_id in sorted(book["links"]):
        if invoice_id in keep and not any(
            _group_of(e["ref"]) == invoice_id for e in book["rewards"].values()
        ):
            del book["links"][invoice_id]  # a compacted invoice without reward: nothing to claw
    return book
