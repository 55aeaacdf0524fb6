"""Why the ingress refused a request: one enum of machine reasons, returned as values.

Verification and parsing return a `Rejected` instead of raising, so the handler treats a
bad request as an ordinary outcome (a 4xx with a JSON reason, a metric label) and keeps
exceptions for what is truly unexpected. Details are for humans and never contain secrets.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    # Signature (ingress/signature.py)
    MISSING_SIGNATURE = "missing_signature"
    MALFORMED_SIGNATURE_HEADER = "malformed_signature_header"
    NO_V1_SIGNATURE = "no_v1_signature"
    SIGNATURE_MISMATCH = "signature_mismatch"
    TIMESTAMP_OUTSIDE_TOLERANCE = "timestamp_outside_tolerance"
    # Body (ingress/app.py, ingress/envelope.py)
    BODY_TOO_LARGE = "body_too_large"
    BODY_INCOMPLETE = "body_incomplete"  # the client went away before sending all of it
    INVALID_JSON = "invalid_json"
    NOT_A_STRIPE_EVENT = "not_a_stripe_event"
    THIN_EVENT = "thin_event"


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str

    @property
    def status(self) -> int:
        return 413 if self.reason is Reason.BODY_TOO_LARGE else 400
