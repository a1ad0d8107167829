"""The chart's alert rules, evaluated by Prometheus itself: ``promtool test rules`` on synthetic series.

The rules are the ones ``helm template`` renders into the PrometheusRule (default selector, release
``rel`` in ``autoscaling``), written out as a plain rule file. ``testdata/alert-rules-test.yaml`` holds
the cases: each alert fires after its ``for`` on the series that mean trouble, stays silent on the ones
that do not (a short dry-run trial, an orphan collected within its grace period, a VPSie outage that is
not a credential failure, another release's series), with its exact labels and annotations.

promtool is built from the pinned Prometheus module by ``hack/promtool/build.py`` (``make test`` builds
it); helm comes from the local control-plane build. Without them these tests skip, except with
``REQUIRE_DEVCLUSTER=1`` (``make test``, CI) where a missing tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from hack.devcluster.cluster import find_binaries
from hack.promtool import build as promtool_build

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vpsie-autoscaler"
CASES = Path(__file__).resolve().parent / "testdata" / "alert-rules-test.yaml"
RELEASE, NAMESPACE = "rel", "autoscaling"
TOOL_TIMEOUT_S = 120
# The alerts that day-two operations rely on: each must have promtool cases.
DAY_TWO_ALERTS = {
    "VPSieAutoscalerOrphanInstances",
    "VPSieAutoscalerDryRunLeftOn",
    "VPSieAutoscalerDrainsStuck",
    "VPSieAutoscalerVPSieUnauthorized",
    "VPSieAutoscalerRotatedCredentialsRefused",
}


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("REQUIRE_DEVCLUSTER") == "1":
        pytest.fail(f"{reason} (REQUIRE_DEVCLUSTER=1: a missing tool is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def promtool() -> Path:
    if shutil.which("go") is None:
        _unavailable("go is not installed: promtool cannot be built")
    path = promtool_build.out_dir() / "promtool"
    if not (promtool_build.out_dir() / ".complete").exists():
        _unavailable("promtool is not built; run `python3 hack/promtool/build.py`")
    return path


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The PrometheusRule's ``spec`` as ``helm template`` renders it."""
    try:
        bin_dir = find_binaries()
    except FileNotFoundError as err:
        _unavailable(str(err))
    if bin_dir is None or not (bin_dir / "helm").exists():
        _unavailable("helm is not built; run `make devcluster-build`")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    result = subprocess.run(
        [str(bin_dir / "helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
         "--set", "metrics.prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"],
        env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    spec: dict[str, Any] = yaml.safe_load(result.stdout)["spec"]
    return spec


def _run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
    )


def _write_rules(directory: Path, spec: dict[str, Any]) -> None:
    (directory / "rules.yaml").write_text(yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False))


def test_rendered_rules_pass_promtool_check(promtool: Path, rules: dict[str, Any], tmp_path: Path) -> None:
    _write_rules(tmp_path, rules)
    result = _run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_on_synthetic_series_as_specified(
    promtool: Path, rules: dict[str, Any], tmp_path: Path
) -> None:
    _write_rules(tmp_path, rules)
    shutil.copyfile(CASES, tmp_path / "tests.yaml")
    result = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_wrong_expectation_fails(promtool: Path, rules: dict[str, Any], tmp_path: Path) -> None:
    """The harness can fail: the dry-run alert expected 2 minutes early is reported as a failure."""
    _write_rules(tmp_path, rules)
    cases = yaml.safe_load(CASES.read_text())
    for case in cases["tests"]:
        for check in case.get("alert_rule_test", []):
            if check["alertname"] == "VPSieAutoscalerDryRunLeftOn" and check["eval_time"] == "59m":
                check["exp_alerts"] = [{"exp_labels": {"severity": "warning"}}]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(cases, sort_keys=False))
    result = _run(promtool, "test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "VPSieAutoscalerDryRunLeftOn" in result.stdout + result.stderr


def test_every_day_two_alert_has_cases(rules: dict[str, Any]) -> None:
    cases = yaml.safe_load(CASES.read_text())
    tested = {check["alertname"] for case in cases["tests"] for check in case.get("alert_rule_test", [])}
    defined = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert tested <= defined, tested - defined
    assert defined >= DAY_TWO_ALERTS
    assert tested >= DAY_TWO_ALERTS
    for check in (c for case in cases["tests"] for c in case.get("alert_rule_test", [])):
        if check["alertname"] in DAY_TWO_ALERTS:
            assert "exp_alerts" in check  # an explicit expectation, firing or silent
