"""Install the Helm chart into a test cluster (shared by integration and end-to-end tests).

End-to-end tests run the autoscaler as a host process with the chart's RBAC, exactly as it would run
in the pod: install the chart (kwok reports its pods Ready without running them, so they hold no
Lease), then give the process a kubeconfig carrying a token of the chart's ServiceAccount::

    chart = install_chart(k8s_cluster, ns, tmp_path, values={"leaderElection.id": "e2e"})
    kubeconfig = k8s_cluster.sa_kubeconfig(ns, chart.service_account)
    env = chart.process_env(kubeconfig)  # VPSIE_AUTOSCALER_NAMESPACE, _KUBECONFIG, _LEADER_ELECTION_ID

CRDs are cluster-scoped and the cluster is shared by the session: the chart adopts CRDs another test
created (``--take-ownership``) and keeps them on uninstall (``crds.keep``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "vpsie-autoscaler"
HELM_TIMEOUT_S = 180
# Leaves helm's own --timeout room to report before the subprocess is killed.
HELM_WAIT_S = HELM_TIMEOUT_S - 30
CHART_NAME = "vpsie-autoscaler"
DEFAULT_LEASE = "vpsie-autoscaler"


def helm(cluster: ClusterHandle, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the cluster's helm with its config and cache under ``home`` (never the user's)."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    return subprocess.run(
        [str(cluster.tool("helm")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=HELM_TIMEOUT_S,
        check=False,
    )


@dataclass(frozen=True)
class InstalledChart:
    release: str
    namespace: str
    notes: str
    lease_name: str

    @property
    def fullname(self) -> str:
        return self.release if CHART_NAME in self.release else f"{self.release}-{CHART_NAME}"

    @property
    def service_account(self) -> str:
        return self.fullname

    @property
    def credentials_secret(self) -> str:
        return f"{self.fullname}-vpsie"

    def process_env(self, kubeconfig: Path) -> dict[str, str]:
        """Settings for a host process acting as this release's controller."""
        return {
            "VPSIE_AUTOSCALER_NAMESPACE": self.namespace,
            "VPSIE_AUTOSCALER_KUBECONFIG": str(kubeconfig),
            "VPSIE_AUTOSCALER_LEADER_ELECTION_ID": self.lease_name,
        }


def install_chart(
    cluster: ClusterHandle,
    namespace: str,
    home: Path,
    *,
    release: str = "vpa",
    values: Mapping[str, str] | None = None,
    wait: bool = True,
) -> InstalledChart:
    """``helm install`` the chart; its pods are pinned to the namespace's test nodes (``OWNER_LABEL``).

    ``values`` are ``--set`` pairs (``{"replicaCount": "1"}``). With ``wait`` the call returns once the
    Deployment is Ready, so the namespace needs a Ready kwok Node labelled ``OWNER_LABEL=<namespace>``.
    Raises ``AssertionError`` with helm's output if the install fails.
    """
    escaped_label = OWNER_LABEL.replace(".", r"\.")  # --set treats dots as nesting
    args = [
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--take-ownership",
        "--set-string",
        f"nodeSelector.{escaped_label}={namespace}",
    ]
    for key, value in (values or {}).items():
        args += ["--set", f"{key}={value}"]
    if wait:
        args += ["--wait", "--timeout", f"{HELM_WAIT_S}s"]
    result = helm(cluster, home, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    lease = (values or {}).get("leaderElection.id") or DEFAULT_LEASE
    return InstalledChart(release=release, namespace=namespace, notes=result.stdout, lease_name=lease)


def uninstall_chart(
    cluster: ClusterHandle, chart: InstalledChart, home: Path
) -> subprocess.CompletedProcess[str]:
    return helm(cluster, home, "uninstall", chart.release, "--namespace", chart.namespace, "--wait")
