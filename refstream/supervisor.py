"""Keeps `refstream run`'s children alive: a child that dies is restarted with backoff.

Rules (each logged as a structured event):
- a child that exits while we are not stopping is `child_exited` (its exit code) and is
  started again after its backoff: BACKOFF_MIN_S, doubled at each death up to BACKOFF_MAX_S;
- a child that stayed up STABLE_AFTER_S gets its backoff reset: a crash an hour later is
  not punished for one at start-up;
- `stop()` sends SIGTERM to every child, waits up to `grace_s`, then SIGKILLs the rest.
The others keep running meanwhile: a crashed sink does not take the ingress down, and
Stripe keeps getting its 2xx.

The clock and the way a child is spawned are injected, so the policy is tested without
processes (tests/unit/test_supervisor.py).
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0


class Process(Protocol):
    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int: ...


Spawn = Callable[[Sequence[str]], Process]


def spawn_process(argv: Sequence[str]) -> Process:
    return subprocess.Popen(list(argv))


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: Process | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = BACKOFF_MIN_S
    restarts: int = 0


@dataclass
class Supervisor:
    children: list[Child]
    spawn: Spawn = spawn_process
    clock: Callable[[], float] = time.monotonic
    backoff_max_s: float = BACKOFF_MAX_S
    stable_after_s: float = STABLE_AFTER_S
    _stopping: bool = field(default=False, init=False)

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.process = self.spawn(child.argv)
        child.started_at = self.clock()
        child.restart_at = None
        log.info("child_started", extra={"child": child.name, "pid": child.process.pid})

    def poll(self) -> None:
        """One round: notice deaths, restart those whose backoff is over."""
        now = self.clock()
        for child in self.children:
            if self._stopping:
                return
            if child.process is not None and child.process.poll() is not None:
                if now - child.started_at >= self.stable_after_s:
                    child.backoff_s = BACKOFF_MIN_S
                code = child.process.returncode
                child.process = None
                child.restart_at = now + child.backoff_s
                log.warning(
                    "child_exited",
                    extra={"child": child.name, "exit_code": code, "restart_in_s": child.backoff_s},
                )
                child.backoff_s = min(2 * child.backoff_s, self.backoff_max_s)
            if child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)
                log.info("child_restarted", extra={"child": child.name, "restarts": child.restarts})

    def stop(self, grace_s: float = 60.0) -> None:
        self._stopping = True
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = self.clock() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.info("children_stopped", extra={"children": [c.name for c in self.children]})
