"""`refstream run`'s supervision policy, with fake processes and a fake clock; and the two
log formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence

import pytest

from refstream.logs import JsonFormatter, TextFormatter
from refstream.supervisor import BACKOFF_MIN_S, Child, Supervisor


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.terminated = False

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.terminated = True
        self.returncode = -15

    def kill(self) -> None:
        self.returncode = -9

    def wait(self, timeout: float | None = None) -> int:
        assert self.returncode is not None
        return self.returncode


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.spawned: list[tuple[str, FakeProcess]] = []

    def spawn(self, argv: Sequence[str]) -> FakeProcess:
        process = FakeProcess(len(self.spawned) + 100)
        self.spawned.append((argv[-1], process))
        return process

    def current(self, name: str) -> FakeProcess:
        return [p for n, p in self.spawned if n == name][-1]


def supervisor(world: World) -> Supervisor:
    children = [Child(n, ["refstream", n]) for n in ("ingress", "worker", "sink")]
    return Supervisor(children, spawn=world.spawn, clock=lambda: world.now, stable_after_s=60)


def test_a_dead_child_is_restarted_with_doubling_backoff_and_the_others_keep_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    sup = supervisor(world)
    sup.start()
    ingress = world.current("ingress")
    restart_times = []
    for _ in range(3):
        world.current("worker").returncode = 1  # it crashes right after starting
        sup.poll()
        died_at = world.now
        while world.current("worker").returncode is not None:
            world.now += 0.25
            sup.poll()
        restart_times.append(world.now - died_at)
    assert restart_times == [BACKOFF_MIN_S, 2 * BACKOFF_MIN_S, 4 * BACKOFF_MIN_S]
    assert world.current("ingress") is ingress and not ingress.terminated
    assert [n for n, _ in world.spawned].count("worker") == 4
    exits = [r for r in caplog.records if r.getMessage() == "child_exited"]
    assert [r.__dict__["exit_code"] for r in exits] == [1, 1, 1]


def test_a_child_that_stayed_up_gets_its_backoff_reset() -> None:
    world = World()
    sup = supervisor(world)
    sup.start()
    for _ in range(3):  # three quick crashes: backoff grows to 8 s
        world.current("sink").returncode = 1
        sup.poll()
        world.now += 10
        sup.poll()
    world.now += 120  # then it runs for two minutes
    world.current("sink").returncode = 1
    sup.poll()
    died_at = world.now
    while world.current("sink").returncode is not None:
        world.now += 0.25
        sup.poll()
    assert world.now - died_at == BACKOFF_MIN_S


def test_stop_terminates_every_child_and_restarts_nothing() -> None:
    world = World()
    sup = supervisor(world)
    sup.start()
    sup.stop(grace_s=1)
    assert all(p.terminated for _, p in world.spawned)
    world.now += 100
    sup.poll()
    assert len(world.spawned) == 3


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ingress.server", logging.WARNING, "x", 1, "kafka_down", None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_text_logs_read_as_lines_and_json_logs_parse_with_the_same_fields() -> None:
    text = TextFormatter().format(record(topic="stripe.events", attempt=2))
    assert text.endswith("WARNING ingress.server kafka_down topic=stripe.events attempt=2")
    entry = json.loads(JsonFormatter().format(record(topic="stripe.events", attempt=2)))
    assert (entry["event"], entry["topic"], entry["attempt"]) == ("kafka_down", "stripe.events", 2)


def test_auto_format_is_json_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from refstream.logs import configure_logging

    monkeypatch.setattr("sys.stderr", io.StringIO())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", "auto")
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        configure_logging("INFO", "text")
        assert isinstance(root.handlers[0].formatter, TextFormatter)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
