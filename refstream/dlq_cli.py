"""`refstream dlq list|replay`: see the dead letters and re-publish their original records.

Stages: `worker` reads the worker's topic stripe.events.dlq; `sink` reads ClickHouse's
`dead_letters` table (stage sink: records the sink could not decode or map, and rows the
engine refused). `list` shows both stages unless `--stage` names one. `replay` needs a
stage and a selection (`--id`, or `--since`/`--until`), and replays nothing when the
selection is wrong, names unknown ids, or matches more than `--limit`.

Replaying is idempotent: the worker dedupes Stripe event ids and the sink tables dedupe
record ids, so a record replayed twice has one effect. Errors print one line naming the
problem and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from datetime import UTC, datetime

from aiokafka.errors import KafkaError
from clickhouse_connect.driver.client import Client

from refstream.settings import Settings, SinkSettings
from sinks.clickhouse import ClickHouseError, EngineBusyError, connect, engine_folder
from sinks.dead_letters_read import (
    MAX_LIMIT,
    DeadLetter,
    Found,
    Selection,
    read_sink_stage,
    read_worker_stage,
)
from sinks.dead_letters_replay import ReplayTargetError, check_targets, replay

STAGES = ("worker", "sink")
DEFAULT_LIMIT = 100  # refstream/cli.py says so in --limit's help
_ERROR_COLUMN_CHARS = 80


class DlqError(Exception):
    """What the user asked cannot be done; the message says why (exit 2)."""


def _moment(option: str, raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise DlqError(f"{option} {raw!r} is not an ISO 8601 date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def selection_of(args: argparse.Namespace) -> Selection:
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    if not 1 <= limit <= MAX_LIMIT:
        raise DlqError(f"--limit must be between 1 and {MAX_LIMIT}, got {limit}")
    since, until = _moment("--since", args.since), _moment("--until", args.until)
    if since is not None and until is not None and since > until:
        raise DlqError("--since is after --until")
    if args.action == "replay":
        if args.stage is None:
            raise DlqError("replay needs --stage worker or --stage sink")
        if not args.ids and since is None and until is None:
            raise DlqError("replay needs a selection: --id ID (repeatable) or --since/--until")
    if args.dry_run and args.action != "replay":
        raise DlqError("--dry-run only applies to replay")
    return Selection(since, until, tuple(dict.fromkeys(args.ids)), limit)


def _sink_reader(sink: SinkSettings) -> Client:
    if sink.embedded and not engine_folder(sink).is_dir():
        raise DlqError(f"no ClickHouse data at {sink.clickhouse_target}: run `refstream sink`")
    try:
        return connect(sink, readonly=True)
    except EngineBusyError as exc:
        # The query API serves named reports only; the embedded folder has one owner.
        raise DlqError(
            f"{exc}: stop the sink to read its dead letters (or use a ClickHouse server DSN)"
        ) from None
    except ClickHouseError as exc:
        raise DlqError(str(exc)) from None


async def find(settings: Settings, stage: str, selection: Selection) -> Found:
    if stage == "worker":
        try:
            return await read_worker_stage(settings.kafka, selection)
        except LookupError as exc:
            raise DlqError(f"{exc}: run `refstream topics`") from None
    client = _sink_reader(settings.sink)
    try:
        return await asyncio.to_thread(read_sink_stage, client, settings.kafka, selection)
    except Exception as exc:  # noqa: BLE001 - an engine error becomes a one-line message
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "UNKNOWN_TABLE" in line:
            raise DlqError(f"no dead_letters table at {settings.sink.clickhouse_target}") from None
        raise DlqError(f"reading dead letters failed: {line}") from None
    finally:
        client.close()


async def _list(settings: Settings, args: argparse.Namespace, selection: Selection) -> int:
    stages = [args.stage] if args.stage else list(STAGES)
    found = [await find(settings, stage, selection) for stage in stages]
    letters = sorted(
        (d for f in found for d in f.letters), key=lambda d: (d.failed_at, d.dead_letter_id)
    )
    merged = Found(
        letters[: selection.limit], any(f.more for f in found) or len(letters) > selection.limit
    )
    _print(merged.letters, args.format)
    if merged.more:
        print(f"(more than {selection.limit} match; narrow the selection or raise --limit)",
              file=sys.stderr)  # fmt: skip
    return 0


async def _replay(settings: Settings, args: argparse.Namespace, selection: Selection) -> int:
    found = await find(settings, args.stage, selection)
    if found.more:
        raise DlqError(
            f"more than {selection.limit} dead letters match: narrow the selection or raise "
            "--limit (nothing replayed)"
        )
    missing = [i for i in selection.ids if i not in {d.dead_letter_id for d in found.letters}]
    if missing:
        raise DlqError(f"no {args.stage} dead letter with id {', '.join(missing)} "
                       "(within --since/--until; nothing replayed)")  # fmt: skip
    if not found.letters:
        raise DlqError(f"no {args.stage} dead letters match (nothing replayed)")
    try:
        if args.dry_run:
            check_targets(settings.kafka, args.stage, found.letters)
            for d in found.letters:
                print(f"would replay {d.dead_letter_id} -> {d.source_topic} "
                      f"(key {_key(d.key)}, {len(d.value)} bytes)")  # fmt: skip
            return 0
        done = await replay(settings.kafka, args.stage, found.letters)
    except ReplayTargetError as exc:
        raise DlqError(str(exc)) from None
    for item in done:
        print(f"replayed {item.letter.dead_letter_id} -> "
              f"{item.letter.source_topic}[{item.partition}]@{item.offset}")  # fmt: skip
    return 0


def _key(key: bytes | None) -> str:
    if key is None:
        return "none"
    try:
        return key.decode()
    except UnicodeDecodeError:
        return "0x" + key.hex()


def _print(letters: list[DeadLetter], output: str) -> None:
    if output == "json":
        rows = [
            {
                "dead_letter_id": d.dead_letter_id, "stage": d.stage,
                "source_topic": d.source_topic, "source_partition": d.source_partition,
                "source_offset": d.source_offset, "event_id": d.event_id,
                "error_type": d.error_type, "error": d.error,
                "failed_at": d.failed_at.isoformat(),
                "key_base64": None if d.key is None else base64.b64encode(d.key).decode(),
                "value_base64": base64.b64encode(d.value).decode(),
            }
            for d in letters
        ]  # fmt: skip
        print(json.dumps({"dead_letters": rows}, indent=2))
        return
    header = ("failed_at", "stage", "dead_letter_id", "event_id", "error_type", "error")
    table = [header] + [
        (d.failed_at.strftime("%Y-%m-%dT%H:%M:%SZ"), d.stage, d.dead_letter_id, d.event_id,
         d.error_type, " ".join(d.error.split())[:_ERROR_COLUMN_CHARS])
        for d in letters
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"({len(letters)} dead letters)")


def main(settings: Settings, args: argparse.Namespace) -> int:
    try:
        selection = selection_of(args)
        action = _list if args.action == "list" else _replay
        return asyncio.run(action(settings, args, selection))
    except DlqError as exc:
        print(f"refstream dlq: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, OSError) as exc:
        print(f"refstream dlq: Kafka at {settings.kafka.bootstrap}: {exc}", file=sys.stderr)
        return 2
