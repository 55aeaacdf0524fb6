"""Verification of the `Stripe-Signature` header over the raw request body. Pure: no I/O,
the clock is passed in.

Rules (STRIPE.md):
- The header is `t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]`. Only `v1` counts;
  `v0` (test mode) and unknown schemes are ignored, never accepted.
- The signed string is `"{t}.{raw body}"`, HMAC-SHA256 keyed with the whole `whsec_...`
  secret (its UTF-8 bytes, not base64-decoded), as lowercase hex.
- Accepted when any `v1` entry matches any configured secret (several of each while a
  secret is being rolled); compared with `hmac.compare_digest`.
- The timestamp must lie within the tolerance in both directions: stripe-python only
  rejects stale timestamps, we also reject future ones (clock skew or a forged header).

Everything stripe-python 16.x's `WebhookSignature.verify_header` accepts within the
tolerance is accepted here too; tests/unit/test_ingress_stripe_compat.py checks it with
hypothesis. We parse the header as it does: items split on ",", each split on its first
two "=" (so `v1=<hex>=junk` counts as `v1=<hex>`), the first `t` counts, a `t` or `v1`
item without "=" refuses the header, `t` may be zero-padded (`t=0001700000000` is
1700000000: the signed string uses the integer). The intended differences:
1. a timestamp more than the tolerance in the future is refused (stripe-python only
   refuses stale ones);
2. `t` must be ASCII digits: Python's `int()`, which stripe-python uses, also takes a
   sign, surrounding whitespace, underscores (`1_700_000_000`) and non-ASCII digits
   (`\u0661...`); Stripe never sends them, and a negative `t` is stale anyway;
3. `t` over 12 significant digits (past the year 33000) is refused as malformed; being in
   the future it would fail rule 1 anyway;
4. a `v1` value with non-ASCII characters is simply not a match; stripe-python's
   `hmac.compare_digest` on such a str raises TypeError (an uncaught crash, not a
   SignatureVerificationError) unless an earlier entry already matched;
5. the tolerance is always enforced (stripe-python skips it for tolerance 0/None).

A success is a `VerifiedBody`, the only thing `ingress.envelope` turns into a publishable
envelope: an unverified body cannot reach Kafka by mistake.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingress.rejection import Reason, Rejected
from refstream.settings import Secret

SIGNATURE_HEADER = "Stripe-Signature"
SCHEME = "v1"
# A unix time in seconds has 10 digits until the year 2286; anything much longer is junk
# (and int() refuses strings over 4300 digits with a ValueError we would rather not meet).
# Counted after leading zeros, which stripe-python's int() accepts.
_MAX_TIMESTAMP_DIGITS = 12

# Only this module can mint a VerifiedBody (see VerifiedBody.__post_init__).
_MINT = object()


@dataclass(frozen=True, slots=True)
class VerifiedBody:
    """A request body whose signature matched one of our secrets within the tolerance."""

    body: bytes = field(repr=False)  # may hold personal data: keep it out of reprs and logs
    signed_at: int  # the header's `t`, unix seconds
    _mint: object = field(repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self._mint is not _MINT:
            raise TypeError("a VerifiedBody is only created by SignatureVerifier.verify")


class SignatureVerifier:
    """Checks Stripe-Signature headers against a fixed set of secrets and a tolerance."""

    def __init__(self, secrets: Sequence[Secret], tolerance_s: int) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        if tolerance_s < 1:
            raise ValueError("the signature tolerance must be at least 1 second")
        self._keys = tuple(secret.value.encode("utf-8") for secret in secrets)
        self._tolerance_s = tolerance_s

    def verify(self, body: bytes, header: str | None, now: float) -> VerifiedBody | Rejected:
        if not header:
            return Rejected(Reason.MISSING_SIGNATURE, f"no {SIGNATURE_HEADER} header")
        parsed = _parse_header(header)
        if isinstance(parsed, Rejected):
            return parsed
        timestamp, candidates = parsed
        # The signed string is built from the parsed integer, as stripe-python does.
        signed = b"%d." % timestamp + body
        if not self._matches(signed, candidates):
            return Rejected(
                Reason.SIGNATURE_MISMATCH, "no v1 signature matches the body with our secrets"
            )
        # Checked after the signature so that this reason means "authentic but stale or
        # early": a replay or clock skew, not a forgery.
        skew_s = now - timestamp
        if abs(skew_s) > self._tolerance_s:
            direction = "in the past" if skew_s > 0 else "in the future"
            return Rejected(
                Reason.TIMESTAMP_OUTSIDE_TOLERANCE,
                f"signature timestamp is {abs(skew_s):.0f} s {direction} "
                f"(tolerance {self._tolerance_s} s)",
            )
        return VerifiedBody(body=body, signed_at=timestamp, _mint=_MINT)

    def _matches(self, signed: bytes, candidates: list[bytes]) -> bool:
        matched = False
        for key in self._keys:
            expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode("ascii")
            for candidate in candidates:
                # No early exit: the work done does not depend on which entry matched.
                matched |= hmac.compare_digest(expected, candidate)
        return matched


def _parse_header(header: str) -> tuple[int, list[bytes]] | Rejected:
    """(timestamp, v1 signatures) of a header; unknown items are ignored."""
    timestamp_raw: str | None = None
    candidates: list[bytes] = []
    for item in header.split(","):
        # As stripe-python: split on the first two "=", the value is the middle part.
        parts = item.split("=", 2)
        key, sep, value = parts[0], len(parts) > 1, parts[1] if len(parts) > 1 else ""
        if not sep:
            if key in ("t", SCHEME):  # a known key without a value, as stripe-python refuses
                return Rejected(Reason.MALFORMED_SIGNATURE_HEADER, f"{key!r} has no value")
            continue
        if key == "t":
            if timestamp_raw is None:  # the first one counts, as in stripe-python
                timestamp_raw = value
        elif key == SCHEME:
            # aiohttp decodes header bytes it cannot read as surrogates; keep them comparable.
            candidates.append(value.encode("utf-8", "surrogateescape"))
    if timestamp_raw is None:
        return Rejected(Reason.MALFORMED_SIGNATURE_HEADER, "no t=<unix seconds> item")
    if not (
        timestamp_raw.isascii()
        and timestamp_raw.isdigit()
        and len(timestamp_raw.lstrip("0")) <= _MAX_TIMESTAMP_DIGITS
    ):
        return Rejected(Reason.MALFORMED_SIGNATURE_HEADER, "t is not a unix time in seconds")
    if not candidates:
        return Rejected(Reason.NO_V1_SIGNATURE, "no v1 signature in the header")
    return int(timestamp_raw), candidates
