"""Poison isolation at the sink: bisection with a fake writer, and error classification."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from clickhouse_connect.driver import exceptions as ch_errors

from sinks import dead_letters
from sinks.base import (
    ClickHouseSink,
    Outcome,
    SinkBugError,
    SinkWriteError,
    SourceRecord,
    Window,
    insert_outcome,
)
from sinks.dead_letters_bisect import Refusal, insert_isolating
from sinks.rewards import SPEC as REWARDS

POISON = "POISON"


class RefusedError(Exception):
    pass


class FakeTable:
    """Accepts inserts unless a row holds POISON; remembers tokens like ClickHouse does."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.tokens: set[str] = set()
        self.attempts: list[str] = []
        self.crash_after: int | None = None

    def insert(self, rows: Sequence[Any], token: str) -> None:
        self.attempts.append(token)
        if self.crash_after is not None and len(self.attempts) > self.crash_after:
            raise ConnectionError("sink died mid-split")
        if any(POISON in row for row in rows):
            raise RefusedError(f"row refused in {token}")
        if token in self.tokens:
            return  # deduplicated: written before under the same token
        self.tokens.add(token)
        self.rows.extend(rows)


def _run(table: FakeTable, rows: list[tuple[Any, ...]], offsets: list[int]) -> list[Refusal]:
    return insert_isolating(
        rows, offsets, table.insert, f"t:0:{offsets[0]}-{offsets[-1]}",
        lambda a, b: f"t:0:{a}-{b}", RefusedError,
    )  # fmt: skip


def _rows(n: int, poison_at: set[int]) -> tuple[list[tuple[Any, ...]], list[int]]:
    offsets = [100 + 2 * i for i in range(n)]  # gaps: other offsets went elsewhere
    rows = [(POISON if i in poison_at else f"r{o}", o) for i, o in enumerate(offsets)]
    return rows, offsets


def test_a_clean_batch_is_one_insert_with_the_window_token() -> None:
    table = FakeTable()
    rows, offsets = _rows(8, set())
    assert _run(table, rows, offsets) == []
    assert table.attempts == ["t:0:100-114"]
    assert table.rows == rows


@pytest.mark.parametrize(
    "n, poison_at",
    [(1, {0}), (2, {1}), (7, {3}), (16, {0, 15}), (9, {2, 3, 4}), (5, {0, 1, 2, 3, 4})],
)
def test_good_rows_are_written_in_order_and_only_the_bad_ones_are_refused(
    n: int, poison_at: set[int]
) -> None:
    table = FakeTable()
    rows, offsets = _rows(n, poison_at)
    refusals = _run(table, rows, offsets)
    assert [r.index for r in refusals] == sorted(poison_at)
    assert [r.offset for r in refusals] == [offsets[i] for i in sorted(poison_at)]
    assert all("row refused" in r.reason for r in refusals)
    assert table.rows == [row for i, row in enumerate(rows) if i not in poison_at]


def test_one_poison_in_many_costs_a_logarithmic_number_of_inserts() -> None:
    table = FakeTable()
    rows, offsets = _rows(1024, {517})
    _run(table, rows, offsets)
    assert len(table.attempts) <= 2 * 10 + 1


def test_a_crash_mid_split_then_a_retry_neither_drops_nor_doubles_a_row() -> None:
    rows, offsets = _rows(16, {5, 11})
    clean = FakeTable()
    _run(clean, rows, offsets)
    for crash_after in range(1, len(clean.attempts)):
        table = FakeTable()
        table.crash_after = crash_after
        with pytest.raises(ConnectionError):
            _run(table, rows, offsets)
        table.crash_after = None
        refusals = _run(table, rows, offsets)  # the window re-read after the crash
        assert [r.index for r in refusals] == [5, 11]
        assert table.rows == clean.rows, f"crash after {crash_after} inserts"


def test_other_errors_propagate_untouched() -> None:
    def broken(rows: Sequence[Any], token: str) -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        insert_isolating([("a",)], [0], broken, "t", lambda a, b: "s", RefusedError)


@pytest.mark.parametrize(
    "exc, outcome",
    [
        (UnicodeEncodeError("utf-8", "\udc00", 0, 1, "surrogates not allowed"), Outcome.REFUSED),
        (ch_errors.DataError("Invalid None value in non-Nullable column"), Outcome.REFUSED),
        (ch_errors.DatabaseError("Code: 27. DB::Exception: Cannot parse input"), Outcome.REFUSED),
        (ch_errors.DatabaseError("x", code=6), Outcome.REFUSED),
        (ch_errors.DatabaseError("Code: 60. Table t does not exist. (UNKNOWN_TABLE)"),
         Outcome.UNAVAILABLE),
        (ch_errors.DatabaseError("Code: 241. Memory limit exceeded"), Outcome.UNAVAILABLE),
        (ch_errors.OperationalError("Network Error"), Outcome.UNAVAILABLE),
        (ConnectionRefusedError("refused"), Outcome.UNAVAILABLE),
        (TimeoutError("timed out"), Outcome.UNAVAILABLE),
        (ch_errors.ProgrammingError("Unrecognized common setting"), Outcome.BUG),
        (TypeError("unsupported operand"), Outcome.BUG),
        (AttributeError("'list' object has no attribute 'encode'"), Outcome.BUG),
        (ValueError("Invalid isoformat string"), Outcome.BUG),
    ],
)  # fmt: skip
def test_insert_errors_are_told_apart(exc: BaseException, outcome: Outcome) -> None:
    assert insert_outcome(exc) is outcome


class FakeClient:
    """clickhouse-connect's insert seam: refuses a batch holding a surrogate like the real
    client does (it fails encoding the string), or fails every insert with `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.inserts: list[tuple[list[Any], str]] = []

    def insert(self, table: str, rows: Sequence[Any], column_names: Any, settings: Any) -> None:
        if self.error is not None:
            raise self.error
        for row in rows:
            for value in row:
                if isinstance(value, str):
                    value.encode("utf-8")
        self.inserts.append((list(rows), settings["insert_deduplication_token"]))


def _sink(client: FakeClient, values: list[str]) -> ClickHouseSink:
    sink = ClickHouseSink(REWARDS, client)  # type: ignore[arg-type]
    for offset, value in enumerate(values, start=10):
        sink.add(
            (value,), "t", 0, SourceRecord(offset, b"k", value.encode("utf-8", "surrogatepass"), 0)
        )
    return sink


def test_the_sink_returns_refused_rows_with_their_source_and_writes_the_rest() -> None:
    client = FakeClient()
    sink = _sink(client, ["a", "b\udc00", "c", "d"])
    refused = sink.flush(Window("t", 0, 10, 13))
    assert [r.source.offset for r in refused] == [11]
    assert "UnicodeEncodeError" in refused[0].reason
    assert [row for rows, _ in client.inserts for row in rows] == [("a",), ("c",), ("d",)]
    assert [token for _, token in client.inserts] == ["t:0:10-10", "t:0:12-13"]
    assert sink.pending_rows("t", 0) == 0


def test_an_unavailable_target_pauses_and_a_bug_stops() -> None:
    with pytest.raises(SinkWriteError, match="t:0:10-10"):
        _sink(FakeClient(ConnectionRefusedError("down")), ["a"]).flush(Window("t", 0, 10, 10))
    with pytest.raises(SinkBugError, match="AttributeError"):
        _sink(FakeClient(AttributeError("oops")), ["a"]).flush(Window("t", 0, 10, 10))


def test_a_second_insert_of_a_window_has_its_own_token() -> None:
    window = Window("t", 0, 10, 13)
    assert replace(window, token_suffix=":refused").dedup_token == "t:0:10-13:refused"


def test_a_refused_row_dead_letter_keeps_the_bytes_and_is_utf8_safe() -> None:
    row = dead_letters.refused_row(
        "p.stripe.events", 3, 42, b"cus_1", b"\xc3\x01raw", 1_772_323_200_000, "stripe_events",
        "UnicodeEncodeError: 'utf-8' codec can't encode '\udc00'", "evt_1",
    )  # fmt: skip
    named = dict(zip(dead_letters.COLUMNS, row, strict=True))
    assert named["dead_letter_id"] == "p.stripe.events:3:42:sink"
    assert named["value"] == b"\xc3\x01raw" and named["key"] == b"cus_1"
    assert named["error_type"] == dead_letters.REFUSED_ERROR_TYPE
    named["error"].encode("utf-8")  # would raise on a lone surrogate
    assert "\\udc00" in named["error"]
    assert named["event_id"] == "evt_1"
