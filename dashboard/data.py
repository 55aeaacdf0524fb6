"""Reading for the pages: the named reports (sinks/reports.py) and a few read-only queries
that no report answers yet (each names why), one at a time on the report API's readonly
client, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.reports import QUERY_SETTINGS, REPORTS, ReportResult

RunReport = Callable[[str, dict[str, str]], ReportResult]
Row = Mapping[str, Any]
MAX_ROWS = 10_000  # the reports' own limit


class Data:
    def __init__(self, run: RunReport, client: Client | None) -> None:
        self._run = run
        self._client = client
        self._lock = asyncio.Lock()  # chDB queries share two cores with the pipeline

    @staticmethod
    def has_report(name: str) -> bool:
        return name in REPORTS

    async def report(self, name: str, **params: str | int) -> list[Row]:
        raw = {key: str(value) for key, value in params.items() if value != ""}
        async with self._lock:
            result = await asyncio.to_thread(self._run, name, raw)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]

    async def query(self, sql: str, parameters: Mapping[str, Any]) -> list[Row]:
        """A read-only query of this package; user input only as bound parameters."""
        if self._client is None:
            return []
        client = self._client

        def run() -> list[Row]:
            result = client.query(sql, parameters=dict(parameters), settings=QUERY_SETTINGS)
            return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

        async with self._lock:
            return await asyncio.to_thread(run)
