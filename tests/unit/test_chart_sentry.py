"""Chart values for what the Go system offered: Sentry (a DSN, or one from an existing Secret) and the
stock ``vpsie-secret`` as the existing credentials Secret."""

from __future__ import annotations

from tests.unit.test_chart import ENV_PREFIX, Helm, _env, h, helm  # noqa: F401 - fixtures

DSN = "https://0123456789abcdef@o1.ingest.sentry.io/42"


def test_sentry_is_off_unless_a_dsn_is_given(h: Helm) -> None:  # noqa: F811 - fixture
    env = _env(h.template())
    assert env[ENV_PREFIX + "SENTRY_DSN"] == ""
    env = _env(h.template("--set", f"sentry.dsn={DSN}", "--set", "sentry.environment=staging"))
    assert env[ENV_PREFIX + "SENTRY_DSN"] == DSN
    assert env[ENV_PREFIX + "SENTRY_ENVIRONMENT"] == "staging"


def test_the_dsn_may_come_from_an_existing_secret(h: Helm) -> None:  # noqa: F811 - fixture
    env = _env(h.template("--set", "sentry.existingSecret=sentry", "--set", "sentry.existingSecretKey=url"))
    assert env[ENV_PREFIX + "SENTRY_DSN"] == {"secretKeyRef": {"name": "sentry", "key": "url"}}


def test_a_value_that_is_not_a_dsn_is_refused_by_the_schema(h: Helm) -> None:  # noqa: F811 - fixture
    result = h.run("template", "r", "charts/vpsie-autoscaler", "--set", "sentry.dsn=not-a-dsn")
    assert result.returncode != 0
    assert "/sentry/dsn" in result.stderr


def test_the_stock_vpsie_secret_is_mounted_as_the_credentials(h: Helm) -> None:  # noqa: F811 - fixture
    docs = h.template("--set", "vpsie.existingSecret=vpsie-secret")
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert _env(docs)[ENV_PREFIX + "VPSIE_CREDENTIALS_DIR"] == "/etc/vpsie"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert "vpsie-secret" in [v["secret"]["secretName"] for v in volumes if "secret" in v]
