"""The ingress's fast Avro encoder writes exactly what AvroCodec writes."""

from __future__ import annotations

from typing import Any

import avro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingress.avro_fast import compile_encoder
from refstream.avro_codec import AvroCodec

CODEC = AvroCodec.for_schema("stripe_event")
ENCODE = compile_encoder(CODEC)

text = st.text()
longs = st.integers(-(2**63), 2**63 - 1)
records = st.fixed_dictionaries(
    {
        "event_id": text,
        "type": text,
        "created": longs,
        "api_version": st.none() | text,
        "livemode": st.booleans(),
        "account": st.none() | text,
        "object_type": text,
        "object_id": st.none() | text,
        "partition_key": text,
        "key_source": st.sampled_from(["customer", "payment_intent", "object", "event"]),
        "received_at_ms": longs,
        "body": st.binary(max_size=5000),
    }
)


@settings(max_examples=500, deadline=None)
@given(record=records)
def test_byte_identical_to_the_avro_library(record: dict[str, Any]) -> None:
    encoded = ENCODE(record)
    assert encoded == CODEC.encode(record)
    assert CODEC.decode(encoded) == record


@pytest.mark.parametrize(
    ("field", "value"),
    [("created", 2**63), ("created", "1"), ("livemode", 1), ("body", "text"), ("type", b"x")],
)
def test_values_of_the_wrong_type_or_range_are_refused(field: str, value: Any) -> None:
    record = {
        "event_id": "evt_1", "type": "t", "created": 1, "api_version": None, "livemode": False,
        "account": None, "object_type": "invoice", "object_id": None, "partition_key": "k",
        "key_source": "event", "received_at_ms": 1, "body": b"{}",
    }  # fmt: skip
    with pytest.raises((ValueError, TypeError)):
        ENCODE({**record, field: value})


def test_a_schema_it_cannot_follow_is_refused_when_compiling() -> None:
    schema = avro.schema.parse(
        '{"type": "record", "name": "R", "fields": [{"name": "m", "type": '
        '{"type": "map", "values": "string"}}]}'
    )
    assert isinstance(schema, avro.schema.RecordSchema)
    with pytest.raises(NotImplementedError):
        compile_encoder(AvroCodec(schema))
