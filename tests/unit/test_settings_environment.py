"""How settings are read from ``VPSIE_AUTOSCALER_*`` variables: the names in any case, unknown names
ignored (reported by the start-up warning instead), and flags over the environment over defaults —
what pydantic-settings' ``BaseSettings`` did with ``env_prefix`` and ``case_sensitive=False``."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsie_autoscaler.config import Settings, environment_values, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("VPSIE_AUTOSCALER_"):
            monkeypatch.delenv(key)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"VPSIE_AUTOSCALER_DRY_RUN": "true"}, {"dry_run": "true"}),
        ({"vpsie_autoscaler_dry_run": "true"}, {"dry_run": "true"}),
        ({"Vpsie_Autoscaler_Scan_Interval": "5"}, {"scan_interval": "5"}),
        ({"VPSIE_AUTOSCALER_DRYRUN": "true"}, {}),  # a misspelling is no setting
        ({"VPSIE_AUTOSCALER_METRICS_SERVICE_HOST": "10.0.0.1"}, {}),  # a service link
        ({"VPSIE_AUTOSCALER_": "x", "DRY_RUN": "true", "VPSIE_DRY_RUN": "true"}, {}),
        ({"VPSIE_AUTOSCALER_KUBECONFIG": ""}, {"kubeconfig": ""}),  # validated to None
    ],
)
def test_which_variables_are_settings(environ: dict[str, str], expected: dict[str, str]) -> None:
    assert environment_values(environ) == expected


def test_the_environment_is_read_at_construction_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("vpsie_autoscaler_dry_run", "true")
    monkeypatch.setenv("VPSIE_AUTOSCALER_SCAN_INTERVAL", "30")
    monkeypatch.setenv("VPSIE_AUTOSCALER_KUBECONFIG", "")
    monkeypatch.setenv("VPSIE_AUTOSCALER_SENTRY_DSN", "https://key@sentry.example/1")
    settings = Settings(scan_interval=7)
    assert settings.dry_run is True
    assert settings.scan_interval == 7
    assert settings.kubeconfig is None
    assert settings.sentry_dsn is not None
    monkeypatch.delenv("vpsie_autoscaler_dry_run")
    assert load_settings().dry_run is False  # read again, not remembered


def test_a_copy_does_not_read_the_environment_again(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    monkeypatch.setenv("VPSIE_AUTOSCALER_DRY_RUN", "true")
    assert settings.model_copy(update={"scan_interval": 3.0}).dry_run is False


@given(st.sampled_from(sorted(Settings.model_fields)), st.data())
def test_every_setting_is_read_whatever_the_case_of_its_name(field: str, data: st.DataObject) -> None:
    name = "".join(
        data.draw(st.sampled_from([c.lower(), c.upper()])) for c in f"VPSIE_AUTOSCALER_{field.upper()}"
    )
    assert environment_values({name: "value", "OTHER": "x"}) == {field: "value"}
