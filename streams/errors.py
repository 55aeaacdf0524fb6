"""The worker's one error hierarchy: what is bad input, and what is a bug.

    ValueError
     ├── refstream.avro_codec.AvroDecodeError      a record that is not of its schema
     ├── streams.ledger.stripe_payloads.ParseError        a Stripe payload the ledger cannot read
     ├── streams.corrections.CorrectionInputError  a refund/dispute/payout it cannot use
     └── OutputEncodeError                         a decision whose records cannot be
                                                   encoded (e.g. a surrogate in a code)
    RuntimeError
     └── streams.ledger.invariants.InvariantError         a routing fault: the event reached the
          │                                        wrong state (dead-lettered, never mixed)
          └── streams.corrections.InvariantViolation   the ledger itself would break

What the worker does with each:
- BAD_INPUT (the ValueError branch above) and InvariantError: the one event (or the one
  due key of a tick) is dead-lettered with its original bytes and the reason; every other
  key keeps flowing.
- InvariantViolation, and any exception not listed here (a KeyError, a TypeError, ...):
  a bug. The worker logs it and exits non-zero (`crash_loudly`), so nothing after it is
  dead-lettered by mistake; the event is replayed from the committed offset on restart,
  after the fix (`refstream dlq replay` covers what was dead-lettered meanwhile).
"""

from __future__ import annotations

import logging
import os
import sys

from refstream.avro_codec import AvroDecodeError
from streams.corrections.errors import CorrectionInputError, InvariantViolation
from streams.ledger.invariants import InvariantError
from streams.ledger.stripe_payloads import ParseError

log = logging.getLogger(__name__)

EXIT_BUG = 70  # EX_SOFTWARE


class OutputEncodeError(ValueError):
    """An output record the topic's schema (or a Kafka key) cannot carry."""


BAD_INPUT: tuple[type[Exception], ...] = (
    AvroDecodeError,
    ParseError,
    CorrectionInputError,
    OutputEncodeError,
)
DEAD_LETTER: tuple[type[Exception], ...] = (*BAD_INPUT, InvariantError)


def is_bug(error: BaseException) -> bool:
    return isinstance(error, InvariantViolation) or not isinstance(error, DEAD_LETTER)


def crash_loudly(where: str, error: BaseException) -> None:
    """A bug: log it with its traceback and stop the process with a non-zero status. The
    state was stored only after its outputs were acknowledged, so stopping here is safe."""
    log.critical(
        "worker_bug_stopping",
        exc_info=error,
        extra={"where": where, "error_type": type(error).__name__, "error": str(error)[:500]},
    )
    sys.stderr.flush()
    os._exit(EXIT_BUG)
