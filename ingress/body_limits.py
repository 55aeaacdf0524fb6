"""Parse a verified body as JSON, refusing what no downstream stage can carry.

The body travels to Kafka byte for byte, but the streams parse it again and the sinks
write its values into Avro records and ClickHouse columns. Python's `json` accepts more
than those can hold, so anything below is refused here (400 + reason) rather than
stalling a worker partition or a sink batch later:
- invalid UTF-8 (`invalid_json`, as before) and lone UTF-16 surrogates from `\\udc00`
  escapes, in any string or key at any depth (`lone_surrogate`): UTF-8 cannot encode them;
- integers outside the signed 64-bit range of an Avro long (`integer_out_of_range`);
- `NaN`, `Infinity`, `-Infinity` literals and float literals that overflow to infinity
  such as `1e400` (`non_finite_number`): not JSON (RFC 8259), and no column takes them;
- nesting deeper than `max_depth` objects/arrays (`nesting_too_deep`); nesting so deep that
  the parser itself gives up (RecursionError) stays `invalid_json`.
Only call this on a VerifiedBody: the reasons describe the content, which an unsigned
sender must not be able to probe.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ingress.rejection import Reason, Rejected

DEFAULT_MAX_DEPTH = 64
AVRO_LONG_MIN = -(2**63)
AVRO_LONG_MAX = 2**63 - 1
# A 64-bit integer has at most 19 digits: longer literals are refused without int(), which
# would otherwise spend quadratic time (or raise) on a 4300-digit one.
_MAX_LONG_DIGITS = 19


class _RefusedError(Exception):
    """Raised from inside json's hooks to stop parsing at the first refusal."""

    def __init__(self, rejected: Rejected) -> None:
        super().__init__(rejected.detail)
        self.rejected = rejected


def _parse_int(literal: str) -> int:
    digits = literal[1:] if literal.startswith("-") else literal
    value = int(literal) if len(digits) <= _MAX_LONG_DIGITS else None
    if value is None or not AVRO_LONG_MIN <= value <= AVRO_LONG_MAX:
        shown = literal if len(literal) <= 40 else literal[:40] + "..."
        raise _RefusedError(
            Rejected(Reason.INTEGER_OUT_OF_RANGE, f"integer {shown} is outside signed 64 bits")
        )
    return value


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _RefusedError(Rejected(Reason.NON_FINITE_NUMBER, "a number overflows to infinity"))
    return value


def _parse_constant(literal: str) -> float:
    raise _RefusedError(Rejected(Reason.NON_FINITE_NUMBER, f"{literal} is not a JSON number"))


def load_json(body: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any | Rejected:
    """The parsed body, or why it is refused."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejected(Reason.INVALID_JSON, "body is not UTF-8")
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except _RefusedError as refused:
        return refused.rejected
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return Rejected(Reason.INVALID_JSON, "body is not JSON")
    problem = _walk(value, max_depth)
    return value if problem is None else problem


def _walk(root: Any, max_depth: int) -> Rejected | None:
    """Depth and string checks, iteratively (the depth is attacker-controlled)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return Rejected(Reason.LONE_SURROGATE, "a string holds a lone UTF-16 surrogate")
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > max_depth:
            return Rejected(
                Reason.NESTING_TOO_DEEP, f"objects and arrays nest deeper than {max_depth}"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if not _encodable(key):
                    return Rejected(Reason.LONE_SURROGATE, "a key holds a lone UTF-16 surrogate")
                stack.append((item, depth + 1))
        else:
            stack.extend((item, depth + 1) for item in value)
    return None


def _encodable(text: str) -> bool:
    if text.isascii():  # the common case, and cheap
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
