"""Invariant checks that survive `python -O` (unlike `assert`).

A broken invariant is a bug or a routing fault, never bad input: it raises loudly so that
the worker stops the event (dead letter) instead of writing a wrong ledger.
"""

from __future__ import annotations


class InvariantError(RuntimeError):
    """A ledger invariant does not hold; the message says which."""


def invariant(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantError(message)
