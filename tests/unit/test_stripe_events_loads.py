"""The stripe_events mapping parses bodies with orjson where it can: every body must still
give the row (columns, body_error) that json alone gives, odd bodies included."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sinks import stripe_events
from tests.support import sink_scenario as scenario


def _charge(amount: str, currency: str = '"usd"', extra: str = "") -> bytes:
    return (
        '{"id":"evt_1","type":"charge.refunded","data":{"object":{"object":"charge",'
        f'"id":"ch_1","customer":"cus_1","amount":{amount},"amount_refunded":{amount},'
        f'"currency":{currency},"status":"succeeded"{extra}}},'
        '"previous_attributes":{"amount_refunded":0}}}'
    ).encode()


ODD_BODIES = {
    "lone surrogate escape": _charge("500", currency='"\\ud800"'),
    "escaped pair": _charge("500", currency='"\\ud83d\\ude00"'),
    "integer beyond Int64": _charge("123456789012345678901234567890"),
    "integer beyond -2^63": _charge("-9223372036854775809"),
    "integer beyond UInt64": _charge("18446744073709551616"),
    "2^63": _charge("9223372036854775808"),
    "NaN": _charge("NaN"),
    "Infinity": _charge("-Infinity"),
    "1e400": _charge("1e400"),
    "float amount": _charge("12.5"),
    "duplicate keys": _charge("500", extra=',"amount":700'),
    "deep metadata": _charge("500", extra=',"metadata":' + "[" * 980 + "]" * 980),
    "too deep": _charge("500", extra=',"metadata":' + "[" * 1100 + "]" * 1100),
    "BOM": b"\xef\xbb\xbf" + _charge("500"),
    "UTF-16": _charge("500").decode().encode("utf-16"),
    "raw invalid byte": _charge("500").replace(b'"usd"', b'"\xff"'),
    "raw UTF-8 surrogate": _charge("500").replace(b'"usd"', b'"\xed\xa0\x80"'),
    "control character": _charge("500", currency='"\x01"'),
    "trailing garbage": _charge("500") + b" x",
    "not an object": b"[1, 2]",
    "empty": b"",
    "NUL escape": _charge("500", currency='"\\u0000"'),
}


def _record(body: bytes, base: dict[str, Any]) -> dict[str, Any]:
    return {**base, "body": body}


def _json_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe_events, "loads", json.loads)


@pytest.mark.parametrize("name", sorted(ODD_BODIES))
def test_an_odd_body_gives_the_row_json_alone_gives(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = scenario.stripe_events()[0]
    record = _record(ODD_BODIES[name], base)
    fast = stripe_events.to_row(record)
    _json_only(monkeypatch)
    assert fast == stripe_events.to_row(record)


def test_every_scenario_event_gives_the_row_json_alone_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = scenario.stripe_events()
    fast = [stripe_events.to_row(r) for r in records]
    _json_only(monkeypatch)
    assert fast == [stripe_events.to_row(r) for r in records]


def test_orjson_parses_the_ordinary_bodies(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a timing test: the fast path is the one a plain Stripe body takes.
    body = scenario.stripe_events()[0]["body"]
    expected = json.loads(body)

    def refuse(value: bytes) -> Any:
        raise AssertionError("json.loads was used for an ordinary body")

    monkeypatch.setattr(stripe_events.json, "loads", refuse)
    assert stripe_events.loads(body) == expected
