"""Pipeline health for the overview: `refstream.status.collect_status` (the operations
work, issue 12) when this install has it, else the dead letters per stage from the sink's
`dead_letters` table (which also holds the worker's stripe.events.dlq records)."""

from __future__ import annotations

import importlib
import logging
import time
from typing import Any

from dashboard.data import Data
from refstream.settings import Settings

log = logging.getLogger(__name__)

_DEAD_LETTERS = """
    SELECT toString(stage) AS stage, count() AS dead_letters,
        toString(max(failed_at)) AS last_failed_at
    FROM dead_letters FINAL
    GROUP BY stage
    ORDER BY stage"""


CACHE_S = 15.0  # collect_status reads offsets and recent records: not on every page view
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


async def load_health(data: Data, settings: Settings) -> dict[str, Any]:
    key = f"{settings.kafka.bootstrap}/{settings.kafka.topic_prefix}"
    cached = _cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < CACHE_S:
        return cached[1]
    health = await _load_health(data, settings)
    _cache[key] = (time.monotonic(), health)
    return health


async def _load_health(data: Data, settings: Settings) -> dict[str, Any]:
    try:
        status = importlib.import_module("refstream.status")
    except ImportError:
        status = None
    if status is not None and hasattr(status, "collect_status"):
        try:
            collected: dict[str, Any] = await status.collect_status(settings)
            await _fill_sink_dead_letters(data, collected)
            return {"source": "status", "status": collected}
        except Exception as exc:  # noqa: BLE001 - health must never break the page
            log.warning("dashboard_status_failed", extra={"error": str(exc)})
    rows = await data.query(_DEAD_LETTERS, {})
    return {"source": "dead_letters", "dead_letters": rows}


async def _fill_sink_dead_letters(data: Data, collected: dict[str, Any]) -> None:
    """collect_status cannot open an embedded engine the sink holds; this process is the
    sink, so it reads the sink stage's count itself."""
    sink = (collected.get("dead_letters") or {}).get("sink")
    if not isinstance(sink, dict) or sink.get("total") is not None:
        return
    rows = await data.query(_DEAD_LETTERS, {})
    sink["total"] = sum(int(r["dead_letters"]) for r in rows if r["stage"] == "sink")
    sink["note"] = "read by the sink process from its dead_letters table"
