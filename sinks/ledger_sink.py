"""The table sink of rewards, clawbacks and payouts: the table, then the referrer ledger.

After the window's rows are in their table (as rows, or as the Avro container ClickHouse
decodes, `_insert_native`), the ones the table accepted are counted in
the ledger (sinks/ledger.py), which counts each record id once whatever the window; a
crash between the two re-reads the window and the count catches up.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from sinks import ledger, revenue_ledger
from sinks.base import (
    Batch,
    ClickHouseSink,
    Outcome,
    SinkBugError,
    SinkWriteError,
    Window,
    first_line,
    insert_outcome,
)
from sinks.dead_letters_bisect import Refusal
from sinks.revenue_sink import RevenueSink
from sinks.rows import Row, TableSpec


class LedgerSink(ClickHouseSink):
    def _insert_native(self, block: bytes, window: Window) -> None:
        super()._insert_native(block, window)
        table, columns = ledger.NATIVE_INPUTS[self.spec.table]
        self._raw_insert(table, columns, block, settings=ledger.NATIVE_SETTINGS)

    def write(self, batch: Batch, window: Window) -> list[Refusal]:
        refusals = self._write_table(batch, window)
        refused = {refusal.index for refusal in refusals}
        self._count([row for i, row in enumerate(batch.rows) if i not in refused], window)
        return refusals

    def _count(self, rows: Sequence[Row], window: Window) -> None:
        try:
            ledger.count(self.client, self.spec.table, rows)
        except Exception as exc:  # network, server and engine errors of assorted types
            where = f"ledger count of {self.spec.table} ({window.dedup_token})"
            if insert_outcome(exc) is Outcome.BUG:
                raise SinkBugError(f"{where} failed unexpectedly: {first_line(exc)}") from exc
            raise SinkWriteError(f"{where} failed: {first_line(exc)}") from exc


def table_sink(spec: TableSpec, client: Client) -> ClickHouseSink:
    """The sink that writes `spec`'s table (and the ledgers, for the tables that feed them)."""
    if revenue_ledger.counts_table(spec.table):
        return RevenueSink(spec, client)
    return (
        LedgerSink(spec, client)
        if ledger.counts_table(spec.table)
        else ClickHouseSink(spec, client)
    )
