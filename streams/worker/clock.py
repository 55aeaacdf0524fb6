"""Worker time."""

from __future__ import annotations

import time


def now_s() -> int:
    """Unix seconds: the only clock the worker reads (the cores are given it)."""
    return int(time.time())
