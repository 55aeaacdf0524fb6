"""What every table mapping shares: the spec of a table sink and value checks.

A mapping is a pure function from a decoded Avro record to a row tuple (columns in the
order of `TableSpec.columns`). Values ClickHouse would refuse raise `RowError`, so that the
record goes to the dead letters instead of blocking its partition with a write that can
never succeed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Row = tuple[Any, ...]

# DateTime holds unsigned 32-bit seconds; DateTime64(3) holds 1900-01-01..2299-12-31.
_DATETIME_MAX_S = 2**32 - 1
_DATETIME64_MIN_MS = -2_208_988_800_000
_DATETIME64_MAX_MS = 10_413_791_999_999
_INT32 = 2**31


class RowError(ValueError):
    """A decoded record whose values do not fit its table."""


@dataclass(frozen=True)
class NativeInsert:
    """A table that takes its topic's Avro as it is, decoded by ClickHouse (sinks/native_avro.py).

    Only for a mapping that copies fields (columns named like the schema's fields, nulls
    of optional strings stored as ''). What the mapping refuses and ClickHouse would store
    anyway (a long out of DateTime's range wraps around) is refused by the CHECK
    constraints of `check_table`, a Null table the window is inserted into first; a
    refused window is then decoded in Python, record by record, like any other.
    """

    check_table: str
    check_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableSpec:
    topic: str  # topic name without the settings prefix (refstream.topics)
    schema: str  # schemas/<schema>.avsc
    table: str
    columns: tuple[str, ...]
    to_row: Callable[[Mapping[str, Any]], Row]
    native: NativeInsert | None = None


def text(value: Any) -> str:
    """Optional strings are '' in ClickHouse (not Nullable: cheaper, and '' means absent)."""
    return value if isinstance(value, str) else ""


def seconds(record: Mapping[str, Any], name: str) -> int:
    value = record[name]
    if not 0 <= value <= _DATETIME_MAX_S:
        raise RowError(f"{name}={value} is outside the DateTime range (unix seconds)")
    return int(value)


def millis(value: int, name: str) -> datetime:
    if not _DATETIME64_MIN_MS <= value <= _DATETIME64_MAX_MS:
        raise RowError(f"{name}={value} is outside the DateTime64 range (unix milliseconds)")
    return datetime.fromtimestamp(value / 1000, UTC)


def int32(value: int | None, name: str) -> int | None:
    if value is not None and not -_INT32 <= value < _INT32:
        raise RowError(f"{name}={value} does not fit Int32")
    return value


def row_dict(spec: TableSpec, row: Sequence[Any]) -> dict[str, Any]:
    """Name the values of a row (tests and debugging)."""
    return dict(zip(spec.columns, row, strict=True))
