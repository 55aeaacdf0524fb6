"""The table sink of stripe_events and attributions: the table, then the revenue ledger.

After a window's rows are in their table, the accepted ones are applied to the revenue
ledger (sinks/revenue_ledger.py), which is idempotent by content; a crash between the two
re-reads the window and the ledger catches up. An attributions window ClickHouse decoded
itself (sinks/native_avro.py) is decoded once more here, in Python, for the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

from clickhouse_connect.driver.client import Client

from refstream.avro_codec import AvroCodec
from sinks import revenue_ledger
from sinks.base import (
    Batch,
    ClickHouseSink,
    KafkaRecord,
    Outcome,
    SinkBugError,
    SinkWriteError,
    Window,
    first_line,
    insert_outcome,
)
from sinks.dead_letters_bisect import Refusal
from sinks.rows import Row, TableSpec


class RevenueSink(ClickHouseSink):
    def __init__(self, spec: TableSpec, client: Client) -> None:
        super().__init__(spec, client)
        self._codec = AvroCodec.for_schema(spec.schema)

    def write_native(self, records: Sequence[KafkaRecord], window: Window) -> bool:
        if not super().write_native(records, window):
            return False
        # ClickHouse took every record as it is, so each decodes and maps.
        rows = [self.spec.to_row(self._codec.decode(r.value)) for r in records if r.value]
        self._count(rows, window)
        return True

    def write(self, batch: Batch, window: Window) -> list[Refusal]:
        refusals = self._write_table(batch, window)
        refused = {refusal.index for refusal in refusals}
        self._count([row for i, row in enumerate(batch.rows) if i not in refused], window)
        return refusals

    def _count(self, rows: Sequence[Row], window: Window) -> None:
        try:
            revenue_ledger.count(self.client, self.spec.table, rows)
        except Exception as exc:  # network, server and engine errors of assorted types
            where = f"revenue ledger of {self.spec.table} ({window.dedup_token})"
            if insert_outcome(exc) is Outcome.BUG:
                raise SinkBugError(f"{where} failed unexpectedly: {first_line(exc)}") from exc
            raise SinkWriteError(f"{where} failed: {first_line(exc)}") from exc
