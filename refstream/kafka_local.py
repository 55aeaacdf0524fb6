"""A local single-node Apache Kafka (KRaft broker + controller) from the official jars.

No Docker engine is needed: Maven resolves `org.apache.kafka:kafka_2.13` (version pinned in
deploy/kafka/pom.xml) into `<local_dir>/libs`, and the broker runs as a plain JVM process.

start:  1. resolve jars (once)  2. write config  3. format storage (once)
        4. launch `kafka.Kafka` detached, pid in `<local_dir>/broker.pid`
        5. wait until the broker answers a metadata request.
Starting it while it runs is harmless (steps 1-4 are skipped); `stop` sends SIGTERM,
waits for a clean shutdown and falls back to SIGKILL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from refstream.settings import REPO_ROOT, KafkaSettings

log = logging.getLogger(__name__)

POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


class LocalKafkaError(RuntimeError):
    """The local broker could not be installed, started or stopped; the message says why."""


@dataclass(frozen=True)
class LocalKafka:
    root: Path
    port: int = 9092
    heap: str = "768m"

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> LocalKafka:
        return cls(root=kafka.local_dir, port=kafka.local_port, heap=kafka.local_heap)

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- steps -------------------------------------------------------------------------

    def resolve_jars(self) -> None:
        marker = self.libs / ".resolved"
        if marker.exists() and marker.read_text() == POM.read_text():
            return
        if shutil.which("mvn") is None:
            raise LocalKafkaError("Maven ('mvn') is not on PATH; it is needed to fetch Kafka")
        self.libs.mkdir(parents=True, exist_ok=True)
        for old in self.libs.glob("*.jar"):
            old.unlink()
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise LocalKafkaError(f"mvn could not resolve Kafka: {result.stdout[-2000:]}")
        marker.write_text(POM.read_text())

    def write_config(self) -> None:
        controller_port = self.port + 1
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data}",
                    # One node: every internal topic must fit on it.
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "min.insync.replicas=1",
                    "default.replication.factor=1",
                    # refstream creates its topics explicitly, with their partition counts.
                    "auto.create.topics.enable=false",
                    "num.partitions=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.root / "log4j2.properties").write_text(
            _LOG4J2_PROPERTIES.format(log=self.root / "server.log")
        )

    def format_storage(self) -> None:
        if (self.data / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                # One argument: a urlsafe id may start with "-", which argparse would
                # otherwise read as an option (a flaky "expected one argument").
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.config_file),
                "--ignore-formatted",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise LocalKafkaError(f"formatting storage failed: {result.stderr[-2000:]}")

    def launch(self) -> int:
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                [*self._java(), "kafka.Kafka", str(self.config_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the shell that started it
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    # -- lifecycle ---------------------------------------------------------------------

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        if _is_zombie(pid):
            # Exited, but its parent (us, e.g. `refstream run`) has not reaped it yet.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        # A recycled pid is not our broker; an empty cmdline is a JVM mid-exec at start-up.
        if cmdline and b"java" not in cmdline:
            return None
        return pid

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start the broker unless one serves already; True when this call launched it
        (so that whoever started it, e.g. `refstream run`, also stops it)."""
        launched = False
        self.resolve_jars()  # even when another broker serves the port: tests reuse the jars
        if self.running_pid() is None:
            if _port_open(self.port):
                if asyncio.run(broker_answers(self.bootstrap)):
                    # Another broker (another checkout's, or one run by hand) serves this
                    # port: use it rather than fail; `stop` will leave it alone.
                    log.info("kafka_already_serving", extra={"bootstrap": self.bootstrap})
                    return False
                raise LocalKafkaError(
                    f"port {self.port} is taken by a process that is not a Kafka broker"
                )
            self.write_config()
            self.format_storage()
            pid = self.launch()
            launched = True
            log.info("kafka_launched", extra={"pid": pid, "bootstrap": self.bootstrap})
        self.wait_ready(timeout_s)
        return launched

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                raise LocalKafkaError(f"broker exited; see {self.log_file}")
            if asyncio.run(broker_answers(self.bootstrap)):
                log.info("kafka_ready", extra={"bootstrap": self.bootstrap})
                return
            time.sleep(0.5)
        raise LocalKafkaError(f"broker not ready after {timeout_s:.0f}s; see {self.log_file}")

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker; returns False when none was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        log.info("kafka_stopped", extra={"pid": pid})
        return True

    def _java(self) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            f"-Xms{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
        ]


async def broker_answers(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a broker at `bootstrap` answers a metadata request."""
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    # A refused connection is the expected answer while polling; aiokafka logs it as an error.
    aiokafka_log = logging.getLogger("aiokafka")
    previous_level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    finally:
        await client.close()
        aiokafka_log.setLevel(previous_level)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


_LOG4J2_PROPERTIES = """\
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""
