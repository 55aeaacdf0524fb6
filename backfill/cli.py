"""`refstream backfill`: publish an account's Stripe history to `stripe.events`.

    refstream backfill --since 2024-01-01 [--until 2025-06-01] [--types customers,invoices]
                       [--account acct_...] [--live] [--api-version V] [--slice-days 1]

Needs REFSTREAM_STRIPE_API_KEY (a restricted rk_ key with read access is enough). A live
key is refused unless --live is given. Exit status: 0 done, 1 Stripe or Kafka failed
(resume by running the same command again), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime

import stripe
from tqdm import tqdm

from backfill.cursor import CursorStore, Scope
from backfill.run import Backfill, Slice, Totals, plan_slices
from backfill.sources import EVENTS_MARGIN_S, EVENTS_RETENTION_S, sources_named
from backfill.stripe_pages import BackfillApiError, StripePages
from ingress.publisher import KafkaPublisher, PublishError
from refstream.settings import Settings

log = logging.getLogger(__name__)
DAY_S = 86_400


class UsageError(ValueError):
    """A bad argument; the message names it."""


def parse_day(value: str, flag: str) -> int:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise UsageError(f"{flag} must be a date YYYY-MM-DD, got {value!r}") from None
    return int(day.timestamp())


def key_is_live(key: str) -> bool:
    return key.startswith(("sk_live_", "rk_live_"))


class ProgressBar:
    """Days of history done (with rate and ETA), objects read, events published."""

    def __init__(self, total_s: int) -> None:
        self._bar = tqdm(total=round(total_s / DAY_S, 2), unit="day", disable=None)
        self._started = time.monotonic()

    def update(self, slice_: Slice, totals: Totals) -> None:
        self._bar.update(round((slice_.end - slice_.start) / DAY_S, 2))
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._bar.set_postfix(
            objects=totals.objects_read,
            events=totals.events_published,
            ev_per_s=round(totals.events_published / elapsed, 1),
        )
        if self._bar.disable:  # not a terminal: one log line per slice instead
            log.info(
                "backfill_progress",
                extra={
                    "slice_end": slice_.end,
                    "objects_read": totals.objects_read,
                    "events_published": totals.events_published,
                },
            )

    def close(self) -> None:
        self._bar.close()


async def account_api_version(pages: StripePages) -> str | None:
    """The API version the account's newest event was rendered in (the account's default
    version when it was made), None when the Events API holds no event."""
    page = await pages.page("/v1/events", {"limit": 1})
    version = page.data[0].get("api_version") if page.data else None
    return version if isinstance(version, str) else None


async def backfill(settings: Settings, args: argparse.Namespace) -> Totals:
    key = settings.streams.stripe_api_key
    if key is None:
        raise UsageError("set REFSTREAM_STRIPE_API_KEY (an sk_ or rk_ key that can read)")
    livemode = key_is_live(key.value)
    if livemode and not args.live:
        raise UsageError("this is a live-mode key: pass --live to backfill live data")
    if args.live and not livemode:
        raise UsageError("--live given but the key is a test-mode key")
    if args.account is not None and not args.account.startswith("acct_"):
        raise UsageError(f"--account must be an acct_... id, got {args.account!r}")
    now = int(time.time())
    since = parse_day(args.since, "--since")
    until = parse_day(args.until, "--until") if args.until else now
    if until <= since:
        raise UsageError("--until must be after --since")
    if args.slice_days <= 0:
        raise UsageError("--slice-days must be positive")
    try:
        sources = sources_named(args.types.split(",") if args.types else None)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    client = stripe.StripeClient(
        key.value,
        base_addresses={"api": settings.streams.stripe_api_base},
        max_network_retries=3,
    )
    pages = StripePages(
        client,
        requests_per_s=settings.backfill.requests_per_s,
        account=args.account,
        api_version=args.api_version,
    )
    api_version = args.api_version or await account_api_version(pages)
    if api_version is None:
        api_version = stripe.api_version
        log.warning("backfill_api_version_unknown", extra={"using": api_version})
    # Objects are rendered in the version their synthesized events are labelled with.
    pages.api_version = api_version
    store = CursorStore(settings.backfill.state_dir, Scope(args.account, livemode, since))
    cutoff = now - EVENTS_RETENTION_S + EVENTS_MARGIN_S
    slices = plan_slices(
        sources,
        since=since,
        until=until,
        cutoff=cutoff,
        slice_s=int(args.slice_days * DAY_S),
        done_until=store.done_until,
    )
    publisher = KafkaPublisher(settings.kafka, settings.ingress)
    await publisher.start()
    bar = ProgressBar(sum(s.end - s.start for s in slices))
    try:
        runner = Backfill(pages, publisher, store, api_version, args.account, livemode)
        return await runner.run(slices, bar)
    finally:
        bar.close()
        await publisher.stop()


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        totals = asyncio.run(backfill(settings, args))
    except UsageError as exc:
        print(f"refstream backfill: {exc}", file=sys.stderr)
        return 2
    except (BackfillApiError, PublishError, ValueError) as exc:
        print(f"refstream backfill: {exc} (run the same command again to resume)", file=sys.stderr)
        return 1
    print(
        f"backfill done: {totals.objects_read} objects read, {totals.events_published} "
        f"events published, {totals.skipped} refused, {totals.slices} slices"
    )
    return 0
