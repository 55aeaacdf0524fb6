"""The backfill loop: plan time slices, read each from Stripe, publish, advance the cursors.

Steps, oldest slice first (so attributions and payments reach the worker in about the
order Stripe made them, well inside its attribution and one-time windows):
  1. Plan: [since, until) is cut into slices of `slice_s`, and at `cutoff` (the oldest
     time the Events API still holds): slices before it read objects, slices after it
     read events. A source whose cursor is past a slice skips it.
  2. Read every selected source's objects (or events) created in the slice, all pages.
  3. Turn objects into events (backfill/synthesize.py); events stay as Stripe kept them
     (a connected account's get `account` when Stripe left it out, so they land in that
     account's ledger as its webhooks do).
  4. Sort the slice's events by (created, type rank, id) and publish each through the
     ingress's envelope and publisher (same checks, same partition key, `backfill` set).
  5. Only after Kafka acknowledged them all, advance the cursors of the slice's sources.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backfill.cursor import CursorStore
from backfill.sources import EVENTS, TYPE_RANK, Source
from backfill.stripe_pages import StripePages
from backfill.synthesize import events_for
from ingress.envelope import Envelope, FetchedBody, parse_envelope
from ingress.publisher import PublishRefusedError, Receipt
from ingress.rejection import Rejected

log = logging.getLogger(__name__)

PUBLISH_CONCURRENCY = 256


class EnvelopePublisher(Protocol):
    async def publish(self, envelope: Envelope) -> Receipt: ...


@dataclass(frozen=True)
class Slice:
    start: int
    end: int
    sources: tuple[Source, ...]

    @property
    def reads_events(self) -> bool:
        return any(s.name == EVENTS for s in self.sources)


@dataclass
class Totals:
    objects_read: int = 0
    events_published: int = 0
    skipped: int = 0  # refused by the envelope checks or as too large (logged, with why)
    slices: int = 0
    by_type: dict[str, int] = field(default_factory=dict)


def plan_slices(
    sources: tuple[Source, ...],
    *,
    since: int,
    until: int,
    cutoff: int,
    slice_s: int,
    done_until: Callable[[str], int | None],
) -> list[Slice]:
    """Pure: the slices still to do, oldest first (step 1)."""
    if until <= since:
        return []
    bounds = sorted(
        {*range(since, until, slice_s), until} | ({cutoff} if since < cutoff < until else set())
    )
    out = []
    for start, end in itertools.pairwise(bounds):
        wanted = tuple(
            s
            for s in sources
            if (s.name == EVENTS) == (start >= cutoff) and (done_until(s.name) or since) < end
        )
        if wanted:
            out.append(Slice(start, end, wanted))
    return out


def slice_events(
    source: Source, items: list[dict[str, Any]], *, api_version: str, account: str | None
) -> list[dict[str, Any]]:
    """Step 3 for one source's items."""
    if source.name != EVENTS:
        return [
            e for obj in items for e in events_for(obj, api_version=api_version, account=account)
        ]
    if account is None:
        return items
    return [item if item.get("account") else {**item, "account": account} for item in items]


def ordered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step 4's order; repeats of one id (an object read twice) are kept once."""
    unique = {e["id"]: e for e in events}
    return sorted(
        unique.values(),
        key=lambda e: (e.get("created", 0), TYPE_RANK.get(e.get("type", ""), 50), e["id"]),
    )


class Progress(Protocol):
    def update(self, slice_: Slice, totals: Totals) -> None: ...


@dataclass
class Backfill:
    pages: StripePages
    publisher: EnvelopePublisher
    store: CursorStore
    api_version: str
    account: str | None
    livemode: bool
    now_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    other_mode: int = 0  # objects of the other mode, left out

    async def run(self, slices: list[Slice], progress: Progress) -> Totals:
        totals = Totals()
        for slice_ in slices:
            events: list[dict[str, Any]] = []
            for source in slice_.sources:  # Step 2
                items = await self._read(source, slice_)
                totals.objects_read += len(items)
                events.extend(  # Step 3
                    slice_events(source, items, api_version=self.api_version, account=self.account)
                )
            published = await self._publish(ordered(events), totals, slice_)  # Step 4
            totals.events_published += published
            self.store.advance([s.name for s in slice_.sources], slice_.end)  # Step 5
            totals.slices += 1
            progress.update(slice_, totals)
        return totals

    async def _read(self, source: Source, slice_: Slice) -> list[dict[str, Any]]:
        params = {**source.params, "created": {"gte": slice_.start, "lt": slice_.end}}
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.pages.page(source.path, params, starting_after=cursor)
            for item in page.data:
                if item.get("livemode", self.livemode) == self.livemode:
                    items.append(item)
                else:  # the key's mode decides; Stripe never mixes them, a double might
                    self.other_mode += 1
            if not page.has_more or not page.data:
                return items
            last_id = page.data[-1].get("id")
            if not isinstance(last_id, str):
                raise ValueError(f"{source.path}: a listed object has no id to page from")
            cursor = last_id

    async def _publish(self, events: list[dict[str, Any]], totals: Totals, slice_: Slice) -> int:
        limit = asyncio.Semaphore(PUBLISH_CONCURRENCY)
        source = "events_api" if slice_.reads_events else "objects"
        envelopes: list[Envelope] = []
        for event in events:
            body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
            envelope = parse_envelope(FetchedBody(body, source), self.now_ms())
            if isinstance(envelope, Rejected):
                totals.skipped += 1
                log.warning(
                    "backfill_event_refused",
                    extra={"event_id": event.get("id"), "reason": envelope.reason.value},
                )
                continue
            envelopes.append(envelope)
            totals.by_type[envelope.type] = totals.by_type.get(envelope.type, 0) + 1

        refused = 0

        async def one(envelope: Envelope) -> None:
            nonlocal refused
            async with limit:
                try:
                    await self.publisher.publish(envelope)
                except PublishRefusedError as exc:
                    # Kafka will never take it (too large): a resume would fail the same
                    # way, so it is counted and logged, not retried.
                    refused += 1
                    log.warning(
                        "backfill_event_refused",
                        extra={"event_id": envelope.event_id, "reason": exc.reason},
                    )

        await _all(one(e) for e in envelopes)
        totals.skipped += refused
        return len(envelopes) - refused


async def _all(coros: Any) -> None:
    """Run every coroutine; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
