"""Avro containers made of single-object encoded values (sinks/native_avro.py)."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from refstream.avro_codec import AvroCodec
from sinks.consumer import ALL_SPECS
from sinks.native_avro import AvroContainer, _zigzag_long
from tests.support import sink_scenario as scenario

CODEC = AvroCodec.for_schema("reward")


def rewards() -> list[dict[str, Any]]:
    return [scenario.complete("reward", r) for r in scenario.rewards()]


def test_a_container_holds_the_records_in_order() -> None:
    records = rewards()
    block = AvroContainer(CODEC).container([CODEC.encode(r) for r in records])
    assert block is not None
    assert list(fastavro.reader(io.BytesIO(block))) == records


def test_only_values_of_the_current_schema_make_a_container() -> None:
    values: list[bytes | None] = [CODEC.encode(r) for r in rewards()]
    other = AvroCodec.for_schema("payout")
    payout = scenario.complete("payout", scenario.payouts()[0])
    container = AvroContainer(CODEC)
    assert container.container([*values, other.encode(payout)]) is None
    assert container.container([*values, None]) is None
    assert container.container([*values, b"not avro"]) is None


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31, -(2**40), 2**62])
def test_lengths_are_avro_zigzag_longs(value: int) -> None:
    assert fastavro.schemaless_reader(io.BytesIO(_zigzag_long(value)), "long") == value


@pytest.mark.parametrize("spec", [s for s in ALL_SPECS if s.native], ids=lambda s: s.table)
def test_a_native_table_copies_fields_and_checks_every_time(spec: Any) -> None:
    fields = {f.name: f for f in AvroCodec.for_schema(spec.schema).schema.fields}
    assert set(spec.columns) <= set(fields)  # ClickHouse matches fields to columns by name

    # Every `seconds` field of the mapping is range-checked before the table sees it.
    def is_long(t: Any) -> bool:  # a long, or a union holding one
        return t.type == "long" or (t.type == "union" and any(is_long(s) for s in t.schemas))

    longs = {name for name, f in fields.items() if is_long(f.type)}
    timed = {c for c in spec.columns if c.endswith(("_at", "_until")) and c in longs}
    assert set(spec.native.check_columns) == timed
