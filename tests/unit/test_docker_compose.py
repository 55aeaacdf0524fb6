"""docker-compose.yml agrees with the settings module and the CLI (no Docker engine here,
so the file is checked, not run)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from refstream.cli import build_parser
from refstream.settings import REPO_ROOT, load_settings
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
    assert f"{ingress.port}:{ingress.port}" in SERVICES["ingress"]["ports"]
    assert ingress.host == "0.0.0.0"  # noqa: S104 - must listen beyond the container
    assert load_settings(_resolved_env(SERVICES["ingress"])).ingress.webhook_secrets
    sink = load_settings(_resolved_env(SERVICES["sink"])).sink
    assert not sink.embedded, "in compose the sink writes the ClickHouse server"
    assert "clickhouse:8123" in sink.clickhouse_target
    assert f"{sink.query_api_port}:{sink.query_api_port}" in SERVICES["sink"]["ports"]
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
