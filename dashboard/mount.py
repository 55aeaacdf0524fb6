"""The one hook the report API calls: `mount_dashboard(app, client)` adds the dashboard
under PREFIX to the query API's aiohttp app (sinks/query_api.py start_query_api).

The hook receives only the readonly client, so that the sink's modules need no other
change; the dashboard reads its settings (Kafka for programs and payouts, the logins,
the token) with `load_settings()`, from the same environment the process started with.
"""

from __future__ import annotations

from aiohttp import web
from clickhouse_connect.driver.client import Client

from dashboard import PREFIX
from dashboard.auth import AuthConfig
from dashboard.data import Data
from dashboard.views import build_dashboard
from refstream.settings import Settings, load_settings
from sinks.reports import ReportResult, run_report


def mount_dashboard(app: web.Application, client: Client, settings: Settings | None = None
                    ) -> None:  # fmt: skip
    settings = settings or load_settings()
    sink = settings.sink

    def run(name: str, params: dict[str, str]) -> ReportResult:
        return run_report(client, name, params)

    auth = AuthConfig(token=sink.query_api_token, users=sink.dashboard_users)
    app.add_subapp(PREFIX, build_dashboard(Data(run, client), settings, auth))
