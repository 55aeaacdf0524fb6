"""In-memory stand-in for the payment-link agent's probe answers, for drivers of the pure
ledger that deliver every event synchronously (nothing can be in flight, so a probe is
answered at once, as the agent would after re-keying what it holds)."""

from __future__ import annotations

from collections.abc import Iterable

from refstream.topics import LINKS
from streams.ledger.config import LedgerConfig
from streams.ledger.customer_ledger import Decision, Outcome, links_probed
from streams.ledger.programs import ProgramVersion


def answer_probes(
    decision: Decision, programs: Iterable[ProgramVersion], config: LedgerConfig, now: int
) -> Decision:
    """`decision` followed by the answers to every probe it (and each answer) sent; the
    probes themselves are dropped from the outputs."""
    programs = list(programs)
    state, outputs, outcome = decision.state, list(decision.outputs), decision.outcome
    pending = [o for o in outputs if o.topic == LINKS]
    outputs = [o for o in outputs if o.topic != LINKS]
    while pending and state is not None:
        probe = pending.pop(0).value["probe"]
        answered = links_probed(state, probe["charge_id"], programs, config, now=now)
        if answered.outcome == Outcome.UNCHANGED:
            continue
        state, outcome = answered.state, Outcome.APPLIED
        pending += [o for o in answered.outputs if o.topic == LINKS]
        outputs += [o for o in answered.outputs if o.topic != LINKS]
    return Decision(state, tuple(outputs), outcome)
