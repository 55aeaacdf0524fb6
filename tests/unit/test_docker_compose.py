"""docker-compose.yml agrees with the settings module and the CLI (no Docker engine here,
so the file is checked, not run)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from refstream.cli import build_parser
from refstream.settings import REPO_ROOT, SettingsError, load_settings
from tests.unit.test_settings import read_by_loader

COMPOSE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
REFSTREAM_SERVICES = {n: s for n, s in SERVICES.items() if s.get("image") == "refstream:local"}


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def _resolved_env(service: dict[str, Any]) -> dict[str, str]:
    # ${VAR:?message} placeholders stand for values the user must give; use a valid one.
    env = _env(service)
    return {k: re.sub(r"\$\{[^}]+\}", "whsec_compose_test", v) for k, v in env.items()}


def _published(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port ("" ip: all interfaces)."""
    published = []
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        ip = parts[0] if len(parts) == 3 else ""
        published.append((ip, parts[-2] if len(parts) > 1 else "", parts[-1]))
    return published


def test_refstream_services_exist_and_run_real_subcommands() -> None:
    assert set(REFSTREAM_SERVICES) >= {"topics", "ingress", "worker", "sink"}
    parser = build_parser()
    for name, service in REFSTREAM_SERVICES.items():
        args = parser.parse_args(service["command"])
        assert args.handler, name


@pytest.mark.parametrize("name", sorted(REFSTREAM_SERVICES))
def test_every_variable_is_a_real_setting_and_loads(name: str) -> None:
    env = _resolved_env(REFSTREAM_SERVICES[name])
    unknown = set(env) - read_by_loader()
    assert not unknown, f"{name}: variables the settings module does not read: {unknown}"
    load_settings(env)  # raises SettingsError naming the variable if a value is invalid


def test_services_reach_each_other_where_settings_say() -> None:
    kafka = SERVICES["kafka"]["environment"]
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split("//")[1]
    for name, service in REFSTREAM_SERVICES.items():
        assert load_settings(_resolved_env(service)).kafka.bootstrap == advertised, name
    ingress = load_settings(_resolved_env(SERVICES["ingress"])).ingress
    assert ("127.0.0.1", str(ingress.port), str(ingress.port)) in _published(SERVICES["ingress"])
    assert ingress.host == "0.0.0.0"  # noqa: S104 - must listen beyond the container
    assert load_settings(_resolved_env(SERVICES["ingress"])).ingress.webhook_secrets
    sink = load_settings(_resolved_env(SERVICES["sink"])).sink
    assert not sink.embedded, "in compose the sink writes the ClickHouse server"
    assert "clickhouse:8123" in sink.clickhouse_target
    port = str(sink.query_api_port)
    assert ("127.0.0.1", port, port) in _published(SERVICES["sink"])
    ch = SERVICES["clickhouse"]["environment"]
    assert sink.clickhouse_target.endswith("/" + ch["CLICKHOUSE_DB"])


def test_images_are_pinned_and_dependencies_exist() -> None:
    for name, service in SERVICES.items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned image {image}"
        for dependency in service.get("depends_on") or {}:
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:4.")
    pom = (REPO_ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    local_version = re.search(r"<kafka.version>([^<]+)<", pom)
    assert local_version and SERVICES["kafka"]["image"] == f"apache/kafka:{local_version[1]}"


def test_no_port_is_published_beyond_loopback() -> None:
    for name, service in SERVICES.items():
        for ip, host_port, _ in _published(service):
            assert ip in ("127.0.0.1", "::1"), f"{name} publishes {host_port} on all interfaces"


def test_no_credential_has_a_default_in_the_file() -> None:
    ch = _env(SERVICES["clickhouse"])
    assert re.fullmatch(r"\$\{CLICKHOUSE_PASSWORD:\?[^}]+\}", ch["CLICKHOUSE_PASSWORD"])
    dsn = _env(SERVICES["sink"])["REFSTREAM_CLICKHOUSE_DSN"]
    # The sink's DSN takes the same user and password from the environment.
    assert "${CLICKHOUSE_PASSWORD:?" in dsn and ch["CLICKHOUSE_USER"] in dsn
    ingress = _env(SERVICES["ingress"])["REFSTREAM_WEBHOOK_SECRETS"]
    assert ingress.startswith("${REFSTREAM_WEBHOOK_SECRETS:?")


def test_the_report_api_beyond_loopback_requires_its_token_from_the_environment() -> None:
    env = _env(SERVICES["sink"])
    assert env["REFSTREAM_QUERY_API_HOST"] == "0.0.0.0"  # noqa: S104 - inside the container
    assert env["REFSTREAM_QUERY_API_TOKEN"].startswith("${REFSTREAM_QUERY_API_TOKEN:?")
    sink = load_settings(_resolved_env(SERVICES["sink"])).sink
    assert sink.query_api_token is not None
    without = {k: v for k, v in _resolved_env(SERVICES["sink"]).items() if "TOKEN" not in k}
    with pytest.raises(SettingsError, match="REFSTREAM_QUERY_API_TOKEN"):
        load_settings(without)
