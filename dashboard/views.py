"""The dashboard's pages (aiohttp handlers rendering Jinja2 templates) and its two writes.

Every page takes `?mode=` (one ledger mode per screen). Writes are POSTed forms: they need
an authenticated identity (dashboard/auth.py) and a same-origin request (a browser sends
basic-auth credentials with any cross-site form, so the Origin is checked).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from dashboard import PREFIX
from dashboard.auth import AuthConfig, Identity, Refusal, decide
from dashboard.data import MAX_ROWS, Data
from dashboard.health import load_health
from dashboard.modes import (
    PLATFORM_MODES,
    account_of,
    base_mode,
    by_currency,
    in_mode,
    is_mode,
    ledger_modes,
    pick_mode,
)
from dashboard.money import format_minor
from dashboard.overview import chart_payload, load_overview
from dashboard.payouts import (
    PayoutInputError,
    carry_over_minor,
    cash_due_minor,
    groups,
    payable_rewards,
    payout_cash,
    payout_outcome,
    payout_record,
)
from dashboard.preview import load_preview
from dashboard.program_changes import apply_change, read_history
from dashboard.programs_form import form_from_program, read_form, to_program
from dashboard.statement import load_statement, statement_csv
from refstream.settings import Settings
from sinks.reports import ReportError
from streams.payouts_cli import publish as publish_payout
from streams.worker_programs import read_programs

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DATA: web.AppKey[Data] = web.AppKey("data", Data)
IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)
SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["money"] = lambda amount, currency: format_minor(int(amount or 0), currency)
    env.filters["datetime"] = lambda s: dt.datetime.fromtimestamp(s, dt.UTC).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    env.filters["q"] = lambda text: quote(str(text), safe="")
    env.globals["prefix"] = PREFIX
    return env


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _same_origin(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def _auth_middleware(auth: AuthConfig) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        write = request.method not in ("GET", "HEAD")
        if request.path.startswith(f"{PREFIX}/static/") and not write:
            return await handler(request)  # the stylesheet and chart library: public files
        verdict = decide(request.headers.get("Authorization", ""), request.remote, auth,
                         write=write)  # fmt: skip
        if isinstance(verdict, Refusal):
            headers = {"WWW-Authenticate": 'Basic realm="refstream dashboard", charset="UTF-8"'}
            return _error(verdict.status, verdict.message,
                          headers if verdict.status == 401 else None)  # fmt: skip
        if write and not _same_origin(request):
            return _error(403, "cross-site form submissions are refused")
        request[IDENTITY] = verdict
        try:
            return await handler(request)
        except ReportError as exc:  # a parameter a report refused: the caller's input
            return _error(400, str(exc))

    return check


def _render(request: web.Request, template: str, status: int = 200, **context: Any
            ) -> web.Response:  # fmt: skip
    env = request.app[TEMPLATES]
    identity = request[IDENTITY]
    html = env.get_template(template).render(identity=identity, path=request.path, **context)
    return web.Response(text=html, content_type="text/html", status=status)


def _see_other(location: str) -> web.Response:
    # Returned, not raised: the report API's error middleware turns raised HTTP exceptions
    # into JSON errors.
    return web.Response(status=303, headers={"Location": location})


async def _modes(data: Data) -> list[str]:
    rows = await data.report("balances", mode="all", limit=MAX_ROWS)
    rows += await data.report("revenue_split", mode="all", limit=MAX_ROWS)
    return ledger_modes(rows)


async def _mode_context(request: web.Request) -> dict[str, Any]:
    modes = await _modes(request.app[DATA])
    mode = pick_mode(request.query.get("mode"), modes)
    if mode not in modes:
        modes.append(mode)
    return {"mode": mode, "modes": modes}


async def overview(request: web.Request) -> web.Response:
    ctx = await _mode_context(request)
    data = request.app[DATA]
    ov = await load_overview(data, ctx["mode"])
    health = await load_health(data, request.app[SETTINGS])
    charts = json.dumps(chart_payload(ov)).replace("</", "<\\/")
    return _render(request, "overview.html", ov=ov, health=health, charts=charts, **ctx)


async def referrers(request: web.Request) -> web.Response:
    ctx = await _mode_context(request)
    search = request.query.get("q", "").strip()
    rows = in_mode(await request.app[DATA].report("balances", mode=base_mode(ctx["mode"]),
                                                  limit=MAX_ROWS), ctx["mode"])  # fmt: skip
    truncated = len(rows) >= MAX_ROWS
    if search:
        rows = [r for r in rows if search.lower() in str(r["referral_code"]).lower()]
    return _render(request, "referrers.html", groups=by_currency(rows), search=search,
                   truncated=truncated, **ctx)  # fmt: skip


def _statement_args(request: web.Request) -> tuple[str, str, str] | web.Response:
    code = request.match_info["code"]
    currency = request.query.get("currency", "").lower()
    mode = request.query.get("mode", "")
    if len(currency) != 3 or not currency.isalpha():
        return _error(400, "currency: expected an ISO 4217 code such as usd")
    if not is_mode(mode):
        return _error(400, "mode: expected live, test, or live@acct_... / test@acct_...")
    return code, currency, mode


async def statement(request: web.Request) -> web.Response:
    args = _statement_args(request)
    if isinstance(args, web.Response):
        return args
    code, currency, mode = args
    rows = await load_statement(request.app[DATA], code, currency, mode)
    return _render(request, "statement.html", code=code, currency=currency, mode=mode,
                   modes=[mode], rows=rows)  # fmt: skip


async def statement_download(request: web.Request) -> web.Response:
    args = _statement_args(request)
    if isinstance(args, web.Response):
        return args
    code, currency, mode = args
    rows = await load_statement(request.app[DATA], code, currency, mode)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{code}-{currency}-{mode}")
    return web.Response(
        text=statement_csv(rows), content_type="text/csv", charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="statement-{name}.csv"'},
    )  # fmt: skip


async def programs(request: web.Request) -> web.Response:
    kafka = request.app[SETTINGS].kafka
    current = await read_programs(kafka)
    history = await read_history(kafka)
    applied = request.query.get("applied")
    return _render(request, "programs.html", current=dict(sorted(current.items())),
                   history=history, modes=[], mode="", applied=applied)  # fmt: skip


async def program_form(request: web.Request) -> web.Response:
    program_id = request.match_info.get("program_id")
    current = await read_programs(request.app[SETTINGS].kafka)
    if program_id is not None and program_id not in current:
        return _error(404, f"no program {program_id!r} is in force")
    pv = current.get(program_id) if program_id else None
    form = form_from_program(pv.program.to_json() if pv else None)
    return _render(request, "program_form.html", form=form, program_id=program_id,
                   version=pv.version if pv else None, modes=[], mode="", message="",
                   preview=None, preview_modes=await _modes(request.app[DATA]),
                   preview_mode="")  # fmt: skip


async def program_apply(request: web.Request) -> web.Response:
    program_id = request.match_info.get("program_id")
    kafka = request.app[SETTINGS].kafka
    current = await read_programs(kafka)
    if program_id is not None and program_id not in current:
        return _error(404, f"no program {program_id!r} is in force")
    posted = await request.post()
    form = read_form({k: str(v) for k, v in posted.items()}, program_id)
    program = to_program(form)
    preview_modes = await _modes(request.app[DATA])
    page: dict[str, Any] = {
        "form": form, "program_id": program_id, "modes": [], "mode": "", "message": "",
        "version": current[program_id].version if program_id else None, "preview": None,
        "preview_modes": preview_modes,
    }  # fmt: skip
    preview_mode = pick_mode(str(posted.get("preview_mode", "")), preview_modes)
    page["preview_mode"] = preview_mode
    if program is None:
        return _render(request, "program_form.html", status=422, **page)
    if program_id is None and program.id in current:
        form.errors["id"] = f"id: a program {program.id!r} exists already; edit it instead"
        return _render(request, "program_form.html", status=422, **page)
    if posted.get("action") == "preview":
        page["preview"] = await load_preview(request.app[DATA], program, preview_mode)
        return _render(request, "program_form.html", **page)
    identity = request[IDENTITY]
    applied = await apply_change(kafka, program, changed_by=identity.name,
                                 method=identity.method, now_s=int(time.time()))  # fmt: skip
    note = f"{program.id} version {applied.version}" if applied else f"{program.id}: no change"
    return _see_other(f"{PREFIX}/programs?applied={quote(note)}")


async def payouts(request: web.Request) -> web.Response:
    ctx = await _mode_context(request)
    mode = ctx["mode"]
    found: list[Any] = []
    if mode in PLATFORM_MODES:
        rows = await payable_rewards(request.app[DATA], mode == "live",
                                     request.query.get("referral_code", ""))  # fmt: skip
        for group in groups(rows):
            carry = await carry_over_minor(request.app[DATA], group.referral_code,
                                           group.currency, mode == "live")  # fmt: skip
            standings = [int(r["standing_minor"]) for r in group.rewards]
            found.append((group, carry, cash_due_minor(standings, carry)))
    return _render(request, "payouts.html", found=found, connect=bool(account_of(mode)),
                   error=request.query.get("error", ""), **ctx)  # fmt: skip


async def payout_submit(request: web.Request) -> web.Response:
    posted = await request.post()
    mode = str(posted.get("mode", ""))
    code = str(posted.get("referral_code", ""))
    currency = str(posted.get("currency", "")).lower()
    chosen = [str(v) for v in posted.getall("reward_id", [])]
    if mode not in PLATFORM_MODES:
        return _error(400, "mode: payouts are recorded for the platform's live or test mode")
    live = mode == "live"
    payable = {r["reward_id"]: r for r in await payable_rewards(request.app[DATA], live, code)
               if r["currency"] == currency}  # fmt: skip
    # The cash due is recomputed here from what ClickHouse shows now; the worker checks it
    # again against its own state and rejects the whole payout if a refund moved it.
    standings = [int(payable[r]["standing_minor"]) for r in chosen if r in payable]
    carry = await carry_over_minor(request.app[DATA], code, currency, live)
    try:
        record = payout_record(
            payout_id=str(posted.get("payout_id", "")).strip(), code=code, currency=currency,
            live=live, reward_ids=chosen, amount_minor=cash_due_minor(standings, carry),
            now_s=int(time.time()),
        )  # fmt: skip
    except PayoutInputError as exc:
        return _error(400, str(exc))
    await publish_payout(request.app[SETTINGS], record)
    identity = request[IDENTITY]
    log.info("payout_submitted", extra={"payout_id": record["payout_id"], "referral_code": code,
                                        "by": identity.name})  # fmt: skip
    return _see_other(f"{PREFIX}/payouts/{quote(record['payout_id'])}?mode={quote(mode)}")


async def payout_result(request: web.Request) -> web.Response:
    payout_id = request.match_info["payout_id"]
    outcome, rows = await payout_outcome(request.app[DATA], payout_id)
    cash = await payout_cash(request.app[DATA], payout_id)
    mode = request.query.get("mode", "")
    return _render(request, "payout_outcome.html", payout_id=payout_id, outcome=outcome,
                   rows=rows, cash=cash, mode=mode if is_mode(mode) else "", modes=[])  # fmt: skip


def new_payout_id() -> str:
    return f"dash-{time.strftime('%Y%m%d')}-{secrets.token_hex(4)}"


def build_dashboard(data: Data, settings: Settings, auth: AuthConfig) -> web.Application:
    app = web.Application(middlewares=[_auth_middleware(auth)])
    app[DATA] = data
    app[SETTINGS] = settings
    app[TEMPLATES] = _environment()
    app[TEMPLATES].globals["new_payout_id"] = new_payout_id
    app.router.add_get("/", overview, allow_head=False)
    app.router.add_get("/referrers", referrers, allow_head=False)
    app.router.add_get("/referrers/{code}", statement, allow_head=False)
    app.router.add_get("/referrers/{code}/statement.csv", statement_download, allow_head=False)
    app.router.add_get("/programs", programs, allow_head=False)
    app.router.add_get("/programs/new", program_form, allow_head=False)
    app.router.add_post("/programs/new", program_apply)
    app.router.add_get("/programs/{program_id}", program_form, allow_head=False)
    app.router.add_post("/programs/{program_id}", program_apply)
    app.router.add_get("/payouts", payouts, allow_head=False)
    app.router.add_post("/payouts", payout_submit)
    app.router.add_get("/payouts/{payout_id}", payout_result, allow_head=False)
    app.router.add_static("/static", HERE / "static")
    return app
