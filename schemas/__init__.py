"""Avro schemas of every topic refstream writes: the contract with downstream services.

One `<name>.avsc` file per record type beside this module. Schemas evolve compatibly
(new fields need defaults; nothing is removed or retyped); tests/unit/test_schema_compat.py
checks every change against each earlier committed version.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import avro.schema

SCHEMA_DIR = Path(__file__).resolve().parent


def schema_names() -> list[str]:
    return sorted(path.stem for path in SCHEMA_DIR.glob("*.avsc"))


@cache
def load_schema(name: str) -> avro.schema.RecordSchema:
    """Parse `schemas/<name>.avsc`; raises FileNotFoundError naming the file if absent."""
    schema = avro.schema.parse((SCHEMA_DIR / f"{name}.avsc").read_text())
    assert isinstance(schema, avro.schema.RecordSchema), f"{name}.avsc is not a record"
    return schema
