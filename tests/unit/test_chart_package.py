"""``make chart``: the chart passes ``helm lint --strict`` and is packaged as a versioned ``.tgz``.

The archive is what a chart repository serves: named ``vpsie-autoscaler-<version>.tgz`` after
Chart.yaml, holding the chart (templates, CRDs, schema, README, dashboard) and nothing the
``.helmignore`` keeps out (CI values, examples).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from hack.devcluster.cluster import find_binaries

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vpsie-autoscaler"
MAKE_TIMEOUT_S = 300


def test_make_chart_packages_the_versioned_chart(tmp_path: Path) -> None:
    try:
        bin_dir = find_binaries()
    except FileNotFoundError as err:
        bin_dir, reason = None, str(err)
    else:
        reason = "helm is not built; run `make devcluster-build`"
    if bin_dir is None or not (bin_dir / "helm").exists() or shutil.which("make") is None:
        if os.environ.get("REQUIRE_DEVCLUSTER") == "1":
            pytest.fail(f"{reason} (REQUIRE_DEVCLUSTER=1)", pytrace=False)
        pytest.skip(reason)
    home = tmp_path / "helm-home"
    env = {**os.environ, **{f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}}
    dist = tmp_path / "dist"
    result = subprocess.run(
        ["make", "--no-print-directory", "chart", f"CHART_DIST={dist}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=MAKE_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    archive = dist / f"vpsie-autoscaler-{version}.tgz"
    assert [p.name for p in dist.iterdir()] == [archive.name]
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        packaged = yaml.safe_load(tar.extractfile("vpsie-autoscaler/Chart.yaml").read())  # type: ignore[union-attr]
    assert packaged["version"] == version
    assert {
        "vpsie-autoscaler/Chart.yaml",
        "vpsie-autoscaler/values.yaml",
        "vpsie-autoscaler/values.schema.json",
        "vpsie-autoscaler/README.md",
        "vpsie-autoscaler/templates/deployment.yaml",
        "vpsie-autoscaler/templates/prometheusrule.yaml",
        "vpsie-autoscaler/templates/crds/autoscaler.vpsie.com_nodegroups.yaml",
        "vpsie-autoscaler/dashboards/vpsie-autoscaler.json",
    } <= names
    assert not any(n.startswith(("vpsie-autoscaler/ci/", "vpsie-autoscaler/examples/")) for n in names)
