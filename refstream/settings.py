"""The one settings module: every knob of every refstream process, read from the environment.

Each field documents its environment variable and default; README.md's configuration table
mirrors them (a test keeps the two in step). `load_settings()` validates across fields at
start-up so that bad configuration fails fast with a message naming the variable.

Each component owns one section (KafkaSettings, IngressSettings, ...); a process reads the
whole object once and passes the sections it needs down explicitly.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

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
    # REFSTREAM_MAX_BODY_BYTES: larger webhook bodies are refused with 413. The default
    # leaves room for the envelope under Kafka's default 1 MB record limit.
    max_body_bytes: int = 512 * 1024
    # REFSTREAM_PUBLISH_TIMEOUT_MS: how long a request waits for the Kafka ack before 503.
    publish_timeout_ms: int = 10_000
    # REFSTREAM_PRODUCER_LINGER_MS: how long the producer waits to fill a batch; concurrent
    # requests share batches.
    producer_linger_ms: int = 5
    # REFSTREAM_MAX_JSON_DEPTH: deeper nesting of objects/arrays in a webhook body is
    # refused with 400 (Stripe events nest about 10 deep; the streams parse recursively).
    max_json_depth: int = 64
    # REFSTREAM_BODY_READ_TIMEOUT_MS: a client that has not sent its whole body within this
    # time gets 408 (a slow sender must not hold a connection and a handler for ever).
    body_read_timeout_ms: int = 10_000
    # REFSTREAM_MAX_HEADER_BYTES: longest request line and header field; longer ones get
    # a JSON 400 (Stripe's headers are a few hundred bytes).
    max_header_bytes: int = 8190
    # REFSTREAM_INGRESS_ADMIN_HOST / REFSTREAM_INGRESS_ADMIN_PORT: when the port is set,
    # /healthz, /readyz and /metrics are served only there and the public listener serves
    # only the webhook path. Unset (the default): everything on the one listener.
    admin_host: str = "127.0.0.1"
    admin_port: int | None = None


@dataclass(frozen=True)
class SinkSettings:
    # REFSTREAM_CLICKHOUSE_DSN: where the sinks write and the reports read.
    # `chdb:///absolute/folder` is the embedded engine (one process per folder);
    # `http(s)://user:password@host:port/database` a ClickHouse server. A Secret because a
    # server DSN may carry a password. Default: chdb://REPO_ROOT/.local/clickhouse.
    clickhouse_dsn: Secret = Secret(f"chdb://{REPO_ROOT / '.local' / 'clickhouse'}")
    # REFSTREAM_SINK_BATCH_MAX_ROWS: a topic-partition's batch is written once it holds this
    # many records (ClickHouse prefers few large inserts).
    batch_max_rows: int = 20_000
    # REFSTREAM_SINK_BATCH_MAX_WAIT_MS: ...or, once the sink's writer is free, when its
    # oldest record waited this long. 0: as soon as the writer is free, so records that
    # arrive during a write wait for the next one ("batch while busy": windows grow with
    # the load, latency stays one write or two).
    batch_max_wait_ms: int = 0
    # REFSTREAM_SINK_GROUP_ID: Kafka consumer group of the sinks (offsets committed there).
    group_id: str = "refstream-sinks"
    # REFSTREAM_SINK_RETRY_INITIAL_MS / REFSTREAM_SINK_RETRY_MAX_MS: backoff between
    # attempts while ClickHouse refuses writes (doubles from initial up to max).
    retry_initial_ms: int = 200
    retry_max_ms: int = 30_000
    # REFSTREAM_QUERY_API_HOST / REFSTREAM_QUERY_API_PORT: the read-only report API the sink
    # process serves (in embedded mode the only way to read while the sink owns the folder).
    query_api_host: str = "127.0.0.1"
    query_api_port: int = 8124
    # REFSTREAM_QUERY_API_TOKEN: bearer token the report API requires (and `refstream
    # report` sends) when set; required when REFSTREAM_QUERY_API_HOST is not a loopback
    # address. At least 16 characters.
    query_api_token: Secret | None = None
    # REFSTREAM_SINK_METRICS_PORT: where the sink serves Prometheus metrics (/metrics on
    # REFSTREAM_METRICS_HOST); unset: not served.
    metrics_port: int | None = None
    # REFSTREAM_DASHBOARD_USERS: comma-separated `name:password` logins of the web
    # dashboard (HTTP basic auth, served with the report API under /dashboard/). Writes
    # (program changes, payouts) need one of them or the bearer token, and each change
    # records the login's name. Names: letters, digits, `_ . @ -`; passwords 16+ characters.
    dashboard_users: tuple[tuple[str, Secret], ...] = ()

    @property
    def embedded(self) -> bool:
        return self.clickhouse_dsn.value.startswith("chdb:")

    @property
    def clickhouse_target(self) -> str:
        """The DSN without credentials, for logs and messages."""
        if self.embedded:
            return self.clickhouse_dsn.value  # a folder path: no credentials to hide
        parsed = urlsplit(self.clickhouse_dsn.value)
        host = parsed.netloc.rpartition("@")[2]
        return urlunsplit((parsed.scheme, host, parsed.path, "", ""))


@dataclass(frozen=True)
class StreamsSettings:
    # REFSTREAM_WORKER_APP_ID: the consumer group of the workers and the prefix of
    # their table changelog topics. Change it only to start a ledger from scratch.
    app_id: str = "refstream-worker"
    # REFSTREAM_WORKER_BATCH_MAX: most records a worker decides per batch (outputs, state
    # and offsets are made durable once per batch).
    batch_max: int = 2000
    # REFSTREAM_REFERRAL_CODE_KEY / REFSTREAM_NEW_USER_ID_KEY / REFSTREAM_ORGANIZATION_ID_KEY:
    # the Stripe metadata keys that carry the referral.
    referral_code_key: str = "cello_ucc"
    new_user_id_key: str = "new_user_id"
    organization_id_key: str = "new_user_organization_id"
    # REFSTREAM_ATTRIBUTION_WINDOW_S: how long revenue without an attribution waits for one
    # (Stripe does not order events) before it is recorded as organic.
    attribution_window_s: int = 3 * 86_400
    # REFSTREAM_ONE_TIME_WINDOW_S: how long a charge that no invoice claimed waits before it
    # counts as a one-time payment (Stripe sends a charge and its invoice within seconds).
    one_time_window_s: int = 86_400
    # REFSTREAM_TENURE_WINDOW_S: how long invoices wait for the customer's first paid
    # invoice (the tenure anchor) before the earliest one seen becomes the anchor.
    tenure_window_s: int = 3 * 86_400
    # REFSTREAM_DEDUP_WINDOW_S: event ids are remembered (per customer) this long, by the
    # event's Stripe `created`, to skip redeliveries cheaply, and settled payments keep their
    # full detail this long before they shrink to a summary. It spans Stripe's 3-day retry
    # horizon and the 30 days its Events API lists back (what `refstream replay` and
    # backfills read); older redeliveries and replays meet idempotent transitions instead.
    dedup_window_s: int = 35 * 86_400
    # REFSTREAM_SETTLED_HORIZON_DAYS: how long after a payment its refunds and disputes can
    # still claw its reward back. Card networks allow disputes up to 120 days after the
    # payment as a rule and 540 days at most (Visa, Mastercard), and a dispute runs 2-3
    # months more; Stripe sets no general time limit on card refunds. Past the horizon a
    # payment's summary is dropped: a refund or a replayed payment event for it is
    # dead-lettered with a clear reason (book the clawback by hand), never silently missed.
    settled_horizon_days: int = 730
    # REFSTREAM_STRIPE_API_KEY: optional (sk_... or a restricted rk_... key that can read
    # customers). With it, revenue that waited REFSTREAM_LOOKUP_AFTER_S for its attribution
    # makes the worker read the customer's metadata from the Stripe API (customers created
    # before refstream listened never send customer.created). Only customers of the key's
    # mode are looked up.
    stripe_api_key: Secret | None = None
    # REFSTREAM_STRIPE_API_BASE: the Stripe API's base URL (a stand-in in tests).
    stripe_api_base: str = "https://api.stripe.com"
    # REFSTREAM_LOOKUP_AFTER_S: how long revenue waits for its attribution event before the
    # worker asks the Stripe API (when a key is set).
    lookup_after_s: int = 60
    # REFSTREAM_TICK_INTERVAL_S: how often workers check attribution windows and holds.
    tick_interval_s: int = 10
    # REFSTREAM_WORKER_SESSION_TIMEOUT_S: how soon the group notices a dead worker and hands
    # its partitions to the others.
    session_timeout_s: int = 10
    # REFSTREAM_WORKER_METRICS_PORT: where the worker serves Prometheus metrics (/metrics on
    # REFSTREAM_METRICS_HOST); unset: not served. One port per worker on a host.
    metrics_port: int | None = None


@dataclass(frozen=True)
class BackfillSettings:
    # REFSTREAM_BACKFILL_REQUESTS_PER_S: most Stripe API requests per second the backfill
    # makes (Stripe allows about 100/s in live mode and 25/s in test mode per account, shared
    # with the account's own traffic; 429s are waited out with Retry-After anyway).
    requests_per_s: float = 10.0
    # REFSTREAM_BACKFILL_STATE_DIR: where the backfill keeps its cursors (one JSON file per
    # account, mode and --since), so an interrupted run resumes.
    state_dir: Path = REPO_ROOT / ".local" / "backfill"


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = KafkaSettings()
    ingress: IngressSettings = IngressSettings()
    streams: StreamsSettings = StreamsSettings()
    sink: SinkSettings = SinkSettings()
    backfill: BackfillSettings = BackfillSettings()
    # REFSTREAM_METRICS_HOST: address the worker's and the sink's metrics listeners bind.
    metrics_host: str = "127.0.0.1"
    # REFSTREAM_LOG_LEVEL: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"
    # REFSTREAM_LOG_FORMAT: auto (readable on a terminal, JSON lines otherwise), json or text.
    log_format: str = "auto"


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


def _opt_int(env: Mapping[str, str], name: str, minimum: int = 0) -> int | None:
    return None if _get(env, name) is None else _int(env, name, 0, minimum)


def is_loopback(host: str) -> bool:
    """True when `host` can only be reached from this machine (empty = every interface)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


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


MIN_TOKEN_CHARS = 16


def _token(raw: str | None) -> Secret | None:
    if raw is None:
        return None
    if len(raw) < MIN_TOKEN_CHARS or raw != raw.strip():
        # Never echo the value, not even its length.
        raise SettingsError(
            f"{ENV_PREFIX}QUERY_API_TOKEN must be at least {MIN_TOKEN_CHARS} characters "
            "without surrounding spaces"
        )
    return Secret(raw)


_USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _users(raw: str | None) -> tuple[tuple[str, Secret], ...]:
    if raw is None:
        return ()
    users: list[tuple[str, Secret]] = []
    for n, entry in enumerate(part for part in raw.split(",") if part.strip()):
        name, sep, password = entry.strip().partition(":")
        # Messages name the entry's position, never a password (nor its length).
        if not sep or not _USER_NAME.match(name):
            raise SettingsError(
                f"{ENV_PREFIX}DASHBOARD_USERS entry {n + 1}: expected name:password with a "
                "name of letters, digits, '_', '.', '@', '-'"
            )
        if len(password) < MIN_TOKEN_CHARS:
            raise SettingsError(
                f"{ENV_PREFIX}DASHBOARD_USERS entry {n + 1} ({name}): the password must be at "
                f"least {MIN_TOKEN_CHARS} characters"
            )
        if any(existing == name for existing, _ in users):
            raise SettingsError(f"{ENV_PREFIX}DASHBOARD_USERS: {name} is given twice")
        users.append((name, Secret(password)))
    return tuple(users)


def _dsn(env: Mapping[str, str], name: str, default: Secret) -> Secret:
    raw = _get(env, name)
    if raw is None:
        return default
    parsed = urlsplit(raw)
    # Messages name the variable and the rule, never the value (it may hold a password).
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise SettingsError(f"{ENV_PREFIX}{name}: an http(s) DSN needs a host")
    elif parsed.scheme == "chdb":
        if parsed.netloc or not parsed.path.startswith("/"):
            raise SettingsError(f"{ENV_PREFIX}{name}: use chdb:///absolute/folder")
    else:
        raise SettingsError(f"{ENV_PREFIX}{name} must start with chdb://, http:// or https://")
    return Secret(raw)


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
        max_json_depth=_int(env, "MAX_JSON_DEPTH", i.max_json_depth, minimum=2),
        body_read_timeout_ms=_int(env, "BODY_READ_TIMEOUT_MS", i.body_read_timeout_ms, 1),
        max_header_bytes=_int(env, "MAX_HEADER_BYTES", i.max_header_bytes, minimum=1024),
        admin_host=_str(env, "INGRESS_ADMIN_HOST", i.admin_host),
        admin_port=_opt_int(env, "INGRESS_ADMIN_PORT", minimum=1),
    )
    if ingress.admin_port is not None and ingress.admin_port == ingress.port:
        raise SettingsError(
            f"{ENV_PREFIX}INGRESS_ADMIN_PORT must differ from {ENV_PREFIX}INGRESS_PORT"
        )
    sk = SinkSettings()
    sink = SinkSettings(
        clickhouse_dsn=_dsn(env, "CLICKHOUSE_DSN", sk.clickhouse_dsn),
        batch_max_rows=_int(env, "SINK_BATCH_MAX_ROWS", sk.batch_max_rows, minimum=1),
        batch_max_wait_ms=_int(env, "SINK_BATCH_MAX_WAIT_MS", sk.batch_max_wait_ms, minimum=0),
        group_id=_str(env, "SINK_GROUP_ID", sk.group_id),
        retry_initial_ms=_int(env, "SINK_RETRY_INITIAL_MS", sk.retry_initial_ms, minimum=1),
        retry_max_ms=_int(env, "SINK_RETRY_MAX_MS", sk.retry_max_ms, minimum=1),
        query_api_host=_str(env, "QUERY_API_HOST", sk.query_api_host),
        query_api_port=_int(env, "QUERY_API_PORT", sk.query_api_port, minimum=1),
        query_api_token=_token(_get(env, "QUERY_API_TOKEN")),
        metrics_port=_opt_int(env, "SINK_METRICS_PORT", minimum=1),
        dashboard_users=_users(_get(env, "DASHBOARD_USERS")),
    )
    if sink.query_api_token is None and not is_loopback(sink.query_api_host):
        # Reports are referrers' revenue: never served beyond this machine unauthenticated.
        raise SettingsError(
            f"{ENV_PREFIX}QUERY_API_HOST is not a loopback address: set "
            f"{ENV_PREFIX}QUERY_API_TOKEN (a random string of at least "
            f"{MIN_TOKEN_CHARS} characters) so the report API requires it"
        )
    if sink.retry_max_ms < sink.retry_initial_ms:
        raise SettingsError(
            f"{ENV_PREFIX}SINK_RETRY_MAX_MS must be >= {ENV_PREFIX}SINK_RETRY_INITIAL_MS"
        )
    st = StreamsSettings()
    streams = StreamsSettings(
        app_id=_str(env, "WORKER_APP_ID", st.app_id),
        batch_max=_int(env, "WORKER_BATCH_MAX", st.batch_max, minimum=1),
        referral_code_key=_str(env, "REFERRAL_CODE_KEY", st.referral_code_key),
        new_user_id_key=_str(env, "NEW_USER_ID_KEY", st.new_user_id_key),
        organization_id_key=_str(env, "ORGANIZATION_ID_KEY", st.organization_id_key),
        attribution_window_s=_int(env, "ATTRIBUTION_WINDOW_S", st.attribution_window_s, 1),
        one_time_window_s=_int(env, "ONE_TIME_WINDOW_S", st.one_time_window_s, minimum=1),
        tenure_window_s=_int(env, "TENURE_WINDOW_S", st.tenure_window_s, minimum=1),
        dedup_window_s=_int(env, "DEDUP_WINDOW_S", st.dedup_window_s, minimum=3 * 86_400),
        settled_horizon_days=_int(
            env, "SETTLED_HORIZON_DAYS", st.settled_horizon_days, minimum=180
        ),
        tick_interval_s=_int(env, "TICK_INTERVAL_S", st.tick_interval_s, minimum=1),
        session_timeout_s=_int(env, "WORKER_SESSION_TIMEOUT_S", st.session_timeout_s, 6),
        metrics_port=_opt_int(env, "WORKER_METRICS_PORT", minimum=1),
    )
    api_key = _get(env, "STRIPE_API_KEY")
    if api_key is not None and not api_key.startswith(("sk_", "rk_")):
        # Never echo it: a publishable or webhook key pasted here is still a secret.
        raise SettingsError(
            f"{ENV_PREFIX}STRIPE_API_KEY must be a secret (sk_) or restricted (rk_) key"
        )
    streams = replace(
        streams,
        stripe_api_key=Secret(api_key) if api_key else None,
        stripe_api_base=_str(env, "STRIPE_API_BASE", st.stripe_api_base),
        lookup_after_s=_int(env, "LOOKUP_AFTER_S", st.lookup_after_s, minimum=1),
    )
    b = BackfillSettings()
    rate_raw = _str(env, "BACKFILL_REQUESTS_PER_S", str(b.requests_per_s))
    try:
        requests_per_s = float(rate_raw)
    except ValueError:
        requests_per_s = -1.0
    if not 0 < requests_per_s <= 1000:
        raise SettingsError(
            f"{ENV_PREFIX}BACKFILL_REQUESTS_PER_S must be a number in (0, 1000], got {rate_raw!r}"
        )
    backfill = BackfillSettings(
        requests_per_s=requests_per_s,
        state_dir=Path(_str(env, "BACKFILL_STATE_DIR", str(b.state_dir))),
    )
    log_level = _str(env, "LOG_LEVEL", "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(f"{ENV_PREFIX}LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    log_format = _str(env, "LOG_FORMAT", "auto").lower()
    if log_format not in {"auto", "json", "text"}:
        raise SettingsError(f"{ENV_PREFIX}LOG_FORMAT must be auto, json or text")
    return Settings(
        kafka=kafka,
        ingress=ingress,
        streams=streams,
        sink=sink,
        backfill=backfill,
        metrics_host=_str(env, "METRICS_HOST", "127.0.0.1"),
        log_level=log_level,
        log_format=log_format,
    )
