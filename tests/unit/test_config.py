"""Settings: the configuration contract's names and defaults, precedence, and one-line errors."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vpsie_autoscaler.cli import main
from vpsie_autoscaler.config import Settings, format_error, load_settings

CONTRACT_DEFAULTS = {
    "kubeconfig": None,
    "metrics_bind_address": ":8080",
    "health_probe_bind_address": ":8081",
    "leader_elect": True,
    "leader_election_id": "vpsie-autoscaler",
    "lease_duration": 15,
    "renew_deadline": 10,
    "retry_period": 2,
    "log_level": "info",
    "log_format": "auto",
    "dry_run": False,
    "vpsie_base_url": "https://api.vpsie.com",
    "vpsie_rate_limit": 100,
    "vpsie_rate_limit_burst": 60,
    "scan_interval": 10,
    "expander": "priority,least-waste",
    "max_nodes_total": 0,
    "max_cores_total": 0,
    "max_memory_total_gib": 0,
    "failed_vpsienode_ttl": 3600,
    "orphan_grace_period": 600,
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("VPSIE_AUTOSCALER_"):
            monkeypatch.delenv(key)


def test_defaults_follow_the_configuration_contract() -> None:
    s = load_settings()
    for name, expected in CONTRACT_DEFAULTS.items():
        assert getattr(s, name) == expected, name
    assert s.namespace == "kube-system", "outside a pod the namespace falls back to kube-system"


def test_environment_is_read_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPSIE_AUTOSCALER_LEADER_ELECT", "false")
    monkeypatch.setenv("VPSIE_AUTOSCALER_SCAN_INTERVAL", "30")
    monkeypatch.setenv("VPSIE_AUTOSCALER_VPSIE_API_TOKEN", "tok-123")
    s = load_settings({"scan_interval": "5"})
    assert s.leader_elect is False
    assert s.scan_interval == 5
    assert s.vpsie_api_token is not None
    assert s.vpsie_api_token.get_secret_value() == "tok-123"
    assert "tok-123" not in repr(s)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lease_duration": "abc"}, "--lease-duration / VPSIE_AUTOSCALER_LEASE_DURATION 'abc'"),
        ({"retry_period": "-1"}, "greater than 0"),
        ({"renew_deadline": "20"}, "lease-duration (15s) must be greater than renew-deadline (20s)"),
        ({"metrics_bind_address": "8080"}, "must look like ':8080'"),
        ({"health_probe_bind_address": ":99999"}, "out of range"),
        ({"log_format": "xml"}, "--log-format"),
        ({"namespace": "Kube_System"}, "not a valid Kubernetes name"),
        ({"expander": "priority,,least waste"}, "comma-separated names"),
        ({"vpsie_base_url": "api.vpsie.com"}, "not an http(s) URL"),
        ({"max_nodes_total": "-3"}, "--max-nodes-total"),
        (
            {"failed_vpsienode_ttl": "30"},
            "--failed-vpsienode-ttl / VPSIE_AUTOSCALER_FAILED_VPSIENODE_TTL '30'",
        ),
        ({"failed_vpsienode_ttl": "1w"}, "--failed-vpsienode-ttl"),
        ({"orphan_grace_period": "59"}, "greater than or equal to 60"),
        ({"orphan_grace_period": "604801"}, "--orphan-grace-period / VPSIE_AUTOSCALER_ORPHAN_GRACE_PERIOD"),
        (
            {"vpsie_rate_limit_burst": "0"},
            "--vpsie-rate-limit-burst / VPSIE_AUTOSCALER_VPSIE_RATE_LIMIT_BURST",
        ),
    ],
)
def test_bad_values_give_one_clear_line(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        load_settings(overrides)
    line = format_error(exc.value)
    assert "\n" not in line
    assert message in line


def test_secret_values_are_never_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPSIE_AUTOSCALER_VPSIE_CLIENT_ID", "client-a")
    with pytest.raises(ValidationError) as exc:
        load_settings()
    assert "VPSIE_AUTOSCALER_VPSIE_CLIENT_SECRET" in format_error(exc.value)


def test_run_with_a_bad_flag_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--retry-period=9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("vpsie-autoscaler run: error: invalid settings: renew-deadline")


def test_run_with_a_bad_env_value_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VPSIE_AUTOSCALER_DRY_RUN", "perhaps")
    assert main(["run"]) == 2
    assert "VPSIE_AUTOSCALER_DRY_RUN 'perhaps'" in capsys.readouterr().err


def test_boolean_flags_accept_bare_and_explicit_forms() -> None:
    from vpsie_autoscaler.cli import build_parser

    args = build_parser().parse_args(["run", "--dry-run", "--leader-elect=false"])
    s = load_settings({k: v for k, v in vars(args).items() if k in Settings.model_fields})
    assert s.dry_run is True
    assert s.leader_elect is False


def test_secrets_are_not_flags() -> None:
    from vpsie_autoscaler.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--vpsie-api-token", "x"])


def test_rate_limit_burst_default_is_the_clients_and_env_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from vpsie_autoscaler.vpsie.client import DEFAULT_RATE_LIMIT_BURST, VPSieClientConfig

    assert load_settings().vpsie_rate_limit_burst == DEFAULT_RATE_LIMIT_BURST
    assert VPSieClientConfig(api_token="t").rate_limit_burst == DEFAULT_RATE_LIMIT_BURST
    monkeypatch.setenv("VPSIE_AUTOSCALER_VPSIE_RATE_LIMIT_BURST", "120")
    assert load_settings().vpsie_rate_limit_burst == 120


def test_rate_limit_burst_is_a_flag() -> None:
    from vpsie_autoscaler.cli import build_parser

    args = build_parser().parse_args(["run", "--vpsie-rate-limit-burst", "80"])
    s = load_settings({k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None})
    assert s.vpsie_rate_limit_burst == 80


def test_unknown_environment_variables_name_the_closest_setting() -> None:
    from vpsie_autoscaler.config import unknown_environment

    env = {
        "VPSIE_AUTOSCALER_DRYRUN": "true",
        "VPSIE_AUTOSCALER_SCAN_INTERVALL": "30",
        "VPSIE_AUTOSCALER_VPSIE_API_TOKN": "tok-secret-123",
        "VPSIE_AUTOSCALER_SOMETHING_ELSE_ENTIRELY": "1",
        "VPSIE_AUTOSCALER_SCAN_INTERVAL": "30",  # a setting
        "vpsie_autoscaler_dry_run": "true",  # settings are read case-insensitively
        "HOME": "/root",
    }
    found = {u.name: u for u in unknown_environment(env)}
    assert sorted(found) == [
        "VPSIE_AUTOSCALER_DRYRUN",
        "VPSIE_AUTOSCALER_SCAN_INTERVALL",
        "VPSIE_AUTOSCALER_SOMETHING_ELSE_ENTIRELY",
        "VPSIE_AUTOSCALER_VPSIE_API_TOKN",
    ]
    assert found["VPSIE_AUTOSCALER_DRYRUN"].closest == "dry_run"
    assert found["VPSIE_AUTOSCALER_DRYRUN"].message == (
        "environment variable VPSIE_AUTOSCALER_DRYRUN matches no setting and is ignored; "
        "did you mean VPSIE_AUTOSCALER_DRY_RUN (flag --dry-run)?"
    )
    assert found["VPSIE_AUTOSCALER_SCAN_INTERVALL"].closest == "scan_interval"
    assert found["VPSIE_AUTOSCALER_SOMETHING_ELSE_ENTIRELY"].closest is None
    assert found["VPSIE_AUTOSCALER_SOMETHING_ELSE_ENTIRELY"].message.endswith("is ignored")
    secret = found["VPSIE_AUTOSCALER_VPSIE_API_TOKN"]
    assert secret.closest == "vpsie_api_token"
    assert "did you mean VPSIE_AUTOSCALER_VPSIE_API_TOKEN?" in secret.message, "secrets are no flags"
    assert all("tok-secret-123" not in repr(u) + u.message for u in found.values())


def test_kubernetes_service_links_are_not_reported() -> None:
    from vpsie_autoscaler.config import unknown_environment

    links = {
        "VPSIE_AUTOSCALER_METRICS_SERVICE_HOST": "10.96.12.7",
        "VPSIE_AUTOSCALER_METRICS_SERVICE_PORT": "8080",
        "VPSIE_AUTOSCALER_METRICS_SERVICE_PORT_HTTP_METRICS": "8080",
        "VPSIE_AUTOSCALER_METRICS_PORT": "tcp://10.96.12.7:8080",
        "VPSIE_AUTOSCALER_METRICS_PORT_8080_TCP": "tcp://10.96.12.7:8080",
        "VPSIE_AUTOSCALER_METRICS_PORT_8080_TCP_PROTO": "tcp",
        "VPSIE_AUTOSCALER_METRICS_PORT_8080_TCP_PORT": "8080",
        "VPSIE_AUTOSCALER_METRICS_PORT_8080_TCP_ADDR": "10.96.12.7",
        "VPSIE_AUTOSCALER_SERVICE_HOST": "fd00::1",
        "VPSIE_AUTOSCALER_PORT": "tcp://[fd00::1]:8080",
    }
    assert unknown_environment(links) == []
    # A name shaped like a service link with a value Kubernetes would not give it is still reported.
    assert [u.name for u in unknown_environment({"VPSIE_AUTOSCALER_METRICS_PORT": ":9090"})] == [
        "VPSIE_AUTOSCALER_METRICS_PORT"
    ]


def test_run_warns_about_unknown_variables_at_start_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vpsie_autoscaler import run

    started: list[Settings] = []

    async def serve(settings: Settings) -> int:
        started.append(settings)
        return 0

    monkeypatch.setattr(run, "serve", serve)
    monkeypatch.setenv("VPSIE_AUTOSCALER_DRYRUN", "true")
    monkeypatch.setenv("VPSIE_AUTOSCALER_VPSIE_API_TOKN", "tok-secret-456")
    monkeypatch.setenv("VPSIE_AUTOSCALER_LOG_FORMAT", "json")
    try:
        assert main(["run"]) == 0
    finally:
        import structlog

        structlog.reset_defaults()
    assert started
    assert started[0].dry_run is False, "the misspelt variable was ignored, and said so"
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "matches no setting" in line]
    assert len(lines) == 2
    assert "VPSIE_AUTOSCALER_DRYRUN" in lines[0]
    assert "VPSIE_AUTOSCALER_DRY_RUN" in lines[0]
    assert '"level":"warning"' in lines[0]
    assert "VPSIE_AUTOSCALER_VPSIE_API_TOKEN" in lines[1]
    assert "tok-secret-456" not in err


def test_the_garbage_collection_timers_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from vpsie_autoscaler.controllers.lifecycle import gc_options_from

    monkeypatch.setenv("VPSIE_AUTOSCALER_ORPHAN_GRACE_PERIOD", "120")
    options = gc_options_from(load_settings({"failed_vpsienode_ttl": "1800"}))
    assert (options.failed_ttl, options.orphan_grace) == (1800, 120)
