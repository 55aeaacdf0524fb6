"""The names of refstream's topics and the Avro schema of each: plain constants, importable
by the pure decision code (no Kafka client here; refstream.topics creates the topics)."""

from __future__ import annotations

STRIPE_EVENTS = "stripe.events"
STRIPE_EVENTS_DLQ = "stripe.events.dlq"
REWARDS = "referral.rewards"
CLAWBACKS = "referral.clawbacks"
ATTRIBUTIONS = "referral.attributions"
LIFECYCLE = "referral.lifecycle"
REWARD_STATUS = "referral.status"
PAYOUTS = "referral.payouts"
PROGRAMS = "referral.programs"
# Internal: time signals for the workers' windows and holds (see streams/worker/).
TICKS = "refstream.ticks"
# Internal: payment intent -> owner, events to re-key and link probes (see streams/worker/).
LINKS = "refstream.links"

# The Avro schema (schemas/<name>.avsc) of each topic's record values.
TOPIC_SCHEMAS = {
    STRIPE_EVENTS: "stripe_event",
    STRIPE_EVENTS_DLQ: "dead_letter",
    REWARDS: "reward",
    CLAWBACKS: "clawback",
    ATTRIBUTIONS: "attribution",
    LIFECYCLE: "lifecycle",
    REWARD_STATUS: "reward_status",
    PAYOUTS: "payout",
}
# Schemas of the topics between the worker's own agents (names as in streams/worker/cores.py
# and streams/worker/). Not a contract with downstream services, but records outlive a
# deploy (retained, or in flight during a rolling upgrade), so they evolve by the same rules
# and the codec reads every committed version (schemas/history/).
INTERNAL_TOPIC_SCHEMAS = {
    "refstream.corrections": "correction",
    LINKS: "payment_link",
    TICKS: "tick",
    "refstream.referrer-ticks": "tick",
}
# refstream.rerouted carries stripe_event values, and link probe answers marked by a header.
LINK_PROBE_ANSWER_SCHEMA = "link_probe_answer"
# What the worker emits.
OUTPUT_TOPICS = (REWARDS, ATTRIBUTIONS, CLAWBACKS, REWARD_STATUS, LIFECYCLE)
