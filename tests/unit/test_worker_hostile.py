"""Hostile but signed payloads against the worker's decision path: every failure is a
dead-letter error (bad input), never a crash of another kind, and what is decided can be
encoded. Mutations: a field of a real Stripe payload replaced by a value of the wrong type,
out of range, NaN/Infinity text, a lone surrogate, deep nesting or a huge list."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refstream.avro_codec import AvroCodec
from streams.errors import DEAD_LETTER, OutputEncodeError
from streams.ledger.config import LedgerConfig
from streams.ledger.programs import ProgramVersion, parse_program
from streams.worker.cores import CustomerCore
from tests.support.factories import API_VERSIONS, StripeFactory, subscription_story

PROGRAMS = {"std": ProgramVersion(parse_program({"id": "std", "rate": "20%", "hold_days": 0}), 1)}
HOSTILE = st.sampled_from(
    [
        None,
        "",
        "x",
        "\udc00",
        "Infinity",
        "NaN",
        "-1",
        10**20,
        -(10**20),
        2**63,
        -1,
        0,
        True,
        1.5,
        float("inf"),
        [],
        {},
        [1] * 10_000,
        {"id": "\udc00"},
        {"a": {"b": {"c": {}}}},
    ]
)


def stories() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for n, version in enumerate(API_VERSIONS):
        f = StripeFactory(api_version=version, seed=300 + n)
        events += subscription_story(f, months=2, code="ACME", invoice_payment_events=True).events
    return events


BASE = stories()


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            out += paths(v, (*prefix, i))
    return out


def mutate(event: dict[str, Any], path: tuple, new: Any) -> dict[str, Any]:
    out = copy.deepcopy(event)
    target = out["data"]["object"]
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return out


def run(original: dict[str, Any], event: dict[str, Any]) -> None:
    # The envelope as the ingress built it for the routing fields it reads (it refuses a
    # surrogate there), around the hostile body.
    envelope = StripeFactory(seed=1).envelope(original)
    envelope["body"] = json.dumps(event).encode()
    core = CustomerCore(LedgerConfig())
    try:
        routed = core.route(envelope)
        if routed is None:
            return
        result = core.on_event(None, routed, PROGRAMS, event["created"] + 86_400, event)
        for out in result.outputs:
            if out.schema is None:
                json.dumps(out.record).encode()
            else:
                try:
                    AvroCodec.for_schema(out.schema).encode(out.record)
                    out.key.encode()
                except (ValueError, TypeError, OverflowError) as exc:
                    raise OutputEncodeError(str(exc)) from exc
    except DEAD_LETTER:
        pass  # dead-lettered with its reason: the expected outcome for bad input


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_hostile_field_is_bad_input_or_harmless_never_a_crash(data: st.DataObject) -> None:
    event = data.draw(st.sampled_from(BASE))
    path = data.draw(st.sampled_from(paths(event["data"]["object"])))
    run(event, mutate(event, path, data.draw(HOSTILE)))
