"""An in-memory stand-in for the customer side of the worker, around the real CustomerCore.

It keeps what the worker's agents keep (customer states as the bytes CustomerCore returns,
the payment-link agent's owners, each state's next due time) and does what they do, one
event at a time: route, send an event naming only a payment to its owner, decide, tick
what is due before the next event, answer link probes at once (nothing is in flight in a
synchronous driver). Used by bench/state_bench.py and the compaction tests.

    driver = CoreDriver(programs)
    driver.deliver(event_dict, now=...)      # a Stripe event (the JSON Stripe sends)
    driver.tick_until(now)
    driver.records(REWARDS) / driver.sizes   # outputs by topic / state bytes after each step
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from refstream.topics import LINKS
from simulator.stripe_factory import StripeFactory
from streams.ledger.config import LedgerConfig
from streams.ledger.payment_links import on_link_message
from streams.ledger.programs import ProgramVersion
from streams.worker.cores import CoreResult, CustomerCore, Output

Json = dict[str, Any]


@dataclass
class Step:
    """One decision of the driver: the event (None for a tick), its state's size, its cost."""

    event_created: int | None
    state_bytes: int
    seconds: float
    outcome: str


@dataclass
class CoreDriver:
    programs: Mapping[str, ProgramVersion]
    config: LedgerConfig = field(default_factory=LedgerConfig)
    states: dict[bytes, bytes] = field(default_factory=dict)
    owners: dict[str, Json] = field(default_factory=dict)
    due: dict[bytes, int] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clock = 0  # the worker's now: the latest delivery or tick time
        self.core = CustomerCore(self.config)
        self.envelopes = StripeFactory()  # only its envelope(): no ids drawn

    def deliver(self, event: Json, *, now: int) -> None:
        self.tick_until(now)
        self.clock = max(self.clock, now)
        envelope = self.envelopes.envelope(event)
        self._envelope(envelope, json.loads(envelope["body"]), now, rerouted=False)

    def tick_until(self, now: int) -> None:
        while True:
            due = sorted((at, key) for key, at in self.due.items() if at <= now)
            if not due:
                return
            at, key = due[0]
            del self.due[key]
            self.clock = max(self.clock, at)
            started = time.perf_counter()
            result = self.core.on_tick(self._read(key, at), self.programs, at)
            self._keep(key, result, None, time.perf_counter() - started)

    def records(self, topic: str) -> list[Json]:
        return [o.record for o in self.outputs if o.topic == topic]

    def state(self, key: bytes) -> Json | None:
        raw = self.states.get(key)
        return None if raw is None else dict(json.loads(raw))

    # --- the agents ---

    def _read(self, key: bytes, now: int) -> bytes | None:
        return self.states.get(key)

    def _envelope(self, envelope: Json, raw_event: Json, now: int, *, rerouted: bool) -> None:
        routed = self.core.route(envelope)
        if routed is None:
            return
        raw_state = self._read(routed.state_key, now)
        if not rerouted and self.core.needs_owner(routed, raw_state):
            self._link(routed.event.partition_key, {"event": envelope})
            return
        started = time.perf_counter()
        result = self.core.on_event(raw_state, routed, self.programs, now, raw_event)
        self._keep(routed.state_key, result, routed.event.created, time.perf_counter() - started)

    def _keep(self, key: bytes, result: CoreResult, created: int | None, seconds: float) -> None:
        if result.state is not None:
            self.states[key] = result.state
        if result.due_s is not None:
            self.due[key] = result.due_s
        else:
            self.due.pop(key, None)
        size = len(self.states.get(key, b""))
        self.steps.append(Step(created, size, seconds, result.outcome))
        for out in result.outputs:
            if out.topic == LINKS:
                self._link(out.key, out.record)
            else:
                self.outputs.append(out)

    def _link(self, payment: str, message: Json) -> None:
        step = on_link_message(self.owners.get(payment), message)
        self.owners[payment] = step.state
        owner = step.state.get("owner")
        for envelope in step.reroute:
            assert owner is not None
            rekeyed = {**envelope, "partition_key": owner, "key_source": step.state["key_source"]}
            self._envelope(rekeyed, json.loads(rekeyed["body"]), self.clock, rerouted=True)
        for probe in step.answers:
            key = probe["state_key"].encode()
            started = time.perf_counter()
            result = self.core.on_probe_answer(
                self._read(key, self.clock), probe["charge_id"], self.programs, self.clock
            )
            self._keep(key, result, None, time.perf_counter() - started)
