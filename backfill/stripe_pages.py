"""Reading Stripe list endpoints page by page, politely: the backfill's one I/O seam to Stripe.

- Requests go through stripe-python's `StripeClient.raw_request` (its auth, encoding of
  nested params, `Stripe-Account` and `Stripe-Version` headers, and its retries of
  connection errors, 409s and 5xx), so the body is the JSON Stripe sent.
- A configurable request rate: requests start at least 1/requests_per_s apart.
- 429: Stripe's rate limiter. stripe-python does not retry it, so we do: wait `Retry-After`
  seconds when the response says (else an exponential backoff), up to `max_rate_limited`
  times in a row, then give up with RateLimitedError.

The blocking stripe-python call runs in a thread so that publishing to Kafka goes on.
Errors (the hierarchy):

    BackfillApiError           Stripe refused a request (message names path and status)
    └── RateLimitedError       still 429 after every retry
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import stripe

log = logging.getLogger(__name__)

PAGE_LIMIT = 100  # the most Stripe's list endpoints return per page
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0


class BackfillApiError(RuntimeError):
    """Stripe refused a request; the message names the path and the status, never the key."""


class RateLimitedError(BackfillApiError):
    """Stripe kept answering 429."""


@dataclass(frozen=True)
class Page:
    data: list[dict[str, Any]]
    has_more: bool


Sleep = Callable[[float], Awaitable[None]]


class StripePages:
    def __init__(
        self,
        client: stripe.StripeClient,
        *,
        requests_per_s: float,
        account: str | None,
        api_version: str | None,
        max_rate_limited: int = 8,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests_per_s <= 0:
            raise ValueError("requests_per_s must be positive")
        self._client = client
        self._interval_s = 1.0 / requests_per_s
        self._account = account
        self.api_version = api_version
        self._max_rate_limited = max_rate_limited
        self._sleep = sleep
        self._clock = clock
        self._next_at = 0.0
        self.requests = 0
        self.rate_limited = 0

    async def page(
        self, path: str, params: Mapping[str, Any], starting_after: str | None = None
    ) -> Page:
        """One page of a list endpoint, newest first (Stripe's order)."""
        query: dict[str, Any] = {"limit": PAGE_LIMIT, **params}
        if starting_after is not None:
            query["starting_after"] = starting_after
        body = await self._get(path, query)
        data = body.get("data")
        if body.get("object") != "list" or not isinstance(data, list):
            raise BackfillApiError(f"GET {path}: the answer is not a Stripe list")
        return Page(
            data=[d for d in data if isinstance(d, dict)], has_more=bool(body.get("has_more"))
        )

    async def _get(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self._account is not None:
            options["stripe_account"] = self._account
        if self.api_version is not None:
            options["stripe_version"] = self.api_version
        backoff_s = BACKOFF_MIN_S
        for _ in range(self._max_rate_limited + 1):
            await self._pace()
            self.requests += 1
            try:
                response = await asyncio.to_thread(
                    self._client.raw_request, "get", path, **query, **options
                )
            except stripe.RateLimitError as exc:
                self.rate_limited += 1
                wait_s = _retry_after(exc.headers)
                if wait_s is None:
                    wait_s = backoff_s
                backoff_s = min(2 * backoff_s, BACKOFF_MAX_S)
                log.warning("stripe_rate_limited", extra={"path": path, "wait_s": wait_s})
                await self._sleep(wait_s)
                continue
            except stripe.StripeError as exc:
                # user_message is Stripe's own text (no key); the status tells the class.
                raise BackfillApiError(
                    f"GET {path}: Stripe answered {exc.http_status}: {exc.user_message}"
                ) from exc
            try:
                body = json.loads(response.body)
            except ValueError as exc:
                raise BackfillApiError(f"GET {path}: the answer is not JSON") from exc
            if not isinstance(body, dict):
                raise BackfillApiError(f"GET {path}: the answer is not a JSON object")
            return body
        raise RateLimitedError(
            f"GET {path}: still rate limited (429) after {self._max_rate_limited} retries; "
            "lower REFSTREAM_BACKFILL_REQUESTS_PER_S"
        )

    async def _pace(self) -> None:
        now = self._clock()
        if self._next_at > now:
            await self._sleep(self._next_at - now)
            now = self._next_at
        self._next_at = now + self._interval_s


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header (Stripe sends seconds), None when absent or odd."""
    if not headers:
        return None
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        seconds = float(raw) if raw is not None else None
    except ValueError:
        return None
    return None if seconds is None or seconds < 0 else min(seconds, BACKOFF_MAX_S)
