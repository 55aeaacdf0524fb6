"""A local stand-in for the Stripe API holding one realistic account: what the simulator
generated, as Stripe would serve it after the fact.

stripe-mock checks request shapes but is stateless and canned; this holds state, so the
backfill's end-to-end claim (a backfilled history yields the simulator's ledger) can be
checked. Built from a scenario's events:
- objects: the last snapshot of every object (its state now), per account (no
  Stripe-Account header: the platform; `Stripe-Account: acct_...`: that connected account);
  invoices get `payments` (their invoice payments) when `expand[]=data.payments` is asked;
- events: those created in the last 30 days before `now` (Stripe's retention);
- list endpoints as Stripe pages them: newest first, `limit` (capped at `page_cap`, to
  force paging in tests), `starting_after`, `has_more`, `created[gte|lt]`, and
  `status=all` needed for canceled subscriptions;
- a key sees the objects and events of its own mode (sk_test_ or sk_live_);
- the objects are rendered at the account's one API version: a request whose
  `Stripe-Version` differs gets 400 (the stand-in cannot re-render);
- every `rate_limit_every`-th request is answered 429 with `Retry-After: 0`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from backfill.sources import EVENTS_RETENTION_S

Json = dict[str, Any]

# List path -> the `object` of its items.
PATHS = {
    "/v1/customers": "customer",
    "/v1/subscriptions": "subscription",
    "/v1/checkout/sessions": "checkout.session",
    "/v1/invoices": "invoice",
    "/v1/invoice_payments": "invoice_payment",
    "/v1/charges": "charge",
    "/v1/refunds": "refund",
    "/v1/disputes": "dispute",
}
ENDED_SUBSCRIPTION = ("canceled", "incomplete_expired")
_INDEXED = re.compile(r"^(\w+)\[(\d*)\]$")


@dataclass
class StripeStandin:
    events: list[Json]
    now: int
    api_version: str
    page_cap: int = 100
    rate_limit_every: int = 0
    requests: list[tuple[str, dict[str, str], str | None]] = field(default_factory=list)
    rate_limited: int = 0
    _objects: dict[tuple[str | None, str], dict[str, Json]] = field(
        default_factory=lambda: defaultdict(dict)
    )

    def __post_init__(self) -> None:
        for event in self.events:  # Stripe time order: the last snapshot is the state now
            obj = event["data"]["object"]
            self._objects[(event.get("account"), obj["object"])][obj["id"]] = obj

    def app(self) -> web.Application:
        app = web.Application()
        for path in [*PATHS, "/v1/events"]:
            app.router.add_get(path, self._list)
        return app

    async def _list(self, request: web.Request) -> web.Response:
        query = dict(request.query.items())  # stripe-python indexes arrays: keys are unique
        account = request.headers.get("Stripe-Account")
        self.requests.append((request.path, query, account))
        if self.rate_limit_every and len(self.requests) % self.rate_limit_every == 0:
            self.rate_limited += 1
            return web.json_response(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "rate_limit",
                        "message": "Too many requests",
                    }
                },
                status=429,
                headers={"Retry-After": "0"},
            )
        auth = request.headers.get("Authorization", "")
        if not auth.startswith(("Bearer sk_test_", "Bearer sk_live_")):
            return _error(401, "no secret key")
        livemode = auth.startswith("Bearer sk_live_")
        if request.path == "/v1/events":
            items = [
                e
                for e in self.events
                if e.get("account") == account and e["created"] >= self.now - EVENTS_RETENTION_S
            ]
            types = _array(query, "types")
            if types:
                items = [e for e in items if e["type"] in types]
        else:
            if request.headers.get("Stripe-Version") != self.api_version:
                return _error(400, f"this account renders objects at {self.api_version} only")
            kind = PATHS[request.path]
            items = list(self._objects.get((account, kind), {}).values())
            if kind == "subscription" and query.get("status") != "all":
                items = [s for s in items if s.get("status") not in ENDED_SUBSCRIPTION]
            if kind == "invoice" and "data.payments" in _array(query, "expand"):
                items = [self._with_payments(inv, account) for inv in items]
        items = [i for i in items if i.get("livemode") == livemode]  # a key sees its mode only
        gte, lt = query.get("created[gte]"), query.get("created[lt]")
        if gte is not None:
            items = [i for i in items if _created(i) >= int(gte)]
        if lt is not None:
            items = [i for i in items if _created(i) < int(lt)]
        items.sort(key=lambda i: (_created(i), i["id"]), reverse=True)
        after = query.get("starting_after")
        if after is not None:
            ids = [i["id"] for i in items]
            if after not in ids:
                return _error(400, f"no such object {after}")
            items = items[ids.index(after) + 1 :]
        limit = min(int(query.get("limit", "10")), self.page_cap)
        page = items[:limit]
        return web.json_response(
            {"object": "list", "url": request.path, "has_more": len(items) > limit, "data": page}
        )

    def _with_payments(self, invoice: Json, account: str | None) -> Json:
        payments = [
            p
            for p in self._objects.get((account, "invoice_payment"), {}).values()
            if p.get("invoice") == invoice["id"]
        ]
        return {
            **invoice,
            "payments": {
                "object": "list",
                "data": payments,
                "has_more": False,
                "url": f"/v1/invoice_payments?invoice={invoice['id']}",
            },
        }

    def accounts(self) -> list[str | None]:
        return sorted({a for a, _ in self._objects}, key=lambda a: a or "")


def _created(item: Json) -> int:
    return int(item.get("created") or 0)


def _array(query: dict[str, str], name: str) -> set[str]:
    """Values of `name[]=` or `name[0]=` style parameters (stripe-python sends the latter)."""
    out = set()
    for key, value in query.items():
        match = _INDEXED.match(key)
        if match and match.group(1) == name:
            out.add(value)
    return out


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"type": "invalid_request_error", "message": message}}, status=status
    )
