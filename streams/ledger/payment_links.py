"""The payment-link agent's decisions, per payment key (a payment intent, or a charge made
without one): pure, no Kafka.

Three kinds of message arrive on the links topic, keyed by the payment:
- {"owner": customer, "key_source": ...}: the customer state that holds the payment;
- {"event": hex Avro envelope}: an event that names only the payment (invoice_payment.*,
  a refund or dispute of a guest payment); parked until the owner is known, then re-keyed;
- {"probe": {...}}: a customer asks, before calling a charge one-time, whether an invoice
  payment for it is on its way. The answer is sent after every event re-keyed so far, on
  the same rerouted partition, so the customer reads those events before the answer.

State: {"owner": str | None, "key_source": str, "parked": [hex envelopes]}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LinkStep:
    state: dict[str, Any]
    reroute: list[str] = field(default_factory=list)  # envelopes (hex) to re-key to the owner
    answers: list[dict[str, Any]] = field(default_factory=list)  # probes to answer, in order


def new_link_state() -> dict[str, Any]:
    return {"owner": None, "parked": []}


def on_link_message(state: dict[str, Any] | None, message: dict[str, Any]) -> LinkStep:
    owner = dict(state) if state is not None else new_link_state()
    owner["parked"] = list(owner.get("parked", []))
    answers: list[dict[str, Any]] = []
    if "owner" in message or "probe" in message:
        named = message if "owner" in message else message["probe"]
        if owner.get("owner") is None:
            # The first owner named wins; a probe names it too (its charge lives there).
            owner.update(owner=named["owner"], key_source=named["key_source"])
        reroute, owner["parked"] = owner["parked"], []
        if "probe" in message:
            answers.append(message["probe"])
    elif "event" in message:
        reroute = [message["event"]]
        if owner.get("owner") is None:
            owner["parked"].append(message["event"])
            reroute = []
    else:
        raise ValueError(f"links message with none of owner/event/probe: {sorted(message)}")
    return LinkStep(owner, reroute, answers)
