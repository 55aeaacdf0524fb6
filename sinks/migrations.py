"""Versioned ClickHouse schema: sinks/ddl/NNNN_name.sql, applied in order at start.

Each applied version is recorded in `refstream_migrations` with the checksum of its file.
Safe to apply twice and from two processes at once, because:
- every statement is idempotent (CREATE TABLE/VIEW IF NOT EXISTS, CREATE OR REPLACE, ...;
  `check_idempotent` refuses any other kind, and a unit test runs it on every file), so a
  version applied by a concurrent process, or half-applied before a crash, is re-run
  harmlessly, and a run that tripped over a concurrent one is retried;
- the record table is a ReplacingMergeTree keyed by version, so two records collapse.
An applied migration must never be edited: a checksum mismatch stops the start-up with a
message naming the file (add a new version instead).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

DDL_DIR = Path(__file__).resolve().parent / "ddl"
MIGRATIONS_TABLE = "refstream_migrations"

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
_IDEMPOTENT = re.compile(
    r"^(CREATE (TABLE|DATABASE|VIEW|MATERIALIZED VIEW|FUNCTION) IF NOT EXISTS"
    r"|CREATE OR REPLACE (VIEW|FUNCTION)"
    r"|ALTER TABLE \S+ (ADD|DROP|MODIFY) (COLUMN|INDEX) IF (NOT )?EXISTS"
    r"|ALTER TABLE \S+ MODIFY SETTING"  # sets a value: the same again changes nothing
    r"|DROP (TABLE|VIEW) IF EXISTS)\b",
    re.IGNORECASE,
)


class MigrationError(RuntimeError):
    """The schema files or the recorded history cannot be applied safely."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    """Statements end with ';' at the end of a line; comment-only chunks are dropped."""
    statements = []
    for chunk in _STATEMENT_END.split(sql):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--"))
        if code.strip():
            statements.append(code.strip())
    return statements


def check_idempotent(migration: Migration) -> None:
    for statement in migration.statements:
        if not _IDEMPOTENT.match(statement):
            first_line = statement.splitlines()[0]
            raise MigrationError(
                f"{migration.version:04d}_{migration.name}.sql: statement is not idempotent: "
                f"{first_line!r} (use IF NOT EXISTS / OR REPLACE)"
            )


def load_migrations(ddl_dir: Path = DDL_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(ddl_dir.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {ddl_dir}")
    for migration in migrations:
        check_idempotent(migration)
    return migrations


def applied_versions(client: Client) -> dict[int, str]:
    """version -> checksum of what this database has applied."""
    # A constant table name, no input: nothing to inject.
    result = client.query(f"SELECT version, checksum FROM {MIGRATIONS_TABLE} FINAL")  # noqa: S608
    return {int(version): str(checksum) for version, checksum in result.result_rows}


def apply_migrations(client: Client, ddl_dir: Path = DDL_DIR, attempts: int = 5) -> list[str]:
    """Bring the schema up to date; returns the names of the versions applied now.

    Two processes migrating at once can trip over each other (a CREATE OR REPLACE VIEW is
    briefly absent for a view built on it); since every statement is idempotent, a failed
    run is simply run again, a few times.
    """
    migrations = load_migrations(ddl_dir)
    for attempt in range(1, attempts + 1):
        try:
            return _apply(client, migrations)
        except MigrationError:
            raise
        except Exception as exc:
            if attempt == attempts:
                raise
            log.warning("migration_retry", extra={"attempt": attempt, "error": str(exc)[:300]})
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _apply(client: Client, migrations: list[Migration]) -> list[str]:
    client.command(
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, "
        "checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = applied_versions(client)
    applied = []
    for migration in migrations:
        label = f"{migration.version:04d}_{migration.name}"
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise MigrationError(
                    f"{label}.sql changed after it was applied; add a new migration instead"
                )
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            MIGRATIONS_TABLE,
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(label)
        log.info("migration_applied", extra={"migration": label})
    return applied
