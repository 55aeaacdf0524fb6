"""The dashboard in a real browser (headless Chromium through Playwright) against a
pipeline fed by the simulator: the numbers on each page equal the named reports, a
referrer's statement downloads as the CSV the page shows, a program edited in the form
is validated by the CLI's parser and, once applied, decides a later invoice; keyboard
navigation works and text contrast meets WCAG AA. Screenshots land in the artifacts
folder printed at the end of the run."""

from __future__ import annotations

import base64
import csv
import io
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from playwright.sync_api import Browser, Page

from refstream import topics
from simulator.scenario import ScenarioConfig, generate
from simulator.stripe_factory import DAY, DEFAULT_START
from streams.ledger.programs import ProgramError, parse_program
from streams.worker_programs import read_programs
from tests.browser.conftest import PASSWORD, USER, Running, blocking
from tests.support.pipeline import half_up
from tests.support.processes import read_topic, wait_until

pytestmark = pytest.mark.e2e

CELLS_JS = """(selector) => Array.from(document.querySelectorAll(selector)).map(table => ({
  currency: table.dataset.currency,
  cells: Array.from(table.querySelectorAll('td[data-minor]')).map(td => ({
    row: td.closest('tr').dataset.month || td.closest('tr').dataset.code || '',
    key: td.dataset.key, minor: Number(td.dataset.minor), text: td.textContent.trim()}))}))"""

# Every element with its own text: its colour, the first opaque background behind it, and
# whether WCAG counts it as large text (24px, or 18.66px bold).
CONTRAST_JS = """() => {
  const parse = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!own || style.visibility === 'hidden' || el.offsetParent === null) continue;
    if (el.getBoundingClientRect().right < 0) continue;  // the off-screen skip link
    let bg = null;
    for (let p = el; p; p = p.parentElement) {
      const c = parse(getComputedStyle(p).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) { bg = c.slice(0, 3); break; }
    }
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    out.push({tag: el.tagName, text: el.textContent.trim().slice(0, 40),
              fg: parse(style.color).slice(0, 3), bg: bg || [255, 255, 255],
              large: size >= 24 || (bold && size >= 18.66)});
  }
  return out;
}"""


def luminance(rgb: list[float]) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: list[float], bg: list[float]) -> float:
    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def open_page(browser: Browser, url: str) -> Page:
    context = browser.new_context(
        http_credentials={"username": USER, "password": PASSWORD},
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    page = context.new_page()
    page.goto(url)
    return page


def tables(page: Page, name: str) -> dict[str, list[dict[str, Any]]]:
    found = page.evaluate(CELLS_JS, f'table[data-table="{name}"]')
    return {t["currency"]: t["cells"] for t in found}


def modes_of(running: Running) -> list[str]:
    return sorted({r["mode"] for r in running.report("referrer_rewards")})


def test_overview_numbers_equal_the_reports(running: Running, browser: Browser) -> None:
    modes = modes_of(running)
    assert any("@acct_" in m for m in modes), "the scenario must include a Connect account"
    for mode in modes:
        page = open_page(browser, f"{running.base}/dashboard/?mode={mode}")
        assert page.locator("h1").first.inner_text().startswith("Overview")
        assert page.locator("#current-mode").inner_text() == mode
        page.screenshot(path=running.artifacts / f"overview-{mode}.png", full_page=True)
        base = mode.split("@")[0]
        rewards = [r for r in running.report("referrer_rewards", mode=base) if r["mode"] == mode]
        split = [r for r in running.report("revenue_split", mode=base) if r["mode"] == mode]
        shown = tables(page, "rewards")
        # A currency with revenue but no reward may show a table of zeros; none is missing.
        assert {r["currency"] for r in rewards} <= set(shown)
        for currency, cells in shown.items():
            mine = [r for r in rewards if r["currency"] == currency]
            for key in ("rewards_minor", "clawbacks_minor", "net_minor"):
                # The months shown cover the whole (three-month) history: they add up to
                # the all-time totals of the report, within this currency only.
                assert sum(c["minor"] for c in cells if c["key"] == key) == sum(
                    int(r[key]) for r in mine
                ), (mode, currency, key)
        revenue = tables(page, "revenue")
        for row in split:
            cells = revenue[row["currency"]]
            for key in ("referred_minor", "organic_minor"):
                total = sum(c["minor"] for c in cells if c["key"] == key)
                assert total == int(row[key]), (mode, row["currency"], key)
        top = [r for r in running.report("top_referrers_net_reward", mode=base)
               if r["mode"] == mode]  # fmt: skip
        for currency, cells in tables(page, "top_net").items():
            want = [r for r in top if r["currency"] == currency][:10]
            got = [(c["row"], c["minor"]) for c in cells if c["key"] == "net_minor"]
            assert got == [(r["referral_code"], int(r["net_minor"])) for r in want]
        # Every currency is its own chart, drawn by the vendored Chart.js.
        drawn = page.evaluate(
            "() => Array.from(document.querySelectorAll('canvas[data-chart]'))"
            ".map(c => !!Chart.getChart(c))"
        )
        assert drawn and all(drawn)
        page.context.close()


def test_referrer_balances_statement_and_csv(running: Running, browser: Browser) -> None:
    balances = [r for r in running.report("balances", mode="test") if r["mode"] == "test"]
    page = open_page(browser, f"{running.base}/dashboard/referrers?mode=test")
    page.screenshot(path=running.artifacts / "referrers-test.png", full_page=True)
    shown = tables(page, "balances")
    for row in balances:
        cells = {c["key"]: c for c in shown[row["currency"]] if c["row"] == row["referral_code"]}
        for key in ("pending_minor", "payable_minor", "paid_minor", "clawed_back_minor",
                    "net_minor"):  # fmt: skip
            assert cells[key]["minor"] == int(row[key]), (row["referral_code"], key)
    # The referrer with a clawback, if any: its statement has negative entries too.
    row = max(balances, key=lambda r: (int(r["clawed_back_minor"]) > 0, r["referral_code"]))
    page.goto(f"{running.base}/dashboard/referrers?mode=test&q={row['referral_code']}")
    page.get_by_role("link", name=row["referral_code"], exact=True).first.click()
    page.wait_for_url("**/referrers/*")
    if f"currency={row['currency']}" not in page.url:  # the link of another currency
        page.goto(f"{running.base}/dashboard/referrers/{row['referral_code']}"
                  f"?currency={row['currency']}&mode=test")  # fmt: skip
    page.screenshot(path=running.artifacts / "statement.png", full_page=True)
    amounts = page.locator('td[data-key="amount_minor"]').evaluate_all(
        "tds => tds.map(td => Number(td.dataset.minor))"
    )
    balance = page.locator('td[data-key="running_balance_minor"]').evaluate_all(
        "tds => tds.map(td => Number(td.dataset.minor))"
    )
    assert amounts and sum(amounts) == balance[-1]
    # Nothing was paid out yet, so what is owed is the referrer's net.
    assert balance[-1] == int(row["net_minor"])
    with page.expect_download() as download:
        page.locator("#csv").click()
    text = download.value.path().read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["amount_minor"]) for r in rows] == amounts
    assert [int(r["running_balance_minor"]) for r in rows] == balance
    page.context.close()


PAGES = ("/dashboard/?mode=test", "/dashboard/referrers?mode=test", "/dashboard/programs",
         "/dashboard/programs/sim-tiered", "/dashboard/payouts?mode=test")  # fmt: skip


def test_keyboard_navigation_and_contrast(running: Running, browser: Browser) -> None:
    page = open_page(browser, f"{running.base}{PAGES[0]}")
    for path in PAGES:
        response = page.goto(f"{running.base}{path}")
        assert response is not None and response.status == 200, path
        low = [
            (e["tag"], e["text"], round(contrast(e["fg"], e["bg"]), 2))
            for e in page.evaluate(CONTRAST_JS)
            if contrast(e["fg"], e["bg"]) < (3.0 if e["large"] else 4.5)
        ]
        assert not low, f"{path}: text below WCAG AA contrast: {low}"
    page.goto(f"{running.base}/dashboard/?mode=test")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "the focused element shows no focus ring"
    for _ in range(10):  # to the Programs link, by keyboard only
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Programs":
            break
    else:
        pytest.fail("Tab never reached the Programs link")
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard/programs")
    assert page.get_by_role("heading", name="Programs in force").is_visible()
    page.context.close()


def test_writes_need_a_login_and_the_same_origin(running: Running, browser: Browser) -> None:
    async def get(path: str) -> tuple[int, str, dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.get(running.base + path) as r:
            return r.status, r.headers.get("WWW-Authenticate", ""), await r.json()

    # Without a login: 401 with a JSON reason and the browser's basic-auth prompt.
    for path in ("/dashboard/", "/dashboard/programs", "/dashboard/referrers/x/statement.csv"):
        status, challenge, body = blocking(get(path))
        assert status == 401 and challenge.startswith("Basic") and "log in" in body["error"]

    async def post(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        url = f"{running.base}/dashboard/programs/sim-tiered"
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data={"rate": "1%"}, headers=headers) as response,
        ):
            return response.status, await response.json()

    login = basic(USER, PASSWORD)
    status, body = blocking(post({"Origin": "http://elsewhere.example",
                                     "Authorization": login}))  # fmt: skip
    assert status == 403 and "cross-site" in body["error"]
    status, body = blocking(post({"Authorization": basic(USER, "wrong")}))
    assert status == 401 and "error" in body
    assert blocking(read_programs(running.kafka))["sim-tiered"].version == 1


def test_payout_marks_payable_rewards_paid_whole(running: Running, browser: Browser) -> None:
    page = open_page(browser, f"{running.base}/dashboard/payouts?mode=test")
    page.screenshot(path=running.artifacts / "payouts-test.png", full_page=True)
    form = page.locator("form[data-payout]").first
    code, currency = str(form.get_attribute("data-payout")).split(":")
    due = int(str(form.locator('[data-key="due_minor"]').get_attribute("data-minor")))
    carry = int(str(form.locator('[data-key="carry_minor"]').get_attribute("data-minor")))
    standings = form.locator("td[data-minor]").evaluate_all(
        "tds => tds.map(td => Number(td.dataset.minor))"
    )
    before = running.report("balances", mode="test", referral_code=code, currency=currency)
    payout_id = str(form.locator('input[name="payout_id"]').input_value())
    form.get_by_role("button", name="Mark as paid").click()
    page.wait_for_url(f"**/dashboard/payouts/{payout_id}*")
    for _ in range(60):  # the worker decides, then the sink writes it
        if page.locator("#outcome").get_attribute("data-outcome") != "waiting":
            break
        page.wait_for_timeout(1000)
        page.reload()
    assert page.locator("#outcome").get_attribute("data-outcome") == "accepted", page.content()
    cash = page.locator('[data-key="cash_minor"]').get_attribute("data-minor")
    assert int(str(cash)) == due  # every reward was chosen: the cash shown before is paid
    page.screenshot(path=running.artifacts / "payout-accepted.png", full_page=True)
    page.context.close()

    def paid() -> list[dict[str, Any]]:
        rows = running.report("balances", mode="test", referral_code=code, currency=currency)
        return [r for r in rows if r["mode"] == "test"]

    (old,) = [r for r in before if r["mode"] == "test"]
    blocking(wait_until(lambda: int(paid()[0]["paid_minor"]) != int(old["paid_minor"]), 60, 1,
                        "the paid balance to move"))  # fmt: skip
    (now,) = paid()
    assert int(now["paid_minor"]) == int(old["paid_minor"]) + sum(standings)
    assert int(now["payable_minor"]) == int(old["payable_minor"]) - sum(standings)
    # Cash due: the rewards less the carry-over they settle (all of it, at most their sum).
    absorbed = min(carry, sum(standings)) if carry >= 0 else carry
    assert due == sum(standings) - absorbed


def test_program_edit_is_validated_applied_and_decides_a_later_invoice(
    running: Running, browser: Browser
) -> None:
    page = open_page(browser, f"{running.base}/dashboard/programs/sim-tiered")
    page.locator("#f-rate").fill("0.2")
    page.locator("#apply").click()
    shown = page.locator("#err-rate").inner_text()
    with pytest.raises(ProgramError) as parser:
        parse_program({"id": "sim-tiered", "rate": "0.2"})
    assert shown == str(parser.value)  # the CLI parser's own words, beside the field
    page.screenshot(path=running.artifacts / "program-error.png", full_page=True)

    page.locator("#f-rate").fill("12.5%")
    page.locator("#f-duration_months").fill("")
    for field in page.locator('input[name^="tier_"]').all():
        field.fill("")
    # Preview on the latest month of the program's test-mode rewards, before applying.
    page.locator("#preview-mode").select_option("test")
    page.locator("#preview").click()
    page.screenshot(path=running.artifacts / "program-preview.png", full_page=True)
    shown = {
        row.get_attribute("data-currency"): (
            int(str(row.locator('[data-key="in_force_minor"]').get_attribute("data-minor"))),
            int(str(row.locator('[data-key="edited_minor"]').get_attribute("data-minor"))),
        )
        for row in page.locator('table[data-table="preview"] tr[data-currency]').all()
    }
    records = blocking(read_topic(running.kafka.bootstrap, running.kafka.topic(topics.REWARDS),
                                  "reward"))  # fmt: skip
    test_rewards = {r["reward_id"]: r for _, r in records
                    if not r["livemode"] and not r.get("account")}  # fmt: skip
    month = max(time.strftime("%Y-%m", time.gmtime(r["paid_at"])) for r in test_rewards.values())
    want: dict[str, list[int]] = {}
    for r in test_rewards.values():
        if time.strftime("%Y-%m", time.gmtime(r["paid_at"])) == month:
            totals = want.setdefault(r["currency"], [0, 0])
            totals[0] += r["reward_amount_minor"]
            if r["line"] != "first_invoice_bonus":
                totals[1] += half_up(Decimal(r["base_amount_minor"]) * Decimal("0.125"))
    assert shown == {c: (a, b) for c, (a, b) in want.items()}
    page.locator("#apply").click()
    page.wait_for_url("**/dashboard/programs?applied=*")
    assert "sim-tiered version 2" in page.locator("#applied").inner_text()
    history = page.locator('table[data-program="sim-tiered"] tr[data-version="2"]')
    assert history.locator('[data-key="changed_by"]').inner_text() == USER
    page.screenshot(path=running.artifacts / "programs.png", full_page=True)
    page.context.close()
    current = blocking(read_programs(running.kafka))["sim-tiered"]
    assert current.version == 2 and current.program.to_json()["rate"] == "12.5%"
    assert "tiers" not in current.program.to_json()

    async def worker_has_version_2() -> bool:
        log = running.pipeline.worker(0).log_tail(200_000)
        return any('"program_in_force"' in line and '"version": 2' in line
                   for line in log.splitlines())  # fmt: skip

    blocking(wait_until(worker_has_version_2, 60, 1, "the worker to read version 2"))
    later = generate(ScenarioConfig(customers=4, months=1, seed=99, organic_ratio=0.0,
                                    guest_ratio=0.0, start=DEFAULT_START + 120 * DAY))  # fmt: skip
    invoices = {e["data"]["object"]["id"] for e in later.events
                if e["data"]["object"].get("object") == "invoice"}  # fmt: skip
    running.post(later, seed=4)

    async def later_rewards() -> list[dict[str, Any]]:
        records = await read_topic(running.kafka.bootstrap,
                                   running.kafka.topic(topics.REWARDS), "reward")  # fmt: skip
        return [r for _, r in records if r["invoice_id"] in invoices]

    blocking(wait_until(later_rewards, 120, 2, "rewards of the later invoices"))
    rewards = blocking(later_rewards())
    assert rewards and all(r["program_version"] == 2 for r in rewards)
    for r in rewards:
        assert r["reward_amount_minor"] == half_up(
            Decimal(r["base_amount_minor"]) * Decimal("0.125")
        )
