"""The worker's internal topics have schemas: the records the worker builds encode and
decode unchanged, and a JSON record written before the schemas (in flight during an
upgrade) is still read."""

from __future__ import annotations

from refstream.avro_codec import AvroCodec
from refstream.topics import INTERNAL_TOPIC_SCHEMAS, LINK_PROBE_ANSWER_SCHEMA, TICKS
from streams.corrections.payments import apply_refund, new_customer_state, register_reward
from streams.corrections.stripe_facts import refund_fact
from streams.worker import cores, topology
from tests.unit.test_corrections_support import charge_refunded, reward


def test_every_internal_topic_of_the_worker_has_a_schema() -> None:
    internal = {*topology.INTERNAL_TOPICS, topology.CUSTOMER_TICKS} - {cores.REROUTED}
    assert set(INTERNAL_TOPIC_SCHEMAS) == internal
    assert topology.CUSTOMER_TICKS == TICKS
    # refstream.rerouted carries stripe.events values, which have their own schema.
    assert cores.Output(cores.REROUTED, "k", {}).schema == "stripe_event"


def test_a_real_correction_round_trips() -> None:
    state, _ = register_reward(new_customer_state(), reward(amount_minor=2000))
    fact = refund_fact(charge_refunded("evt_1", 2500))
    assert fact is not None
    _, corrections = apply_refund(state, fact)
    assert corrections
    codec = AvroCodec.for_schema(INTERNAL_TOPIC_SCHEMAS[cores.CORRECTIONS])
    for correction in corrections:
        assert codec.decode(codec.encode(correction)) == correction


def test_links_and_ticks_round_trip() -> None:
    links = AvroCodec.for_schema(INTERNAL_TOPIC_SCHEMAS[cores.LINKS])
    empty = {"owner": None, "key_source": None, "event": None, "probe": None}
    owner = {**empty, "owner": "cus_1", "key_source": "customer"}
    parked = {**empty, "event": b"\xc3\x01..."}
    probe = {"owner": "cus_1", "key_source": "customer", "state_key": "test:cus_1",
             "charge_id": "ch_1"}  # fmt: skip
    for message in (owner, parked, {**empty, "probe": probe}):
        assert links.decode(links.encode(message)) == message
    answer = cores.probe_answer_output(probe)
    codec = AvroCodec.for_schema(LINK_PROBE_ANSWER_SCHEMA)
    assert codec.decode(codec.encode(answer.record)) == answer.record
    ticks = AvroCodec.for_schema("tick")
    assert ticks.decode(ticks.encode({"now_s": 1_750_000_000})) == {"now_s": 1_750_000_000}


def test_the_worker_writes_internal_records_with_their_schemas() -> None:
    assert cores.Output(cores.CORRECTIONS, "k", {}).schema == "correction"
    assert cores.Output(cores.LINKS, "k", {}).schema == "payment_link"
    probe = {"owner": "cus_1", "key_source": "customer", "state_key": "test:cus_1",
             "charge_id": "ch_1"}  # fmt: skip
    assert cores.probe_answer_output(probe).schema == LINK_PROBE_ANSWER_SCHEMA


def test_links_records_read_the_same_from_avro_and_from_pre_schema_json() -> None:
    links = AvroCodec.for_schema(INTERNAL_TOPIC_SCHEMAS[cores.LINKS])
    parked = links.encode({"event": b"\xc3\x01envelope"})
    assert cores.link_message(parked) == {"event": b"\xc3\x01envelope".hex()}
    legacy = b'{"event": "c301"}'
    assert cores.link_message(legacy) == {"event": "c301"}
    owner = links.encode({"owner": "cus_1", "key_source": "customer"})
    assert cores.link_message(owner) == {"owner": "cus_1", "key_source": "customer"}
    assert cores.decode_internal("tick", b'{"now_s": 5}') == {"now_s": 5}
