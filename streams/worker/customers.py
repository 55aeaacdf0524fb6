"""The customer agent: stripe.events, rerouted events and customer ticks, keyed by customer.

Table `customers` holds each customer's ledger state (streams.worker.cores.CustomerCore
decides); `customer-due` files when a state next needs a tick. Emits rewards, attributions,
lifecycle records, corrections for the referrer side and payment links.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from aiokafka import ConsumerRecord

from refstream.avro_codec import AvroCodec
from refstream.metrics import WorkerMetrics
from refstream.topics import LINK_PROBE_ANSWER_SCHEMA
from streams.corrections import InvariantViolation
from streams.errors import BAD_INPUT, DEAD_LETTER
from streams.ledger.ledger_state import CustomerState
from streams.worker.clock import now_s
from streams.worker.cores import (
    CustomerCore,
    Output,
    StateResult,
    decode_internal,
    dump_customer,
    is_probe_answer,
    load_customer,
)
from streams.worker.due import DueHandler, DueIndex
from streams.worker.emitter import Emitter, encode
from streams.worker.stripe_lookup import CustomerLookup
from streams.worker.tables import DecodedView, PartitionTable
from streams.worker.topology import CUSTOMER_TICKS, LINKS, REROUTED
from streams.worker_programs import ProgramCache

log = logging.getLogger(__name__)

CustomerStates = DecodedView[CustomerState]


class CustomerAgent:
    def __init__(
        self,
        core: CustomerCore,
        programs: ProgramCache,
        emitter: Emitter,
        metrics: WorkerMetrics,
        lookup: CustomerLookup | None,
        stats: Counter[str],
    ) -> None:
        self.core, self.programs, self.emitter = core, programs, emitter
        self.metrics, self.lookup, self.stats = metrics, lookup, stats
        self.envelope_codec = AvroCodec.for_schema("stripe_event")
        self._views: dict[int, CustomerStates] = {}  # partition -> its states in this batch

    def end_batch(self) -> None:
        """Encode every state the batch changed into its table (once per state)."""
        for view in self._views.values():
            view.end_batch()
        self._views = {}

    async def handle(
        self, record: ConsumerRecord, source: str, table: PartitionTable, due: DueIndex
    ) -> None:
        """One record of the agent's topics (`source`: its unprefixed topic name)."""
        customers = self._views.get(record.partition)
        if customers is None or customers.table is not table:
            customers = DecodedView(table, load_customer, dump_customer)
            self._views[record.partition] = customers
        if source == CUSTOMER_TICKS:
            now_s = decode_internal("tick", record.value)["now_s"]
            handler = self.emitter.isolated(self._due_handler(customers), record)
            await due.drain(record.partition, now_s, handler)
        elif is_probe_answer(dict(record.headers or ())):
            await self._on_probe_answer(record, customers, due)
        else:
            outcome, event_type = await self._on_stripe_event(record, source, customers, due)
            self.metrics.event(event_type or "unreadable", outcome)

    async def _on_probe_answer(
        self, record: ConsumerRecord, customers: CustomerStates, due: DueIndex
    ) -> None:
        answer = decode_internal(LINK_PROBE_ANSWER_SCHEMA, record.value)
        key, charge_id = answer["state_key"].encode(), answer["charge_id"]
        programs, now = dict(self.programs.current()), now_s()

        def decide(state: CustomerState | None) -> StateResult:
            return self.core.on_probe_answer_state(state, charge_id, programs, now)

        result = decide(customers.get(key))
        await self.emitter.emit(result.outputs)
        if result.state is not None:
            customers.put(key, result.state, _replay(decide))
        due.add(record.partition, key, result.due_s)

    async def _on_stripe_event(
        self, record: ConsumerRecord, source: str, customers: CustomerStates, due: DueIndex
    ) -> tuple[str, str | None]:
        """Decide one stripe.events (or rerouted) record: (metric outcome, event type)."""
        try:
            envelope = self.envelope_codec.decode(record.value)
            routed = self.core.route(envelope)
        except BAD_INPUT as exc:
            await self.emitter.dead_letter(record, exc, None)
            return "dead_lettered", None
        if routed is None:
            self.stats["skipped"] += 1
            return "ignored", str(envelope.get("type"))
        event_type = routed.event.type
        before = customers.get(routed.state_key)
        if source != REROUTED and self.core.needs_owner(routed, before):
            # Only the payment intent is named: let the link agent find its customer.
            link = {"event": self.envelope_codec.encode(envelope)}
            await self.emitter.emit([Output(LINKS, routed.event.partition_key, link)])
            self.stats["sent_for_owner"] += 1
            return "decided", event_type  # decided where its owner's state lives
        raw_event = routed.event.body or {}
        programs, now = dict(self.programs.current()), now_s()

        def decide(state: CustomerState | None) -> StateResult:
            # In place: no copy of the state per event; a failure is undone below.
            core = self.core
            return core.on_event_state(state, routed, programs, now, raw_event, in_place=True)

        try:
            result = decide(before)
            encoded = encode(result.outputs)
        except InvariantViolation:
            raise  # the ledger itself would break: stop loudly, never skip
        except DEAD_LETTER as exc:  # an odd event or a routing fault
            self._undo(customers, routed.state_key)
            await self.emitter.dead_letter(record, exc, routed.event.event_id)
            return "dead_lettered", event_type
        self.stats[result.outcome] += 1
        await self.emitter.send(encoded, result.outputs)
        if result.state is not None:
            customers.put(routed.state_key, result.state, _replay(decide))
        due.add(record.partition, routed.state_key, result.due_s)
        return ("duplicate" if result.outcome == "duplicate" else "decided"), event_type

    def _undo(self, customers: CustomerStates, key: bytes) -> None:
        """The state of a failed, in-place decision, back to what it was before it."""
        try:
            customers.rebuild(key)
        except Exception as exc:  # replaying what succeeded once failed: a bug
            raise InvariantViolation(
                f"state {key.decode(errors='replace')}: replaying the batch's decisions "
                f"failed ({type(exc).__name__}: {exc})"[:500]
            ) from exc

    def _due_handler(self, customers: CustomerStates) -> DueHandler:
        async def handle(key: bytes, now: int) -> int | None:
            programs = dict(self.programs.current())
            state = customers.get(key)
            if self.lookup is not None and state is not None:
                if target := self.core.lookup_target_state(state, now):
                    # Revenue waited long enough for its attribution event: ask Stripe once.
                    customer_id, account = target
                    touch = await self.lookup.touch(customer_id, now, account)
                    self.stats["looked_up_found" if touch else "looked_up_nothing"] += 1

                    def look(state: CustomerState | None) -> StateResult:
                        assert state is not None  # looked up only for a state
                        return self.core.on_lookup_state(state, touch, programs, now)

                    looked = look(state)
                    await self.emitter.emit(looked.outputs)
                    if looked.state is not None:
                        customers.put(key, looked.state, _replay(look))

            def tick(state: CustomerState | None) -> StateResult:
                return self.core.on_tick_state(state, programs, now)

            result = tick(customers.get(key))
            await self.emitter.emit(result.outputs)
            if result.state is not None:
                customers.put(key, result.state, _replay(tick))
            return result.due_s

        return handle


def _replay(
    decide: Callable[[CustomerState | None], StateResult],
) -> Callable[[CustomerState | None], CustomerState]:
    """A change as DecodedView.rebuild replays it: the same decision, outputs dropped (they
    were sent when it was first taken)."""

    def replay(before: CustomerState | None) -> CustomerState:
        after = decide(before).state
        if after is None:
            raise InvariantViolation("a replayed decision changed nothing the second time")
        return after

    return replay
