"""The payment-link agent: refstream.links, keyed by payment intent; table `payment-owners`.

Learns which customer owns a payment intent, re-keys events that named only the payment
(invoice_payment.*, guest refunds and disputes; parked until the owner is known) and
answers a customer's probe after everything it re-keyed before it (the decisions are
streams.ledger.payment_links.on_link_message).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiokafka import ConsumerRecord

from refstream.avro_codec import AvroCodec
from streams.ledger.payment_links import on_link_message
from streams.worker.cores import Output, link_message, probe_answer_output
from streams.worker.emitter import Emitter
from streams.worker.tables import PartitionTable
from streams.worker.topology import REROUTED


class LinkAgent:
    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter
        self.envelope_codec = AvroCodec.for_schema("stripe_event")

    async def handle(self, record: ConsumerRecord, owners: PartitionTable) -> None:
        raw = owners.get(record.key)
        step = on_link_message(None if raw is None else json.loads(raw), link_message(record.value))
        outputs = [self._reroute(hex_value, step.state) for hex_value in step.reroute]
        outputs += [probe_answer_output(probe) for probe in step.answers]
        await self.emitter.emit(outputs)
        owners[record.key] = json.dumps(step.state).encode()

    def _reroute(self, hex_value: str, owner: Mapping[str, str]) -> Output:
        """The parked envelope, keyed by the customer that owns its payment intent."""
        envelope = self.envelope_codec.decode(bytes.fromhex(hex_value))
        envelope.update(partition_key=owner["owner"], key_source=owner["key_source"])
        return Output(REROUTED, owner["owner"], envelope)
