"""`refstream run` (the README's main command) starts every process, restarts one that
dies, and stops them all."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import aiohttp
import pytest

from refstream.settings import KafkaSettings
from tests.support.pipeline import SECRET, free_port
from tests.support.processes import RefstreamProcess, kafka_env, wait_until

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def command_of(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


async def test_run_restarts_a_dead_child_and_sigterm_stops_every_process(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    ingress_port, query_port = free_port(), free_port()
    env = {
        **kafka_env(kafka_settings),
        "REFSTREAM_WEBHOOK_SECRETS": SECRET,
        "REFSTREAM_INGRESS_PORT": str(ingress_port),
        "REFSTREAM_QUERY_API_PORT": str(query_port),
        "REFSTREAM_CLICKHOUSE_DSN": f"chdb://{tmp_path / 'clickhouse'}",
    }
    run = RefstreamProcess(["run"], env, tmp_path / "run.log").start()
    assert run.proc is not None
    try:
        async with aiohttp.ClientSession() as session:

            async def up(url: str) -> bool:
                try:
                    async with session.get(url) as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(
                lambda: up(f"http://127.0.0.1:{ingress_port}/healthz"), 90, 0.5, "the ingress"
            )
            await wait_until(
                lambda: up(f"http://127.0.0.1:{query_port}/health"), 90, 0.5, "the sink"
            )
        children = children_of(run.proc.pid)
        assert len(children) == 3, run.log_tail()  # ingress, worker, sink
        (worker,) = [pid for pid in children if command_of(pid)[-1] == "worker"]
        os.kill(worker, signal.SIGKILL)

        def worker_restarted() -> bool:
            return any(
                command_of(pid)[-1:] == ["worker"] for pid in children_of(run.proc.pid) - {worker}
            )

        await wait_until(worker_restarted, 30, 0.5, "a new worker")
        assert children - {worker} <= children_of(run.proc.pid)  # the others kept running
        assert "child_exited" in run.log_tail()
        children = children_of(run.proc.pid)
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(timeout=90) == 0, run.log_tail()
        assert not {pid for pid in children if Path(f"/proc/{pid}").exists()}
    finally:
        run.kill()
