"""`refstream programs apply|check FILE` and `refstream programs show`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from refstream.settings import Settings
from streams.ledger.programs import ProgramError, load_programs
from streams.worker_programs import apply_programs, read_programs


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "show":
        current = asyncio.run(read_programs(settings.kafka))
        print(json.dumps([pv.to_json() for pv in current.values()], indent=2))
        return 0
    if not args.file:
        print(f"refstream programs {args.action}: name the program file", file=sys.stderr)
        return 2
    try:
        programs = load_programs(args.file)
    except (OSError, ProgramError) as exc:
        print(f"refstream programs: {args.file}: {exc}", file=sys.stderr)
        return 2
    if args.action == "check":
        print(f"{args.file}: {len(programs)} program(s) valid")
        return 0
    changed = asyncio.run(apply_programs(settings.kafka, programs))
    for pv in changed:
        print(f"applied {pv.program.id} version {pv.version}")
    if not changed:
        print("no change: every program is already in force")
    return 0
