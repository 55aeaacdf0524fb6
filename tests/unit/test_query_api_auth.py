"""The report API's bearer token: settings (required beyond loopback, never shown), the
401 answers, and the report CLI sending it."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from refstream.settings import Secret, SettingsError, load_settings
from sinks.query_api import build_app, start_query_api
from sinks.report_cli import fetch_via_api
from sinks.reports import ReportResult

TOKEN = "tok_" + "s3cr3t" * 4
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the tests check is refused


def _run(name: str, params: dict[str, str]) -> ReportResult:
    return ReportResult(name, params, ["n"], [[1]])


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "reports.internal", "::"])  # noqa: S104
def test_beyond_loopback_without_a_token_does_not_start(host: str) -> None:
    with pytest.raises(SettingsError, match="REFSTREAM_QUERY_API_TOKEN"):
        load_settings({"REFSTREAM_QUERY_API_HOST": host})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host: str) -> None:
    assert load_settings({"REFSTREAM_QUERY_API_HOST": host}).sink.query_api_token is None


def test_the_token_is_a_secret_and_short_ones_are_refused_without_echo() -> None:
    settings = load_settings(
        {"REFSTREAM_QUERY_API_HOST": ALL_INTERFACES, "REFSTREAM_QUERY_API_TOKEN": TOKEN}
    )
    assert settings.sink.query_api_token == Secret(TOKEN)
    assert TOKEN not in repr(settings)
    with pytest.raises(SettingsError, match="REFSTREAM_QUERY_API_TOKEN") as excinfo:
        load_settings({"REFSTREAM_QUERY_API_TOKEN": "short-tok"})
    assert "short-tok" not in str(excinfo.value)


async def test_start_refuses_a_public_bind_without_a_token() -> None:
    with pytest.raises(ValueError, match="REFSTREAM_QUERY_API_TOKEN"):
        await start_query_api(Any, "0.0.0.0", 0)  # type: ignore[arg-type]  # noqa: S104


@pytest.mark.parametrize(
    "authorization",
    [None, "", f"Bearer {TOKEN}x", f"bearer{TOKEN}", f"Basic {TOKEN}", "Bearer ", TOKEN],
)
async def test_requests_without_the_token_get_401_json(authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with TestClient(TestServer(build_app(_run, Secret(TOKEN)))) as client:
        for path in ("/reports", "/reports/balances", "/nope"):
            response = await client.get(path, headers=headers)
            assert response.status == 401
            body = await response.json()
            assert "bearer" in body["error"] and TOKEN not in str(body)
        assert (await client.get("/health", headers=headers)).status == 200


async def test_the_token_opens_the_api() -> None:
    async with TestClient(TestServer(build_app(_run, Secret(TOKEN)))) as client:
        response = await client.get("/reports", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status == 200


async def test_the_report_cli_sends_the_token() -> None:
    runner = web.AppRunner(build_app(lambda n, p: _run(n, p), Secret(TOKEN)))
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        base = f"http://127.0.0.1:{port}"
        result = await asyncio.to_thread(fetch_via_api, base, "balances", {}, Secret(TOKEN))
        assert result is not None and result.rows == [[1]]
        with pytest.raises(RuntimeError, match="REFSTREAM_QUERY_API_TOKEN"):
            await asyncio.to_thread(fetch_via_api, base, "balances", {}, None)
    finally:
        await runner.cleanup()
