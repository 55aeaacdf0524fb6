"""The settings module: parsing, validation, redaction, and the README staying in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from refstream.settings import REPO_ROOT, Secret, SettingsError, load_settings

SETTINGS_SOURCE = (REPO_ROOT / "refstream" / "settings.py").read_text()
README = (REPO_ROOT / "README.md").read_text()
ENV_VAR = re.compile(r"REFSTREAM_[A-Z0-9_]+")


def documented_in_settings() -> set[str]:
    return set(ENV_VAR.findall(SETTINGS_SOURCE)) - {"REFSTREAM_"}


def read_by_loader() -> set[str]:
    names = re.findall(r'_(?:get|int|str|secrets|dsn)\(\s*env,\s*"([A-Z0-9_]+)"', SETTINGS_SOURCE)
    return {f"REFSTREAM_{name}" for name in names}


def test_every_variable_the_loader_reads_is_documented_in_settings_and_readme() -> None:
    read = read_by_loader()
    assert read, "the loader reads no variables: the pattern above is stale"
    assert read <= documented_in_settings(), read - documented_in_settings()
    missing = {name for name in read if f"`{name}`" not in README}
    assert not missing, f"README.md lacks: {sorted(missing)}"


def test_readme_documents_no_variable_that_does_not_exist() -> None:
    stale = (
        set(ENV_VAR.findall(README)) - read_by_loader() - {"REFSTREAM_KEEP_KAFKA", "REFSTREAM_VENV"}
    )
    assert not stale, f"README.md documents unknown variables: {sorted(stale)}"


def test_defaults_load_from_an_empty_environment() -> None:
    settings = load_settings({})
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.ingress.webhook_secrets == ()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"REFSTREAM_INGRESS_PORT": "eighty"}, "REFSTREAM_INGRESS_PORT"),
        ({"REFSTREAM_EVENTS_PARTITIONS": "0"}, "REFSTREAM_EVENTS_PARTITIONS"),
        ({"REFSTREAM_WEBHOOK_SECRETS": "sk_live_123"}, "REFSTREAM_WEBHOOK_SECRETS"),
        ({"REFSTREAM_LOG_LEVEL": "loud"}, "REFSTREAM_LOG_LEVEL"),
        ({"REFSTREAM_STRIPE_API_KEY": "pk_live_publishable"}, "REFSTREAM_STRIPE_API_KEY"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        load_settings(env)


def test_secrets_never_show_in_repr_or_errors() -> None:
    secret_value = "whsec_" + "a" * 32
    settings = load_settings({"REFSTREAM_WEBHOOK_SECRETS": f"{secret_value}, whsec_second"})
    assert [s.value for s in settings.ingress.webhook_secrets] == [secret_value, "whsec_second"]
    assert secret_value not in repr(settings)
    assert secret_value not in str(Secret(secret_value))
    with pytest.raises(SettingsError) as excinfo:
        load_settings({"REFSTREAM_WEBHOOK_SECRETS": "sk_live_verysecret"})
    assert "verysecret" not in str(excinfo.value)
    api = load_settings({"REFSTREAM_STRIPE_API_KEY": "sk_test_alsosecret"})
    assert "alsosecret" not in repr(api)


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "exec scripts/test" in ci
    assert "scripts/test" in README
    assert Path(REPO_ROOT / "scripts" / "test").stat().st_mode & 0o111
