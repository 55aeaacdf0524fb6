"""The `refstream` console entry point.

Options of every subcommand are declared here; the work lives in the module that owns it
and is imported only when that subcommand runs, so `refstream kafka start` does not load
the worker or ClickHouse. A handler takes (settings, args) and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from refstream.logs import configure_logging
from refstream.settings import Settings, SettingsError, load_settings

Handler = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refstream", description="Stripe webhooks to exact referral revenue attribution."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, handler: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    kafka = add("kafka", "run the local single-node Kafka broker", "refstream.commands:kafka")
    kafka.add_argument("action", choices=["start", "stop", "status"])
    add("topics", "create refstream's Kafka topics (idempotent)", "refstream.commands:topics")
    add("ingress", "serve the Stripe webhook endpoint", "ingress.server:main")
    add(
        "worker",
        "run a stream worker (attribution, rewards, corrections)",
        "streams.worker.runtime:main",
    )
    programs = add("programs", "apply or show reward programs", "streams.programs_cli:main")
    programs.add_argument("action", choices=["apply", "show", "check"])
    programs.add_argument("file", nargs="?", help="program file (TOML) for apply and check")
    sink = add(
        "sink",
        "consume the topics into ClickHouse and serve the read-only report API",
        "sinks.service:main",
    )
    sink.add_argument("--no-query-api", action="store_true", help="do not serve the report API")
    report = add(
        "report",
        "print an analytics report (`refstream report list` names them)",
        "sinks.report_cli:main",
    )
    report.add_argument("name", metavar="NAME", help="report name, or `list`")
    report.add_argument("--format", choices=["table", "json"], default="table")
    report.add_argument("--limit", help="rows to return (default 20)")
    report.add_argument("--mode", help="live, test or all (default all)")
    report.add_argument("--currency", help="ISO currency, e.g. usd (default all)")
    report.add_argument("--referral-code", help="one referrer's code (default all)")
    report.add_argument("--since", help="first day included, YYYY-MM-DD")
    report.add_argument("--until", help="last day included, YYYY-MM-DD")
    report.add_argument(
        "--attribution", help="customers report: referred, organic, unattributed or all"
    )
    simulate = add(
        "simulate",
        "post a realistic, signed Stripe event stream to the ingress (loopback only)",
        "simulator.cli:main",
    )
    _simulate_arguments(simulate)
    payouts = add("payouts", "mark rewards as paid out", "streams.payouts_cli:main")
    payouts.add_argument("action", choices=["mark"])
    payouts.add_argument("--payout-id", required=True, help="your id; a repeat has no effect")
    payouts.add_argument("--referral-code", required=True)
    payouts.add_argument("--reward-id", action="append", default=[], help="repeat per reward")
    payouts.add_argument(
        "--amount-minor", type=int, required=True, help="cash paid, minor units (e.g. cents)"
    )
    payouts.add_argument("--currency", required=True, help="ISO 4217, e.g. usd")
    payouts.add_argument("--live", action="store_true", help="live mode (default: test mode)")
    payouts.add_argument("--paid-at", type=int, help="unix seconds (default: now)")
    doctor = add(
        "doctor",
        "check that Stripe sends every event type the ledger needs",
        "refstream.doctor:main",
    )
    doctor.add_argument("--format", choices=["table", "json"], default="table")
    doctor.add_argument(
        "--sample", type=int, default=20_000, help="records read per partition (default 20000)"
    )
    doctor.add_argument("--family", choices=["pre-basil", "basil+"], help="API family to check")
    doctor.add_argument("--account", help="Connect: check a connected account's endpoints")
    dlq = add(
        "dlq",
        "list or replay dead letters; replay re-publishes each original key and value to its "
        "source topic and is idempotent (the worker dedupes Stripe event ids, the sink tables "
        "record ids: a second replay has no effect)",
        "refstream.dlq_cli:main",
    )
    _dlq_arguments(dlq)
    status = add(
        "status",
        "one screen: broker, topics, consumer lag, dead letters, last event per type, "
        "programs, warnings",
        "refstream.status:main",
    )
    status.add_argument("--format", choices=["table", "json"], default="table")
    backfill = add(
        "backfill",
        "publish the account's Stripe history to stripe.events (Events API for the last 30 "
        "days, objects before that); resumable, idempotent",
        "backfill.cli:main",
    )
    _backfill_arguments(backfill)
    add("run", "start the local broker and the pipeline on this machine", "refstream.commands:run")
    return parser


def _simulate_arguments(command: argparse.ArgumentParser) -> None:
    add = command.add_argument
    add("--customers", type=int, default=200, help="customer stories (default 200)")
    add("--months", type=int, default=12, help="renewals per subscriber, at most (default 12)")
    add("--seed", type=int, default=1, help="seed of the scenario and the delivery order")
    add("--referrers", type=int, help="referral codes (default: one per 8 customers)")
    add("--live-ratio", type=float, default=0.2, help="share of live-mode customers (0.2)")
    add("--duplicates", type=float, default=0.1, help="extra deliveries per event (0.1)")
    add("--shuffle-window", type=int, default=50, help="local reordering span (50; 0: none)")
    add(
        "--customer-shuffle",
        type=float,
        default=0.1,
        help="share of customers whose whole stream arrives in random order (0.1)",
    )
    add("--concurrency", type=int, default=16, help="requests in flight (16)")
    add("--max-attempts", type=int, default=8, help="attempts per delivery (8)")
    add("--timeout-s", type=float, default=900.0, help="bound of the whole run in s (900)")
    add("--url", help="webhook URL (default: the ingress of these settings)")
    add("--allow-remote", action="store_true", help="allow a target that is not loopback")
    add(
        "--secret-from-env",
        metavar="VAR",
        help="sign with the whsec_ secret in env VAR (default: the first of "
        "REFSTREAM_WEBHOOK_SECRETS)",
    )
    add("--expect-file", type=Path, help="write the expected ledger (JSON) here")
    add("--program-file", type=Path, help="write the program file (TOML) the ledger assumes")
    add("--apply-program", action="store_true", help="apply that program to Kafka first")
    add("--dry-run", action="store_true", help="generate and write the files, send nothing")


def _backfill_arguments(command: argparse.ArgumentParser) -> None:
    add = command.add_argument
    add("--since", required=True, help="first day (UTC, YYYY-MM-DD) of history to read")
    add("--until", help="day (UTC) to stop before (default: now)")
    add(
        "--types",
        help="comma-separated sources (default all): customers, subscriptions, "
        "checkout_sessions, invoices, charges, invoice_payments, refunds, disputes, events",
    )
    add("--account", help="Connect: backfill this connected account (acct_...)")
    add("--live", action="store_true", help="required to backfill with a live-mode key")
    add("--api-version", help="render objects at this version (default: the account's, "
        "from its newest event)")  # fmt: skip
    add("--slice-days", type=float, default=1.0, help="days read per slice (default 1)")


def _dlq_arguments(command: argparse.ArgumentParser) -> None:
    add = command.add_argument
    add("action", choices=["list", "replay"])
    add("--stage", choices=["worker", "sink"], help="worker: topic stripe.events.dlq; sink: "
        "ClickHouse's dead_letters table (list: both by default; replay: required)")  # fmt: skip
    add("--since", help="failed at or after this ISO 8601 time (UTC unless it says)")
    add("--until", help="failed at or before this ISO 8601 time")
    add("--id", action="append", default=[], dest="ids", help="a dead_letter_id; repeatable")
    add("--limit", type=int, help="at most this many (default 100); replay refuses more")
    add("--format", choices=["table", "json"], default="table")
    add("--dry-run", action="store_true", help="replay: show what would be sent, send nothing")


def _load(target: str) -> Handler:
    module_name, func_name = target.split(":")
    handler: Handler = getattr(importlib.import_module(module_name), func_name)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"refstream: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    return _load(args.handler)(settings, args)


if __name__ == "__main__":
    sys.exit(main())
