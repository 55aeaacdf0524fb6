"""Find the rows a target refuses by splitting their batch in halves (bisection).

A batch is tried whole first (one insert, the common case). When the target refuses it for
its data, each half is tried, and so on down to single rows: a refused single row is the
culprit, every accepted sub-batch is written. Halves are tried left before right, so the
accepted rows are written in their offset order; k bad rows among n cost about
2·k·log2(n) inserts, and no good row waits for a retry that can never succeed.

Tokens: the whole batch keeps its caller's token; a sub-batch gets `sub_token(first, last)`
of the first and last offsets it holds. A sub-batch holds every row of that offset span
(the batch is contiguous in offsets), so after a crash mid-split the re-read window splits
the same way, each accepted sub-batch presents the same token and is dropped by
ClickHouse, and the refused rows are refused again: nothing dropped, nothing doubled.

Pure: the insert is a callable, so the logic is unit-tested with a fake writer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Insert = Callable[[Sequence[Any], str], None]


@dataclass(frozen=True)
class Refusal:
    """A row the target refused: its position in the batch, its offset, the reason."""

    index: int
    offset: int
    reason: str


def insert_isolating(
    rows: Sequence[Any],
    offsets: Sequence[int],
    insert: Insert,
    token: str,
    sub_token: Callable[[int, int], str],
    refused: type[Exception],
) -> list[Refusal]:
    """Insert `rows` (offsets ascending, parallel to rows); return the refused ones.

    `insert(rows, token)` raises `refused` when the target refuses the rows for their
    data; any other exception propagates (unavailable target, bug) and leaves the split
    unfinished, which the deterministic tokens make safe to redo.
    """
    if len(rows) != len(offsets):
        raise ValueError(f"{len(rows)} rows but {len(offsets)} offsets")
    refusals: list[Refusal] = []
    # An explicit stack, right half pushed first so the left half is tried first.
    pending: list[tuple[int, int, str]] = [(0, len(rows), token)] if rows else []
    while pending:
        lo, hi, attempt_token = pending.pop()
        try:
            insert(rows[lo:hi], attempt_token)
            continue
        except refused as exc:
            reason = str(exc)
        if hi - lo == 1:
            refusals.append(Refusal(lo, offsets[lo], reason))
            continue
        mid = (lo + hi) // 2
        pending.append((mid, hi, sub_token(offsets[mid], offsets[hi - 1])))
        pending.append((lo, mid, sub_token(offsets[lo], offsets[mid - 1])))
    return refusals
