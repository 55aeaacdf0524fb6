"""`refstream sink`: the sink process. Applies the schema, serves the read-only query API
and runs the consumer until SIGINT/SIGTERM, then flushes what it holds and exits."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from aiohttp import web
from clickhouse_connect.driver.client import Client

from refstream.metrics import SinkMetrics, serve_sink
from refstream.settings import Settings
from refstream.status import group_lag
from refstream.topics import ensure_topics
from sinks import balance_ledger, ledger, revenue_ledger
from sinks.clickhouse import ClickHouseError, EngineBusyError, connect
from sinks.consumer import ALL_SPECS, SinkConsumer
from sinks.migrations import MigrationError, apply_migrations
from sinks.query_api import start_query_api

log = logging.getLogger(__name__)


async def _connect_with_retry(settings: Settings, stop: asyncio.Event) -> Client:
    """A writer client; waits out an unreachable server, but a busy folder is fatal."""
    backoff_ms = settings.sink.retry_initial_ms
    while True:
        try:
            return await asyncio.to_thread(connect, settings.sink)
        except EngineBusyError:
            raise
        except ClickHouseError as exc:
            if stop.is_set():
                raise
            log.error(
                "clickhouse_unavailable", extra={"error": str(exc), "retry_in_ms": backoff_ms}
            )
            try:
                await asyncio.wait_for(stop.wait(), backoff_ms / 1000)
            except TimeoutError:
                pass
            backoff_ms = min(backoff_ms * 2, settings.sink.retry_max_ms)


async def _export_lag(settings: Settings, metrics: SinkMetrics, stop: asyncio.Event) -> None:
    """The sink group's lag per partition, every 15 s (refstream_consumer_lag)."""
    group = settings.sink.group_id
    names = [settings.kafka.topic(spec.topic) for spec in ALL_SPECS]
    while not stop.is_set():
        try:
            for tp, records in (await group_lag(settings.kafka.bootstrap, group, names)).items():
                metrics.consumer_lag.labels(group, tp.topic, str(tp.partition)).set(records)
        except Exception as exc:  # noqa: BLE001 -- a broker hiccup: try at the next interval
            log.warning("lag_unavailable", extra={"error": type(exc).__name__})
        try:
            await asyncio.wait_for(stop.wait(), 15)
        except TimeoutError:
            pass


async def serve(settings: Settings, stop: asyncio.Event, *, query_api: bool = True) -> None:
    """Run the sink until `stop` is set."""
    sink = settings.sink
    client = await _connect_with_retry(settings, stop)
    reader = None
    runner: web.AppRunner | None = None
    try:
        applied = await asyncio.to_thread(apply_migrations, client)
        # Records stored before the referrer ledger existed (once per database).
        await asyncio.to_thread(ledger.backfill, client)
        # Stripe events and attributions stored before the revenue ledger existed.
        await asyncio.to_thread(revenue_ledger.backfill, client)
        # Rewards, statuses and clawbacks stored before the balance ledger existed (likewise).
        await asyncio.to_thread(balance_ledger.backfill, client)
        log.info("sink_starting", extra={"clickhouse": sink.clickhouse_target,
                                         "migrations_applied": applied})  # fmt: skip
        await ensure_topics(settings.kafka)
        if query_api:
            reader = await asyncio.to_thread(connect, sink, readonly=True)
            runner = await start_query_api(
                reader, sink.query_api_host, sink.query_api_port, sink.query_api_token
            )
        metrics = SinkMetrics()
        metrics_server = serve_sink(metrics, settings)  # off when the port is unset
        lag = asyncio.create_task(_export_lag(settings, metrics, stop))
        try:
            await SinkConsumer(settings.kafka, sink, client, metrics=metrics).run(stop)
        finally:
            lag.cancel()
            if metrics_server is not None:
                metrics_server.shutdown()
    finally:
        if runner is not None:
            await runner.cleanup()
        if reader is not None:
            reader.close()
        client.close()


def main(settings: Settings, args: argparse.Namespace) -> int:
    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop, query_api=not args.no_query_api)

    try:
        asyncio.run(run())
    except (EngineBusyError, MigrationError, ClickHouseError) as exc:
        print(f"refstream sink: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the query API port is taken, typically
        print(f"refstream sink: {exc}", file=sys.stderr)
        return 1
    return 0
