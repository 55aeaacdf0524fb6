"""The batching base class and the ClickHouse write seam (I/O faked)."""

from __future__ import annotations

from typing import Any

import pytest

from sinks.base import Batch, BatchingSink, ClickHouseSink, SinkWriteError, Window
from sinks.rewards import SPEC as REWARDS


class RecordingSink(BatchingSink):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.writes: list[tuple[str, int, list[Any], str]] = []

    def write(self, batch: Batch, window: Window) -> None:
        self.writes.append((batch.topic, batch.partition, list(batch.rows), window.dedup_token))
        if self.fail:
            raise SinkWriteError("target down")


def test_the_dedup_token_is_topic_partition_and_offset_range() -> None:
    assert Window("p.referral.rewards", 3, 10, 19).dedup_token == "p.referral.rewards:3:10-19"


def test_flush_writes_only_its_partition_and_then_forgets_it() -> None:
    sink = RecordingSink()
    sink.add(("a",), "t", 0)
    sink.add(("b",), "t", 1)
    sink.add(("c",), "t", 0)
    sink.flush(Window("t", 0, 5, 6))
    assert sink.writes == [("t", 0, [("a",), ("c",)], "t:0:5-6")]
    assert sink.pending_rows("t", 0) == 0
    assert sink.pending_rows("t", 1) == 1


def test_a_failed_write_raises_and_still_clears_the_batch() -> None:
    sink = RecordingSink(fail=True)
    sink.add(("a",), "t", 0)
    with pytest.raises(SinkWriteError):
        sink.flush(Window("t", 0, 0, 0))
    assert sink.pending_rows("t", 0) == 0  # the records are re-read from Kafka, not kept


def test_an_empty_window_writes_nothing() -> None:
    sink = RecordingSink()
    sink.flush(Window("t", 0, 0, 3))  # e.g. every record of the window was a dead letter
    assert sink.writes == []


def test_clear_forgets_one_partition_or_all() -> None:
    sink = RecordingSink()
    for partition in (0, 1, 2):
        sink.add(("x",), "t", partition)
    sink.clear("t", 1)
    assert [sink.pending_rows("t", p) for p in (0, 1, 2)] == [1, 0, 1]
    sink.clear()
    assert [sink.pending_rows("t", p) for p in (0, 1, 2)] == [0, 0, 0]


class FakeClient:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.inserts: list[dict[str, Any]] = []

    def insert(
        self, table: str, rows: list[Any], column_names: list[str], settings: dict[str, Any]
    ) -> None:
        if self.error:
            raise self.error
        self.inserts.append(
            {"table": table, "rows": rows, "columns": column_names, "settings": settings}
        )


def test_clickhouse_sink_inserts_with_the_window_token() -> None:
    client = FakeClient()
    sink = ClickHouseSink(REWARDS, client)  # type: ignore[arg-type]
    sink.add(("row",), "p.referral.rewards", 2)
    sink.flush(Window("p.referral.rewards", 2, 40, 41))
    assert client.inserts == [
        {
            "table": "rewards",
            "rows": [("row",)],
            "columns": list(REWARDS.columns),
            "settings": {"insert_deduplication_token": "p.referral.rewards:2:40-41"},
        }
    ]


def test_clickhouse_errors_become_sink_write_errors_naming_the_window() -> None:
    client = FakeClient(ConnectionError("Connection refused\nstack trace line"))
    sink = ClickHouseSink(REWARDS, client)  # type: ignore[arg-type]
    sink.add(("row",), "t", 0)
    with pytest.raises(SinkWriteError, match=r"rewards \(t:0:0-0\) failed: Connection refused$"):
        sink.flush(Window("t", 0, 0, 0))
