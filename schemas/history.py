"""The committed versions of every schema, kept in the repo for writer-to-reader resolution.

`schemas/history/<name>/<fingerprint>.avsc` holds each version of `schemas/<name>.avsc`
that was ever committed (the current one included), named by its CRC-64-AVRO fingerprint
in hex: the fingerprint every single-object encoded record carries. A reader on the
current schema looks the writer's fingerprint up here and resolves the record into the
current shape (new fields take their defaults), so retained topic data written before a
compatible change is never dead-lettered.

Why files rather than git at run time: a deployed process has no git history (images,
wheels, shallow CI clones). tests/unit/test_schema_compat.py checks against git that no
committed version is missing here, and fails on a shallow clone rather than pass vacuously.

After changing a schema run `python -m schemas.history` and commit the file it adds.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

import avro.schema

from schemas import SCHEMA_DIR, load_schema, schema_names

HISTORY_DIR = SCHEMA_DIR / "history"


def fingerprint(schema: avro.schema.Schema) -> bytes:
    return schema.fingerprint("CRC-64-AVRO")


def version_path(name: str, schema: avro.schema.Schema) -> Path:
    return HISTORY_DIR / name / f"{fingerprint(schema).hex()}.avsc"


@cache
def committed_versions(name: str) -> dict[bytes, avro.schema.RecordSchema]:
    """Every recorded version of schema `name`, by fingerprint (the current one included
    even when it has not been recorded yet, so a codec always reads its own records)."""
    versions: dict[bytes, avro.schema.RecordSchema] = {}
    for path in sorted((HISTORY_DIR / name).glob("*.avsc")):
        schema = avro.schema.parse(path.read_text())
        if not isinstance(schema, avro.schema.RecordSchema):
            raise ValueError(f"{path} is not a record schema")
        if fingerprint(schema).hex() != path.stem:
            raise ValueError(f"{path} does not hold the schema its name says")
        versions[fingerprint(schema)] = schema
    current = load_schema(name)
    versions[fingerprint(current)] = current
    return versions


def record_current() -> list[Path]:
    """Write the current version of every schema into the history; returns new files."""
    added = []
    for name in schema_names():
        path = version_path(name, load_schema(name))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text((SCHEMA_DIR / f"{name}.avsc").read_text())
            added.append(path)
    return added


if __name__ == "__main__":
    for added_path in record_current():
        print(f"recorded {added_path.relative_to(SCHEMA_DIR.parent)}")
    sys.exit(0)
