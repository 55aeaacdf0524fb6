"""Every schema stays compatible with each earlier committed version of itself.

'Compatible' is FULL compatibility with avro's own checker: a reader on the new schema reads
records written with an old one (replays of old topic data), and a reader still on an old
schema reads records written with the new one (downstream services that upgrade later).
The earlier versions come from git history, plus the working tree against HEAD. Without
that history (no git, a shallow clone, a schema git knows nothing of) the test fails: a
check against an empty history would pass vacuously. CI clones main in full.

The codec reads every committed version (schemas/history/, writer-to-reader resolution):
the history directory must hold each of them, and a record written by each old version
must decode, with the new fields at their defaults.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import avro.schema
import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from refstream.avro_codec import AvroCodec, AvroDecodeError
from schemas import SCHEMA_DIR, load_schema, schema_names
from schemas.history import committed_versions, version_path

REPO = SCHEMA_DIR.parent


def _git(*args: str, repo: Path = REPO) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def _committed_versions(name: str, repo: Path = REPO) -> list[str]:
    """Every committed text of schemas/<name>.avsc; fails when git cannot know them."""
    assert shutil.which("git"), "git is needed: the check compares against git history"
    shallow = _git("rev-parse", "--is-shallow-repository", repo=repo).strip()
    assert shallow == "false", (
        "shallow clone: the schema history is incomplete; fetch it (git fetch --unshallow)"
    )
    path = f"schemas/{name}.avsc"
    commits = _git("log", "--format=%H", "--", path, repo=repo).split()
    tracked = _git("ls-files", "--", path, repo=repo).strip()
    assert commits or not tracked, f"{path} is tracked but git shows no commit of it"
    return [_git("show", f"{commit}:{path}", repo=repo) for commit in commits]


def compatible(reader: avro.schema.Schema, writer: avro.schema.Schema) -> bool:
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    return result.compatibility is SchemaCompatibilityType.compatible


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


@pytest.mark.parametrize("name", schema_names())
def test_history_holds_every_committed_version_and_the_current_one(name: str) -> None:
    missing = [
        str(version_path(name, avro.schema.parse(text)))
        for text in [*_committed_versions(name), (SCHEMA_DIR / f"{name}.avsc").read_text()]
        if not version_path(name, avro.schema.parse(text)).exists()
    ]
    assert not missing, f"run `python -m schemas.history` and commit: {missing}"


def _sample(schema: avro.schema.RecordSchema) -> dict[str, Any]:
    """A record of `schema` with a value of the right type in every field."""
    values = {"string": "x", "long": 7, "int": 3, "boolean": True, "bytes": b"b", "null": None}

    def value_of(avro_type: Any) -> Any:
        if isinstance(avro_type, list):
            non_null = [t for t in avro_type if t != "null"]
            return value_of(non_null[0]) if non_null else None
        if isinstance(avro_type, dict):
            kind = avro_type["type"]
            if kind == "enum":
                return avro_type["symbols"][0]
            if kind == "array":
                return [value_of(avro_type["items"])]
            if kind == "map":
                return {"k": value_of(avro_type["values"])}
            if kind == "record":
                return {f["name"]: value_of(f["type"]) for f in avro_type["fields"]}
            return value_of(kind)
        return values[avro_type]

    return value_of(json.loads(str(schema)))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", schema_names())
def test_codec_reads_records_of_every_committed_version(name: str) -> None:
    current = AvroCodec.for_schema(name)
    current_fields = {f.name: f for f in current.schema.fields}
    for old in committed_versions(name).values():
        record = _sample(old)
        decoded = current.decode(AvroCodec(old).encode(record))
        for field_name, field in current_fields.items():
            want = record[field_name] if field_name in record else field.default
            assert decoded[field_name] == want, f"{name}.{field_name}"


def test_codec_resolves_an_added_field_to_its_default() -> None:
    old = avro.schema.parse('{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}')
    new = avro.schema.parse(
        '{"type":"record","name":"R","fields":[{"name":"a","type":"long"},'
        '{"name":"b","type":["null","string"],"default":null}]}'
    )
    assert isinstance(old, avro.schema.RecordSchema) and isinstance(new, avro.schema.RecordSchema)
    written = AvroCodec(old).encode({"a": 5})
    assert AvroCodec(new, (old,)).decode(written) == {"a": 5, "b": None}
    # Without the old version among its writers, the reader refuses the record.
    with pytest.raises(AvroDecodeError, match="another schema"):
        AvroCodec(new).decode(written)


def test_a_shallow_clone_fails_the_check_instead_of_passing_vacuously(tmp_path: Path) -> None:
    clone = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{REPO}", str(clone)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(AssertionError, match="shallow clone"):
        _committed_versions("stripe_event", repo=clone)
