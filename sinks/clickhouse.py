"""ClickHouse clients from one DSN: the embedded engine (chDB) or a server over HTTP.

clickhouse-connect serves both: `get_client(dsn="chdb:///folder")` runs the engine inside
this process, `get_client(dsn="http://...")` talks to a server. Everything above this module
uses the returned `Client` and never learns which one it got.

Facts of the embedded engine (chDB 26.9, measured; see docs/ANALYTICS.md):
- one process per engine folder: a second process fails (stderr says "Cannot lock file
  .../status"; the exception only "Error initializing EmbeddedServer");
- inside one process, several clients on the same folder share the engine (each has its own
  session and lock), and a folder can be reopened after every client on it was closed.

Errors: `ClickHouseError` is the one type callers catch; a third-party error is translated
at this boundary (`raise ClickHouseError(...) from exc`), with the DSN's credentials left out.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from refstream.settings import SinkSettings

# Readonly level 2 refuses every write and DDL statement but still lets a query carry its
# own settings (max_execution_time, result limits); level 1 would refuse those too.
READONLY_SETTINGS: dict[str, Any] = {"readonly": 2}


class ClickHouseError(RuntimeError):
    """ClickHouse refused or could not be reached; the message never holds credentials."""


class EngineBusyError(ClickHouseError):
    """The embedded engine folder is owned by another process (a running sink)."""


def connect(sink: SinkSettings, *, readonly: bool = False) -> Client:
    """A client on the configured target; `readonly` ones cannot modify anything."""
    settings = dict(READONLY_SETTINGS) if readonly else {}
    # HTTP transport options mean nothing to the embedded engine (it would warn about them).
    transport: dict[str, Any] = {} if sink.embedded else {"send_receive_timeout": 300}
    try:
        return clickhouse_connect.get_client(
            dsn=sink.clickhouse_dsn.value, settings=settings, **transport
        )
    except Exception as exc:  # clickhouse-connect and chdb raise assorted types
        message = _describe(exc)
        if sink.embedded and engine_folder_locked(engine_folder(sink)):
            raise EngineBusyError(
                f"the ClickHouse folder {sink.clickhouse_target} is in use by another process"
            ) from exc
        raise ClickHouseError(
            f"cannot open ClickHouse at {sink.clickhouse_target}: {message}"
        ) from exc


def engine_folder(sink: SinkSettings) -> Path:
    return Path(urlsplit(sink.clickhouse_dsn.value).path)


def engine_folder_locked(folder: Path) -> bool:
    """True when another process runs the engine in `folder`.

    The engine holds an exclusive flock on `folder/status` while it runs; chDB reports a
    failed open only as "Error initializing EmbeddedServer" (the lock message goes to
    stderr), so the lock itself is asked. A shared, non-blocking probe that is released at
    once: it can delay nobody.
    """
    try:
        fd = os.open(folder / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _describe(exc: BaseException) -> str:
    # The first line of ClickHouse's message names the error; the rest is a stack trace.
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
