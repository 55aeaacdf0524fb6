"""Avro encoding of Kafka record values, in Avro's single-object encoding.

Every value is `C3 01` + the 8-byte CRC-64-AVRO fingerprint of the writer schema
(little-endian) + the Avro binary body, as the Avro specification defines it. A consumer
without a schema registry can tell which schema wrote a record, and a value written by a
schema other than the one expected is refused instead of misread.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from typing import Any

import avro.io
import avro.schema

from schemas import load_schema

MAGIC = b"\xc3\x01"


class AvroDecodeError(ValueError):
    """Bytes that are not a record of the expected schema."""


@dataclass(frozen=True)
class AvroCodec:
    schema: avro.schema.RecordSchema

    @classmethod
    def for_schema(cls, name: str) -> AvroCodec:
        return _codec(name)

    @property
    def header(self) -> bytes:
        return MAGIC + self.schema.fingerprint("CRC-64-AVRO")

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(self.header)
        avro.io.DatumWriter(self.schema).write(record, avro.io.BinaryEncoder(out))
        return out.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        header = self.header
        if not data.startswith(header):
            if data[:2] != MAGIC:
                raise AvroDecodeError("not an Avro single-object encoded value")
            raise AvroDecodeError(
                f"written by another schema (fingerprint {data[2:10].hex()}), "
                f"expected {self.schema.fullname} ({header[2:].hex()})"
            )
        try:
            decoder = avro.io.BinaryDecoder(io.BytesIO(data[len(header) :]))
            record: dict[str, Any] = avro.io.DatumReader(self.schema).read(decoder)
        except Exception as exc:  # avro raises assorted types on bad bytes
            raise AvroDecodeError(f"corrupt {self.schema.fullname} record: {exc}") from exc
        return record


@cache
def _codec(name: str) -> AvroCodec:
    return AvroCodec(load_schema(name))
