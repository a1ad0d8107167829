"""The Sentry settings: opt-in, the DSN from the environment only (command lines are visible to every
user of the machine), a clear error for a value that is not a DSN that never echoes it."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from vpsie_autoscaler.config import Settings, format_error
from vpsie_autoscaler.run import add_arguments

DSN = "https://0123456789abcdef@o1.ingest.sentry.io/42"


def test_sentry_is_off_by_default_and_an_empty_dsn_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(leader_elect=False).sentry_dsn is None
    monkeypatch.setenv("VPSIE_AUTOSCALER_SENTRY_DSN", "")
    assert Settings(leader_elect=False).sentry_dsn is None


def test_the_dsn_comes_from_the_environment_and_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPSIE_AUTOSCALER_SENTRY_DSN", DSN)
    monkeypatch.setenv("VPSIE_AUTOSCALER_SENTRY_ENVIRONMENT", "staging")
    settings = Settings(leader_elect=False)
    assert settings.sentry_dsn is not None
    assert settings.sentry_dsn.get_secret_value() == DSN
    assert settings.sentry_environment == "staging"
    assert "0123456789abcdef" not in repr(settings)


def test_the_dsn_is_no_flag_but_the_environment_is() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {opt for action in parser._actions for opt in action.option_strings}
    assert "--sentry-environment" in flags
    assert "--sentry-dsn" not in flags


def test_a_value_that_is_not_a_dsn_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPSIE_AUTOSCALER_SENTRY_DSN", "secret-looking-value")
    with pytest.raises(ValidationError) as exc:
        Settings(leader_elect=False)
    message = format_error(exc.value)
    assert "VPSIE_AUTOSCALER_SENTRY_DSN" in message
    assert "not a Sentry DSN" in message
    assert "secret-looking-value" not in message
