"""The referrer agent: referral.rewards, corrections, referral.payouts and referrer ticks,
keyed by referral code; tables `referrers` and `reward-entries` (streams.worker.cores.
ReferrerCore decides), `referrer-due` for hold expiries. Emits clawbacks and statuses.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from aiokafka import ConsumerRecord

from refstream import topics
from refstream.avro_codec import AvroCodec
from streams.corrections import Step
from streams.errors import BAD_INPUT, OutputEncodeError
from streams.worker.clock import now_s
from streams.worker.cores import INTERNAL_SCHEMAS, ReferrerCore, decode_internal
from streams.worker.due import DueHandler, DueIndex
from streams.worker.emitter import Emitter
from streams.worker.tables import PartitionTable
from streams.worker.topology import CORRECTIONS, REFERRER_TICKS

log = logging.getLogger(__name__)


class JsonTableView(Mapping[str, Any]):
    """Read-only, JSON-decoding view of a bytes-keyed table (what the cores read)."""

    def __init__(self, table: PartitionTable) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        raw = self.table.get(key.encode())
        if raw is None:
            raise KeyError(key)
        return json.loads(raw)

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.table.get(key.encode())
        return default if raw is None else json.loads(raw)

    def __iter__(self) -> Iterator[str]:
        raise NotImplementedError("a table view is not iterated")

    def __len__(self) -> int:
        raise NotImplementedError("a table view is not counted")


class ReferrerAgent:
    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.payout_codec = AvroCodec.for_schema("payout")
        self.reward_codec = AvroCodec.for_schema("reward")

    async def handle(
        self,
        record: ConsumerRecord,
        source: str,
        referrers: PartitionTable,
        entries: PartitionTable,
        due: DueIndex,
    ) -> None:
        if source == REFERRER_TICKS:
            now = decode_internal("tick", record.value)["now_s"]
            handler = self.emitter.isolated(self._due_handler(referrers, entries), record)
            await due.drain(record.partition, now, handler)
            return
        try:
            if source == topics.REWARDS:
                value, step_of = self.reward_codec.decode(record.value), ReferrerCore.on_reward
            elif source == topics.PAYOUTS:
                value, step_of = self.payout_codec.decode(record.value), ReferrerCore.on_payout
            else:
                value = decode_internal(INTERNAL_SCHEMAS[CORRECTIONS], record.value)
                step_of = ReferrerCore.on_correction
            code = str(value["referral_code"])
            state = ReferrerCore.load_state(referrers.get(code.encode()), code)
            step = step_of(state, JsonTableView(entries), value, now_s())
        except BAD_INPUT as exc:
            await self.emitter.dead_letter(record, exc, None)
            return
        # InvariantViolation is not caught: a broken ledger invariant stops the worker loudly.
        try:
            key = await self._apply(step, referrers, entries)  # encodes every record first
        except OutputEncodeError as exc:
            await self.emitter.dead_letter(record, exc, None)
            return
        due.add(record.partition, key, ReferrerCore.next_due(step))

    async def _apply(self, step: Step, referrers: PartitionTable, entries: PartitionTable) -> bytes:
        """Emit a step's records, then store what it changed; returns the referrer's key."""
        for note in step.notes:
            log.info("referrer_note", extra={"note": note})
        await self.emitter.emit(ReferrerCore.outputs(step))
        key = step.state["referral_code"].encode()
        referrers[key] = ReferrerCore.dump(step.state)
        for reward_id, entry in step.rewards.items():
            entries[reward_id.encode()] = ReferrerCore.dump(entry)
        return key

    def _due_handler(self, referrers: PartitionTable, entries: PartitionTable) -> DueHandler:
        async def handle(key: bytes, now: int) -> int | None:
            raw_state = referrers.get(key)
            if raw_state is None:
                return None
            step = ReferrerCore.on_tick(json.loads(raw_state), JsonTableView(entries), now)
            await self._apply(step, referrers, entries)
            return ReferrerCore.next_due(step)

        return handle
