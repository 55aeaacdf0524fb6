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
    # What JSON can say but no downstream stage can carry (ingress/body_limits.py)
    LONE_SURROGATE = "lone_surrogate"  # a "\udc00" escape: not encodable as UTF-8
    INTEGER_OUT_OF_RANGE = "integer_out_of_range"  # beyond Avro long (signed 64-bit)
    NON_FINITE_NUMBER = "non_finite_number"  # NaN, Infinity, or a float literal that overflows
    NESTING_TOO_DEEP = "nesting_too_deep"
    # HTTP (ingress/app.py, ingress/http_errors.py)
    UNSUPPORTED_CONTENT_ENCODING = "unsupported_content_encoding"
    BODY_READ_TIMEOUT = "body_read_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"
    BAD_HTTP_REQUEST = "bad_http_request"  # refused by aiohttp's parser (e.g. headers too long)
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"


_STATUS = {
    Reason.BODY_TOO_LARGE: 413,
    Reason.UNSUPPORTED_CONTENT_ENCODING: 415,
    Reason.BODY_READ_TIMEOUT: 408,
    Reason.HEADERS_TOO_LARGE: 431,
    Reason.NOT_FOUND: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
}


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str

    @property
    def status(self) -> int:
        return _STATUS.get(self.reason, 400)
