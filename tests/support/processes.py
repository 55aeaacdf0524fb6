"""Real refstream processes for integration tests: started as `refstream <command>`
subprocesses with an environment of their own, killed with SIGKILL when a test says so,
and their output topics read back with a plain consumer."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refstream.avro_codec import AvroCodec
from refstream.kafka_io import read_to_end
from refstream.settings import REPO_ROOT, KafkaSettings


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    return {
        "REFSTREAM_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "REFSTREAM_TOPIC_PREFIX": kafka.topic_prefix,
        "REFSTREAM_EVENTS_PARTITIONS": str(kafka.events_partitions),
        # A sink group of the test's own: a sink of an earlier test (or of a run sharing
        # the broker) must not rebalance this one's.
        "REFSTREAM_SINK_GROUP_ID": f"{kafka.topic_prefix}refstream-sinks",
    }


@dataclass
class RefstreamProcess:
    """One `refstream <command>` subprocess; its output goes to `log_path`."""

    command: list[str]
    env: Mapping[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> RefstreamProcess:
        full_env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "refstream.cli", *self.command],
                env=full_env,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit, no flush."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


async def read_topic(
    bootstrap: str, topic: str, schema: str | None = None
) -> list[tuple[bytes | None, Any]]:
    """Every record of `topic` so far, values decoded with `schema` when given."""
    codec = AvroCodec.for_schema(schema) if schema else None
    return [
        (m.key, codec.decode(m.value) if codec and m.value is not None else m.value)
        for m in await read_to_end(bootstrap, topic)
    ]


async def wait_until(
    predicate: Callable[[], object], timeout_s: float, interval_s: float = 1.0, what: str = ""
) -> None:
    """Poll an async-or-sync predicate until truthy; fails with `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(interval_s)
