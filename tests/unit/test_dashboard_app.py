"""The dashboard mounted into the report API's app: the API keeps its bearer token, the
dashboard takes its logins or that token, and bad input gets a JSON 4xx."""

from __future__ import annotations

import base64

from aiohttp.test_utils import TestClient, TestServer

from dashboard.mount import mount_dashboard
from refstream.settings import load_settings
from sinks.query_api import build_app
from sinks.reports import ReportResult

TOKEN = "tok_" + "k" * 20
LOGIN = "Basic " + base64.b64encode(b"ada:ada-password-000001").decode()


def _run(name: str, params: dict[str, str]) -> ReportResult:
    return ReportResult(name, params, ["n"], [[1]])


def _app(env: dict[str, str]) -> TestServer:
    settings = load_settings(env)
    app = build_app(_run, settings.sink.query_api_token)
    mount_dashboard(app, None, settings)  # type: ignore[arg-type]  # no query reaches it
    return TestServer(app)


async def test_the_api_keeps_its_token_and_the_dashboard_takes_logins_or_the_token() -> None:
    env = {
        "REFSTREAM_QUERY_API_TOKEN": TOKEN,
        "REFSTREAM_DASHBOARD_USERS": "ada:ada-password-000001",
    }
    async with TestClient(_app(env)) as client:
        assert (await client.get("/reports", headers={"Authorization": LOGIN})).status == 401
        bad_mode = "/dashboard/referrers/x?currency=usd&mode=sandbox"
        for auth in (LOGIN, f"Bearer {TOKEN}"):
            response = await client.get(bad_mode, headers={"Authorization": auth})
            assert response.status == 400
            assert "mode" in (await response.json())["error"]
        response = await client.get(bad_mode)
        assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
        assert (await client.get("/dashboard/static/dashboard.css")).status == 200


async def test_without_logins_reads_are_local_and_writes_refused_with_the_reason() -> None:
    async with TestClient(_app({})) as client:
        response = await client.get("/dashboard/referrers/x/statement.csv?currency=usdx&mode=test")
        assert response.status == 400 and "currency" in (await response.json())["error"]
        response = await client.post("/dashboard/payouts", data={"mode": "test"})
        assert response.status == 403
        assert "REFSTREAM_DASHBOARD_USERS" in (await response.json())["error"]


async def test_a_payout_without_a_referrer_is_refused_before_anything_is_sent() -> None:
    env = {"REFSTREAM_DASHBOARD_USERS": "ada:ada-password-000001"}
    async with TestClient(_app(env)) as client:
        response = await client.post(
            "/dashboard/payouts", headers={"Authorization": LOGIN},
            data={"mode": "test", "currency": "usd", "payout_id": "p1", "reward_id": "r1"},
        )  # fmt: skip
        assert response.status == 400
        assert "referral_code" in (await response.json())["error"]
