"""Every schema stays compatible with each earlier committed version of itself.

'Compatible' is FULL compatibility with avro's own checker: a reader on the new schema reads
records written with an old one (replays of old topic data), and a reader still on an old
schema reads records written with the new one (downstream services that upgrade later).
The earlier versions come from git history, plus the working tree against HEAD.
"""

from __future__ import annotations

import shutil
import subprocess

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from refstream.avro_codec import AvroCodec
from schemas import SCHEMA_DIR, load_schema, schema_names

REPO = SCHEMA_DIR.parent


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout


def _committed_versions(name: str) -> list[str]:
    path = f"schemas/{name}.avsc"
    commits = _git("log", "--format=%H", "--", path).split()
    return [_git("show", f"{commit}:{path}") for commit in commits]


def compatible(reader: avro.schema.Schema, writer: avro.schema.Schema) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    return result.compatibility is SchemaCompatibilityType.compatible


@pytest.mark.skipif(shutil.which("git") is None, reason="git history is needed")
@pytest.mark.parametrize("name", schema_names())
def test_schema_is_fully_compatible_with_every_committed_version(name: str) -> None:
    current = load_schema(name)
    for text in _committed_versions(name):
        old = avro.schema.parse(text)
        assert compatible(current, old), f"{name}: new schema cannot read old records"
        assert compatible(old, current), f"{name}: old readers cannot read new records"


def test_checker_rejects_an_incompatible_change() -> None:
    # Guards the guard: a new required field without default must be flagged.
    old = avro.schema.parse('{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}')
    new = avro.schema.parse(
        '{"type":"record","name":"R","fields":[{"name":"a","type":"long"},'
        '{"name":"b","type":"string"}]}'
    )
    assert not compatible(new, old)
    assert compatible(old, new)


@pytest.mark.parametrize("name", schema_names())
def test_schema_has_a_doc_on_every_field(name: str) -> None:
    schema = load_schema(name)
    missing = [field.name for field in schema.fields if not field.doc]
    assert not missing, f"{name}: fields without doc: {missing}"


def test_codec_refuses_a_value_of_another_schema() -> None:
    names = schema_names()
    if len(names) < 2:
        pytest.skip("needs two schemas")
    first, second = AvroCodec.for_schema(names[0]), AvroCodec.for_schema(names[1])
    with pytest.raises(ValueError, match="another schema"):
        second.decode(first.header + b"\x00")
