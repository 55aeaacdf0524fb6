"""Where a backfill got to, per source, in a local JSON file: resumable after interruption.

A cursor is a time: everything of that source created in [since, done_until) has been
published and acknowledged by Kafka. The backfill advances it after each time slice, so an
interrupted run redoes at most one slice (harmless: event ids are deterministic and the
ledger idempotent). One file per scope (account, mode, since): another `--since` or
another account starts from its own file.

Why a local file rather than a compacted Kafka topic: the backfill is a one-off operator
job run from one machine, and its progress must survive exactly what interrupts it (a
Ctrl-C, a lost network, Stripe's rate limits, a Kafka outage: then a topic would be out of
reach too). The file is written to a temporary name, fsynced and renamed, so it is always
either the old or the new state. Losing it costs only time: a new run republishes, and
nothing is counted twice.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1


@dataclass(frozen=True)
class Scope:
    account: str | None
    livemode: bool
    since: int

    def file_name(self) -> str:
        who = re.sub(r"[^A-Za-z0-9_]", "_", self.account or "platform")
        return f"{who}-{'live' if self.livemode else 'test'}-{self.since}.json"


class CursorStore:
    def __init__(self, directory: Path, scope: Scope) -> None:
        self.path = directory / scope.file_name()
        self._scope = scope
        self._done: dict[str, int] = {}
        if self.path.exists():
            self._done = self._read()

    def _read(self) -> dict[str, int]:
        try:
            state = json.loads(self.path.read_text())
        except ValueError as exc:
            raise ValueError(
                f"backfill state {self.path} is not JSON; delete it to restart"
            ) from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ValueError(f"backfill state {self.path} has an unknown format")
        done = state.get("done_until", {})
        if not isinstance(done, dict) or not all(isinstance(v, int) for v in done.values()):
            raise ValueError(f"backfill state {self.path} is damaged; delete it to restart")
        return {str(k): v for k, v in done.items()}

    def done_until(self, source: str) -> int | None:
        return self._done.get(source)

    def advance(self, sources: list[str], until: int) -> None:
        for source in sources:
            self._done[source] = max(until, self._done.get(source, until))
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "format": FORMAT,
            "account": self._scope.account,
            "livemode": self._scope.livemode,
            "since": self._scope.since,
            "done_until": dict(sorted(self._done.items())),
        }
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as out:
            json.dump(state, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)
