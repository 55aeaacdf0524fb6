"""A fast encoder for flat Avro records, byte-identical to refstream.avro_codec.AvroCodec.

Why: avro's DatumWriter validates every datum and AvroCodec recomputes the schema
fingerprint per record, together about 200 us per event, the largest CPU cost of the
ingress (bench/ingress_bench.py). The envelope is a flat record of strings, longs, a
boolean, bytes and ["null", string] unions; an encoder compiled from the schema once does
it in a few microseconds. Anything else in a schema is refused when the encoder is built,
so a schema change the encoder cannot follow fails at import, never silently; a unit test
checks equality with AvroCodec.encode on random records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import avro.schema

from refstream.avro_codec import AvroCodec

Writer = Callable[[bytearray, Any], None]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _varint(out: bytearray, n: int, lo: int, hi: int) -> None:
    if not lo <= n <= hi or isinstance(n, bool):
        raise ValueError(f"{n!r} is not an Avro integer in [{lo}, {hi}]")
    z = (n << 1) ^ (n >> 63)  # zigzag
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def _long(out: bytearray, n: int) -> None:
    _varint(out, n, _LONG_MIN, _LONG_MAX)


def _int(out: bytearray, n: int) -> None:
    _varint(out, n, _INT_MIN, _INT_MAX)


def _bytes(out: bytearray, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    _long(out, len(value))
    out += value


def _string(out: bytearray, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    _bytes(out, value.encode("utf-8"))


def _boolean(out: bytearray, value: bool) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"expected bool, got {type(value).__name__}")
    out.append(1 if value else 0)


_PRIMITIVES: dict[str, Writer] = {
    "string": _string,
    "bytes": _bytes,
    "long": _long,
    "int": _int,
    "boolean": _boolean,
}


def _writer(schema: avro.schema.Schema) -> Writer:
    if schema.type in _PRIMITIVES:
        return _PRIMITIVES[schema.type]
    if isinstance(schema, avro.schema.UnionSchema):
        branches = [s.type for s in schema.schemas]
        if len(branches) == 2 and branches[0] == "null" and branches[1] in _PRIMITIVES:
            inner = _PRIMITIVES[branches[1]]

            def optional(out: bytearray, value: Any) -> None:
                if value is None:
                    out.append(0)  # branch 0, zigzag-encoded
                else:
                    out.append(2)  # branch 1
                    inner(out, value)

            return optional
    raise NotImplementedError(f"avro_fast cannot encode {schema}")


def compile_encoder(codec: AvroCodec) -> Callable[[dict[str, Any]], bytes]:
    """encode(record) -> the same bytes as codec.encode(record), for flat records."""
    header = codec.header
    fields = [(field.name, _writer(field.type)) for field in codec.schema.fields]

    def encode(record: dict[str, Any]) -> bytes:
        out = bytearray(header)
        for name, write in fields:
            write(out, record[name])
        return bytes(out)

    return encode
