"""`refstream ingress` refuses to start without a webhook secret, with a clear message."""

from __future__ import annotations

import argparse

import pytest

from ingress.server import main
from refstream.cli import main as cli_main
from refstream.settings import Settings


def test_no_secret_no_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(Settings(), argparse.Namespace()) == 2
    err = capsys.readouterr().err
    assert "REFSTREAM_WEBHOOK_SECRETS" in err and "whsec_" in err


def test_the_cli_refuses_a_secret_that_is_not_a_webhook_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFSTREAM_WEBHOOK_SECRETS", "sk_live_not_a_webhook_secret")
    assert cli_main(["ingress"]) == 2
    err = capsys.readouterr().err
    assert "whsec_" in err and "sk_live_not_a_webhook_secret" not in err
