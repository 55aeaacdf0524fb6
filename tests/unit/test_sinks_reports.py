"""Report parameters, SQL placeholders and the query API's HTTP contract (engine faked)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sinks.query_api import build_app
from sinks.reports import (
    REPORTS,
    ReportError,
    ReportResult,
    format_table,
    get_report,
    validate_params,
)


@pytest.mark.parametrize("report", REPORTS.values(), ids=lambda r: r.name)
def test_every_placeholder_is_a_declared_parameter(report: Any) -> None:
    placeholders = set(re.findall(r"\{(\w+):\w+\}", report.sql))
    assert placeholders == {p.name for p in report.params}
    assert "{{" not in report.sql and "}}" not in report.sql
    required = {p.name: "alice" for p in report.params if p.required}
    validate_params(report, required)  # the defaults validate


def test_parameters_are_parsed_and_defaulted() -> None:
    report = get_report("referrer_rewards")
    values = validate_params(report, {"currency": "USD", "limit": "5", "referral_code": "alice"})
    assert values == {
        "limit": 5,
        "mode": "all",
        "currency": "usd",
        "referral_code": "alice",
        "since": "1970-01-01",
        "until": "2105-12-31",
    }


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"limit": "0"}, "limit must be an integer from 1 to 10000"),
        ({"limit": "5; DROP TABLE rewards"}, "limit"),
        ({"mode": "prod"}, "mode must be live, test or all"),
        ({"currency": "us dollars"}, "currency must be a 3-letter"),
        ({"since": "2026-13-01"}, "since must be a date"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "since must not be after until"),
        ({"referral_code": "x" * 201}, "referral_code must be 1 to 200"),
        ({"sql": "SELECT 1"}, "takes no parameter sql"),
    ],
)
def test_bad_parameters_are_refused_by_name(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ReportError, match=re.escape(message)):
        validate_params(get_report("referrer_rewards"), raw)


def test_an_unknown_report_names_the_known_ones() -> None:
    with pytest.raises(ReportError, match="unknown report 'nope'; reports: top_referrers_revenue"):
        get_report("nope")


def test_table_format_aligns_numbers_right() -> None:
    result = ReportResult("r", {}, ["code", "net_minor"], [["alice", 2500], ["bob", -600]])
    assert format_table(result).splitlines() == [
        "code   net_minor",
        "-----  ---------",
        "alice       2500",
        "bob         -600",
        "(2 rows)",
    ]


def _fake_run(name: str, params: dict[str, str]) -> ReportResult:
    if params.get("boom"):
        raise RuntimeError("secret internals")
    values = validate_params(get_report(name), params)
    return ReportResult(name, values, ["x"], [[1]])


@pytest.fixture
async def api() -> Any:
    async with TestClient(TestServer(build_app(_fake_run))) as client:
        yield client


async def test_a_report_is_served_as_json(api: TestClient) -> None:
    response = await api.get("/reports/balances", params={"referral_code": "alice"})
    assert response.status == 200
    body = await response.json()
    assert body["report"] == "balances" and body["rows"] == [[1]]
    assert body["params"]["referral_code"] == "alice"


async def test_the_catalogue_lists_every_report(api: TestClient) -> None:
    body = await (await api.get("/reports")).json()
    assert [r["name"] for r in body["reports"]] == list(REPORTS)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_writes_are_refused_with_405(api: TestClient, method: str) -> None:
    response = await api.request(method, "/reports/balances", data="INSERT INTO rewards VALUES")
    assert response.status == 405
    assert "read-only" in (await response.json())["error"]


async def test_malformed_input_gets_400_json(api: TestClient) -> None:
    response = await api.get("/reports/balances", params={"limit": "lots"})
    assert response.status == 400
    assert (await response.json()) == {
        "error": "parameter limit must be an integer from 1 to 10000"
    }
    response = await api.get("/reports/balances?mode=live&mode=test")
    assert response.status == 400
    assert "given 2 times" in (await response.json())["error"]


async def test_unknown_reports_and_paths_get_404_json(api: TestClient) -> None:
    assert (await api.get("/reports/drop_all")).status == 404
    response = await api.get("/query?sql=SELECT+1")
    assert response.status == 404
    assert "error" in await response.json()


async def test_internal_errors_are_opaque(api: TestClient) -> None:
    # `boom` is not a parameter of any report, but the fake runner fails before validating.
    response = await api.get("/reports/balances", params={"boom": "1"})
    assert response.status == 500
    assert (await response.json()) == {"error": "internal error"}


def test_a_required_parameter_must_be_given() -> None:
    with pytest.raises(ReportError, match="referrer_statement needs parameter referral_code"):
        validate_params(get_report("referrer_statement"), {})


@pytest.mark.parametrize("mode", ["live", "test", "all", "test@acct_1Abc", "live@acct_9"])
def test_the_statement_takes_a_mode_or_one_connect_account(mode: str) -> None:
    values = validate_params(get_report("referrer_statement"), {"referral_code": "a", "mode": mode})
    assert values["mode"] == mode


@pytest.mark.parametrize("mode", ["prod", "test@", "test@acct_", "test@cus_1", "live@acct_1;x"])
def test_the_statement_refuses_other_modes(mode: str) -> None:
    with pytest.raises(ReportError, match="mode must be live, test, all, or"):
        validate_params(get_report("referrer_statement"), {"referral_code": "a", "mode": mode})
