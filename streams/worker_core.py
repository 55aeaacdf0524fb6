"""The seam between the Faust wiring (streams/app.py) and the pure ledger core.

Faust tables hold bytes; the core works on `CustomerState`. This adapter converts between
the two, routes an envelope to its state key, and names the Avro schema of each output, so
the wiring never touches a decision and the core never touches Kafka.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from refstream.settings import Settings
from refstream.topics import TOPIC_SCHEMAS
from streams.config import LedgerConfig
from streams.customer_ledger import Decision, Outcome, decide, ledger_key, next_deadline, tick
from streams.ledger_state import CustomerState
from streams.programs import ProgramVersion
from streams.stripe_payloads import StripeEvent, parse_envelope


@dataclass(frozen=True)
class Output:
    topic: str  # unprefixed name from refstream.topics
    key: str
    schema: str
    record: dict[str, Any]


@dataclass(frozen=True)
class CoreResult:
    state: bytes | None  # None: nothing to store
    outputs: list[Output]
    due_s: int | None  # when the state next needs a tick
    outcome: str


@dataclass(frozen=True)
class Routed:
    event: StripeEvent
    state_key: bytes


class WorkerCore:
    def __init__(self, config: LedgerConfig) -> None:
        self.config = config

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerCore:
        return cls(LedgerConfig.from_settings(settings.streams))

    @staticmethod
    def route(envelope: Mapping[str, Any]) -> Routed | None:
        """Parse the envelope (ParseError on a bad payload); None for events the ledger
        does not handle."""
        event = parse_envelope(envelope)
        key = ledger_key(event)
        return None if key is None else Routed(event, key.encode())

    def on_event(
        self,
        raw_state: bytes | None,
        routed: Routed,
        programs: Mapping[str, ProgramVersion],
        now_s: int,
    ) -> CoreResult:
        state = None if raw_state is None else _load(raw_state)
        decision = decide(state, routed.event, programs.values(), self.config, now=now_s)
        return self._result(decision)

    def on_tick(
        self, raw_state: bytes | None, programs: Mapping[str, ProgramVersion], now_s: int
    ) -> CoreResult:
        if raw_state is None:
            return CoreResult(None, [], None, Outcome.UNCHANGED)
        decision = tick(_load(raw_state), programs.values(), self.config, now=now_s)
        return self._result(decision)

    def _result(self, decision: Decision) -> CoreResult:
        changed = decision.outcome == Outcome.APPLIED and decision.state is not None
        state = decision.state
        return CoreResult(
            state=_dump(state) if changed and state is not None else None,
            outputs=[
                Output(out.topic, out.key, TOPIC_SCHEMAS[out.topic], out.value)
                for out in decision.outputs
            ],
            due_s=next_deadline(state, self.config) if changed and state is not None else None,
            outcome=str(decision.outcome),
        )


def _load(raw: bytes) -> CustomerState:
    return CustomerState.from_json(json.loads(raw))


def _dump(state: CustomerState) -> bytes:
    return json.dumps(state.to_json(), separators=(",", ":"), sort_keys=True).encode()
