"""Errors of the correction core.

    ValueError
     └── CorrectionInputError   bad input (a malformed payload or record): dead-letter it
          └── BeyondHorizon     about a payment dropped past the settled horizon
    RuntimeError
     └── streams.ledger.invariants.InvariantError   a routing fault in the customer ledger
          └── InvariantViolation              the ledger would break: fail loudly

Business rejections (a payout naming a pending reward, ...) are values, not exceptions:
see `payouts.Rejection`.
"""

from __future__ import annotations

from streams.ledger.invariants import InvariantError


class CorrectionInputError(ValueError):
    """An input the core cannot use; the message names the field, never a secret."""


class BeyondHorizon(CorrectionInputError):  # noqa: N818 -- reads as the reason
    """An event about a payment older than what the state still keeps (its summary was
    dropped past REFSTREAM_SETTLED_HORIZON_DAYS): refstream cannot tell a replay from a
    first delivery, so the event is dead-lettered for a person to book by hand."""


class InvariantViolation(InvariantError):  # noqa: N818 -- the name the issue and docs use
    """A ledger invariant does not hold; continuing would corrupt balances."""


def invariant(condition: bool, message: str) -> None:
    """Raise InvariantViolation unless `condition`; unlike `assert`, survives `python -O`."""
    if not condition:
        raise InvariantViolation(message)
