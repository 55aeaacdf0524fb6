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
