"""The `refstream` console entry point.

Options of every subcommand are declared here; the work lives in the module that owns it
and is imported only when that subcommand runs, so `refstream kafka start` does not load
Faust or ClickHouse. A handler takes (settings, args) and returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

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
    add("worker", "run a stream worker (attribution, rewards, corrections)", "streams.app:main")
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
    add("run", "start the local broker and the pipeline on this machine", "refstream.commands:run")
    return parser


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
    configure_logging(settings.log_level)
    return _load(args.handler)(settings, args)


if __name__ == "__main__":
    sys.exit(main())
