"""Errors of the correction core.

    ValueError
     └── CorrectionInputError   bad input (a malformed payload or record): dead-letter it
    RuntimeError
     └── streams.invariants.InvariantError   a routing fault in the customer ledger
          └── InvariantViolation              the ledger would break: fail loudly

Business rejections (a payout naming a pending reward, ...) are values, not exceptions:
see `payouts.Rejection`.
"""

from __future__ import annotations

from streams.invariants import InvariantError


class CorrectionInputError(ValueError):
    """An input the core cannot use; the message names the field, never a secret."""


class InvariantViolation(InvariantError):  # noqa: N818 -- the name the issue and docs use
    """A ledger invariant does not hold; continuing would corrupt balances."""


def invariant(condition: bool, message: str) -> None:
    """Raise InvariantViolation unless `condition`; unlike `assert`, survives `python -O`."""
    if not condition:
        raise InvariantViolation(message)
