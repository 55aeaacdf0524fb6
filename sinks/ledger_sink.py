"""The table sink of rewards, statuses, clawbacks and payouts: the table, then the ledgers.

After the window's rows are in their table (as rows, or as the Avro container ClickHouse
decodes, `_insert_native`), the ones the table accepted are counted in
the ledger (sinks/ledger.py), which counts each record id once whatever the window, and
brought into the balances (sinks/balance_ledger.py: rewards, statuses and clawbacks); a
crash between them re-reads the window and both catch up.
"""

from __future__ import annotations

from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from sinks import balance_ledger, ledger, revenue_ledger
from sinks.base import (
    Batch,
    ClickHouseSink,
    NativeRefusedError,
    Outcome,
    SinkBugError,
    SinkWriteError,
    Window,
    first_line,
    insert_outcome,
)
from sinks.dead_letters_bisect import Refusal
from sinks.revenue_sink import RevenueSink
from sinks.rows import TableSpec


class LedgerSink(ClickHouseSink):
    def _insert_native(self, block: bytes, window: Window) -> None:
        super()._insert_native(block, window)
        table = self.spec.table
        if balance_ledger.follows_table(table):
            # The window was never decoded here: the ledgers read it from a scratch table.
            # A failure is a refusal of the container: the Python path retries it.
            scratch, columns = balance_ledger.scratch_table(table)
            self._guarded(balance_ledger.clear_scratch, window, NativeRefusedError)
            self._raw_insert(scratch, columns, block)
            if ledger.counts_table(table):
                self._guarded(ledger.count_scratch, window, NativeRefusedError)
            self._guarded(balance_ledger.count_scratch, window, NativeRefusedError)

    def write(self, batch: Batch, window: Window) -> list[Refusal]:
        refusals = self._write_table(batch, window)
        refused = {refusal.index for refusal in refusals}
        rows = [row for i, row in enumerate(batch.rows) if i not in refused]
        if ledger.counts_table(self.spec.table):
            self._guarded(lambda client, table: ledger.count(client, table, rows), window)
        if balance_ledger.follows_table(self.spec.table):
            self._guarded(lambda client, table: balance_ledger.count(client, table, rows), window)
        return refusals

    def _guarded(
        self,
        step: Callable[[Client, str], object],
        window: Window,
        unavailable: type[Exception] = SinkWriteError,
    ) -> None:
        try:
            step(self.client, self.spec.table)
        except Exception as exc:  # network, server and engine errors of assorted types
            where = f"ledgers of {self.spec.table} ({window.dedup_token})"
            if insert_outcome(exc) is Outcome.BUG:
                raise SinkBugError(f"{where} failed unexpectedly: {first_line(exc)}") from exc
            raise unavailable(f"{where} failed: {first_line(exc)}") from exc


def table_sink(spec: TableSpec, client: Client) -> ClickHouseSink:
    """The sink that writes `spec`'s table (and the ledgers, for the tables that feed them)."""
    if revenue_ledger.counts_table(spec.table):
        return RevenueSink(spec, client)
    feeds = ledger.counts_table(spec.table) or balance_ledger.follows_table(spec.table)
    return LedgerSink(spec, client) if feeds else ClickHouseSink(spec, client)
