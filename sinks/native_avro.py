"""A window's Avro values handed to ClickHouse as they are: one Avro object container.

The topics carry Avro single-object encoding (refstream/avro_codec.py): a 10-byte header
naming the writer schema, then the record's Avro binary body. An Avro object container
file (the `Avro` input format of ClickHouse) is a header holding the schema, then blocks of
(record count, byte size, the bodies back to back, sync marker). So a window whose values
were all written by the current schema becomes a container by concatenating their bodies
behind a fixed header: no record is decoded in Python, ClickHouse decodes them (measured
about 5x faster than fastavro plus the row mapping, bench/sink_bench.py).

`container` returns None when any value has another header (an earlier committed schema
version, or bytes that are not Avro at all): the sink then decodes that window in Python,
record by record, as before (schema resolution, dead letters).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import fastavro

from refstream.avro_codec import AvroCodec

# Any 16 bytes do: the marker only has to be the same in the header and after the block.
_SYNC = b"refstream-sink\x00\x01"


def _zigzag_long(value: int) -> bytes:
    """Avro's variable-length zig-zag encoding of a long."""
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


@dataclass(frozen=True)
class AvroContainer:
    """Builds containers of the values written by `codec`'s current schema."""

    codec: AvroCodec
    _file_header: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        out = io.BytesIO()
        schema = json.loads(str(self.codec.schema))
        fastavro.writer(out, fastavro.parse_schema(schema), [], sync_marker=_SYNC)
        object.__setattr__(self, "_file_header", out.getvalue())

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.codec.schema.fields)

    def container(self, values: Sequence[bytes | None]) -> bytes | None:
        """One container holding `values` in order, or None if any is not a current one."""
        header = self.codec.header
        size = len(header)
        bodies = []
        for value in values:
            if value is None or not value.startswith(header):
                return None
            bodies.append(value[size:])
        body = b"".join(bodies)
        return b"".join(
            (self._file_header, _zigzag_long(len(bodies)), _zigzag_long(len(body)), body, _SYNC)
        )
