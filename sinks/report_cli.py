"""`refstream report NAME`: where the report is read from, and how it is printed.

- A server DSN (http/https): query the server directly, read-only.
- Embedded (chdb://): ask the running sink's query API; when nothing answers there, no
  sink owns the folder, so open it here, read-only. If the folder is owned anyway (a sink
  without its API), say so instead of waiting.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from refstream.settings import ENV_PREFIX, Secret, Settings, SinkSettings
from sinks.clickhouse import ClickHouseError, EngineBusyError, connect, engine_folder
from sinks.reports import (
    REPORTS,
    ReportError,
    ReportResult,
    format_table,
    get_report,
    run_report,
    validate_params,
)

# CLI option (argparse dest) -> report parameter.
OPTION_PARAMS = {
    "limit": "limit",
    "mode": "mode",
    "currency": "currency",
    "referral_code": "referral_code",
    "since": "since",
    "until": "until",
    "attribution": "attribution",
}
_API_TIMEOUT_S = 120


class ReportUnavailableError(RuntimeError):
    """No way to read the data right now; the message says why and what to do."""


def query_api_url(sink: SinkSettings) -> str:
    return f"http://{sink.query_api_host}:{sink.query_api_port}"


def fetch_via_api(
    base_url: str, name: str, params: dict[str, str], token: Secret | None = None
) -> ReportResult | None:
    """The report from a query API, or None when nothing listens at `base_url`."""
    url = f"{base_url}/reports/{urllib.parse.quote(name)}?{urllib.parse.urlencode(params)}"
    headers = {} if token is None else {"Authorization": f"Bearer {token.value}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - our own http URL
    try:
        with urllib.request.urlopen(request, timeout=_API_TIMEOUT_S) as response:  # noqa: S310
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        if exc.code in (400, 404):
            raise ReportError(message) from None
        if exc.code == 401:
            raise ReportUnavailableError(
                f"query API at {base_url} refused the request ({message}): set "
                f"{ENV_PREFIX}QUERY_API_TOKEN to the sink's token"
            ) from None
        raise ReportUnavailableError(f"query API at {base_url} failed: {message}") from None
    except (urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ConnectionRefusedError):
            return None
        raise ReportUnavailableError(f"query API at {base_url} did not answer: {reason}") from None
    return ReportResult(body["report"], body["params"], body["columns"], body["rows"])


def fetch_direct(sink: SinkSettings, name: str, params: dict[str, str]) -> ReportResult:
    if sink.embedded and not engine_folder(sink).is_dir():
        raise ReportUnavailableError(
            f"no ClickHouse data at {sink.clickhouse_target}: run `refstream sink` first"
        )
    try:
        client = connect(sink, readonly=True)
    except EngineBusyError as exc:
        raise ReportUnavailableError(
            f"{exc}, and no query API answers at {query_api_url(sink)} "
            "(is the sink running with --no-query-api or another REFSTREAM_QUERY_API_PORT?)"
        ) from None
    except ClickHouseError as exc:
        raise ReportUnavailableError(str(exc)) from None
    try:
        return run_report(client, name, params)
    except ReportError:
        raise
    except Exception as exc:  # noqa: BLE001 - an engine error becomes a one-line message
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "UNKNOWN_TABLE" in first_line or "does not exist" in first_line:
            raise ReportUnavailableError(
                f"the schema is missing at {sink.clickhouse_target}: run `refstream sink` first"
            ) from None
        raise ReportUnavailableError(f"report {name} failed: {first_line}") from None
    finally:
        client.close()


def fetch(sink: SinkSettings, name: str, params: dict[str, str]) -> ReportResult:
    validate_params(get_report(name), params)  # fail fast, before any I/O
    if sink.embedded:
        result = fetch_via_api(query_api_url(sink), name, params, sink.query_api_token)
        if result is not None:
            return result
    return fetch_direct(sink, name, params)


def main(settings: Settings, args: argparse.Namespace) -> int:
    if args.name == "list":
        for report in REPORTS.values():
            options = ", ".join(f"--{p.name.replace('_', '-')}" for p in report.params)
            print(f"{report.name:26} {report.description}\n{'':26} options: {options}")
        return 0
    params = {
        param: str(getattr(args, option))
        for option, param in OPTION_PARAMS.items()
        if getattr(args, option, None) is not None
    }
    try:
        result = fetch(settings.sink, args.name, params)
    except ReportError as exc:
        print(f"refstream report: {exc}", file=sys.stderr)
        return 2
    except ReportUnavailableError as exc:
        print(f"refstream report: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_table(result))
    return 0
