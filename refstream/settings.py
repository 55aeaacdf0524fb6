"""The one settings module: every knob of every refstream process, read from the environment.

Each field documents its environment variable and default; README.md's configuration table
mirrors them (a test keeps the two in step). `load_settings()` validates across fields at
start-up so that bad configuration fails fast with a message naming the variable.

Each component owns one section (KafkaSettings, IngressSettings, ...); a process reads the
whole object once and passes the sections it needs down explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ENV_PREFIX = "REFSTREAM_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """Configuration that cannot work; the message names the variable at fault."""


@dataclass(frozen=True)
class Secret:
    """A secret value whose repr and str never reveal it (logs, tracebacks, metrics)."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__


@dataclass(frozen=True)
class KafkaSettings:
    # REFSTREAM_KAFKA_BOOTSTRAP: comma-separated host:port list of the Kafka cluster.
    bootstrap: str = "127.0.0.1:9092"
    # REFSTREAM_TOPIC_PREFIX: prepended to every topic name (isolates tests and tenants).
    topic_prefix: str = ""
    # REFSTREAM_EVENTS_PARTITIONS: partitions of stripe.events and of the per-customer
    # topics; the most workers that can share the load.
    events_partitions: int = 8
    # REFSTREAM_REPLICATION_FACTOR: replication of every topic refstream creates
    # (1 for the local single-node broker, 3 for a production cluster).
    replication_factor: int = 1
    # REFSTREAM_LOCAL_KAFKA_DIR: where `refstream kafka start` keeps jars, config, data, logs.
    local_dir: Path = REPO_ROOT / ".local" / "kafka"
    # REFSTREAM_LOCAL_KAFKA_PORT: the local broker's client port (controller uses port + 1).
    local_port: int = 9092
    # REFSTREAM_LOCAL_KAFKA_HEAP: JVM heap of the local broker.
    local_heap: str = "768m"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@dataclass(frozen=True)
class IngressSettings:
    # REFSTREAM_INGRESS_HOST / REFSTREAM_INGRESS_PORT: where the webhook endpoint listens.
    host: str = "127.0.0.1"
    port: int = 8080
    # REFSTREAM_WEBHOOK_SECRETS: comma-separated whsec_... signing secrets; several while a
    # secret is being rolled. Required by `refstream ingress`.
    webhook_secrets: tuple[Secret, ...] = ()
    # REFSTREAM_SIGNATURE_TOLERANCE_S: accepted clock difference of the signature
    # timestamp, in both directions.
    signature_tolerance_s: int = 300
    # REFSTREAM_MAX_BODY_BYTES: larger webhook bodies are refused with 413.
    max_body_bytes: int = 1024 * 1024
    # REFSTREAM_PUBLISH_TIMEOUT_MS: how long a request waits for the Kafka ack before 503.
    publish_timeout_ms: int = 10_000
    # REFSTREAM_PRODUCER_LINGER_MS: how long the producer waits to fill a batch; concurrent
    # requests share batches.
    producer_linger_ms: int = 5


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = KafkaSettings()
    ingress: IngressSettings = IngressSettings()
    # REFSTREAM_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{ENV_PREFIX}{name} must be >= {minimum}, got {value}")
    return value


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _get(env, name)
    return default if raw is None else raw


def _secrets(env: Mapping[str, str], name: str) -> tuple[Secret, ...]:
    raw = _get(env, name)
    if raw is None:
        return ()
    secrets = tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())
    for secret in secrets:
        if not secret.value.startswith("whsec_"):
            # Never echo the value: it may be a real secret pasted into the wrong variable.
            raise SettingsError(f"{ENV_PREFIX}{name}: every secret must start with 'whsec_'")
    return secrets


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    k, i = KafkaSettings(), IngressSettings()
    kafka = KafkaSettings(
        bootstrap=_str(env, "KAFKA_BOOTSTRAP", k.bootstrap),
        topic_prefix=_str(env, "TOPIC_PREFIX", k.topic_prefix),
        events_partitions=_int(env, "EVENTS_PARTITIONS", k.events_partitions, minimum=1),
        replication_factor=_int(env, "REPLICATION_FACTOR", k.replication_factor, minimum=1),
        local_dir=Path(_str(env, "LOCAL_KAFKA_DIR", str(k.local_dir))),
        local_port=_int(env, "LOCAL_KAFKA_PORT", k.local_port, minimum=1),
        local_heap=_str(env, "LOCAL_KAFKA_HEAP", k.local_heap),
    )
    ingress = IngressSettings(
        host=_str(env, "INGRESS_HOST", i.host),
        port=_int(env, "INGRESS_PORT", i.port),
        webhook_secrets=_secrets(env, "WEBHOOK_SECRETS"),
        signature_tolerance_s=_int(env, "SIGNATURE_TOLERANCE_S", i.signature_tolerance_s, 1),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", i.max_body_bytes, minimum=1024),
        publish_timeout_ms=_int(env, "PUBLISH_TIMEOUT_MS", i.publish_timeout_ms, minimum=1),
        producer_linger_ms=_int(env, "PRODUCER_LINGER_MS", i.producer_linger_ms),
    )
    log_level = _str(env, "LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"{ENV_PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return Settings(kafka=kafka, ingress=ingress, log_level=log_level)
