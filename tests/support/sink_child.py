"""The sink as a child process for crash tests.

    python -m tests.support.sink_child OUT_JSON [KILL_AT_COMMIT | ledger:KILL_AT_LEDGER]

Settings come from the REFSTREAM_* environment. Merges are stopped first and the writer
inserts with optimize_on_insert=0 (no collapsing of equal ids inside one insert), so the
physical row counts it reports on SIGTERM (to OUT_JSON) show every row ever written, and
so any window written twice.
With KILL_AT_COMMIT=n the process SIGKILLs itself inside its n-th offset commit: the
window is in ClickHouse, its offset is not in Kafka, the worst moment to die. Before dying
it writes the window it was about to commit to OUT_JSON.
With ledger:n it SIGKILLs itself in the writer's thread inside its n-th ledger write: the
window is in its table, not yet in the ledger, and the poller is reading on meanwhile.
Before dying it writes {"killed_in_ledger": table} to OUT_JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer

from refstream.settings import load_settings
from sinks import service
from sinks.clickhouse import connect
from sinks.migrations import apply_migrations
from tests.support.sink_checks import counts


def _kill_at_commit(n: int, out: str) -> None:
    original = AIOKafkaConsumer.commit
    calls = 0

    async def commit(self: AIOKafkaConsumer, offsets: Any = None) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            window = {f"{tp.topic}:{tp.partition}": offset for tp, offset in offsets.items()}
            with open(out, "w") as f:
                json.dump({"killed_before_commit": window}, f)
            os.kill(os.getpid(), signal.SIGKILL)
        await original(self, offsets)

    AIOKafkaConsumer.commit = commit  # type: ignore[method-assign]


def _kill_in_ledger(n: int, out: str) -> None:
    from sinks import ledger

    calls = 0

    def count_call(table: str) -> None:
        nonlocal calls
        calls += 1
        if calls == n:
            with open(out, "w") as f:
                json.dump({"killed_in_ledger": table}, f)
            os.kill(os.getpid(), signal.SIGKILL)

    count, count_scratch = ledger.count, ledger.count_scratch

    def count_then_die(client: Any, table: str, rows: Any) -> int:
        count_call(table)
        return count(client, table, rows)

    def count_scratch_then_die(client: Any, table: str) -> None:
        count_call(table)
        count_scratch(client, table)

    ledger.count = count_then_die  # type: ignore[assignment]
    ledger.count_scratch = count_scratch_then_die  # type: ignore[assignment]


def _no_insert_collapsing() -> None:
    original = service.connect

    def connect_writer(sink: Any, *, readonly: bool = False) -> Any:
        client = original(sink, readonly=readonly)
        if not readonly:
            client.set_client_setting("optimize_on_insert", 0)
        return client

    service.connect = connect_writer  # type: ignore[assignment]


async def _run(out: str) -> None:
    settings = load_settings()
    keeper = connect(settings.sink)  # keeps the engine open, merges stopped, for the count
    apply_migrations(keeper)
    keeper.command("SYSTEM STOP MERGES")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await service.serve(settings, stop)
    with open(out, "w") as f:
        json.dump({"stored_rows": counts(keeper, final=False)}, f)
    keeper.close()


def main() -> None:
    out = sys.argv[1]
    _no_insert_collapsing()
    if len(sys.argv) > 2 and sys.argv[2].startswith("ledger:"):
        _kill_in_ledger(int(sys.argv[2].removeprefix("ledger:")), out)
    elif len(sys.argv) > 2:
        _kill_at_commit(int(sys.argv[2]), out)
    asyncio.run(_run(out))


if __name__ == "__main__":
    main()
