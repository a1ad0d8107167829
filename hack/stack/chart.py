"""Install the Helm chart into the local cluster, and run the autoscaler as the chart's pod would.

End-to-end tests run the autoscaler as a host process with the chart's RBAC and settings, exactly as
it would run in the pod: install the chart (kwok reports its pods Ready without running them, so they
hold no Lease), then start ``vpsie-autoscaler run`` with the Deployment's environment, a kubeconfig
carrying a token of the chart's ServiceAccount, and the credentials Secret's files::

    chart = install_chart(k8s_cluster, ns, tmp_path, values={"vpsie.baseUrl": cloudsim_url, ...})
    controller = start_controller(k8s_cluster, chart, tmp_path)
    controller.wait_ready()
    ...
    assert controller.stop() == 0

CRDs are cluster-scoped and the cluster is shared: the chart adopts CRDs something else installed
(``--take-ownership``) and keeps them on uninstall (``crds.keep``).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
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
ENV_PREFIX = "VPSIE_AUTOSCALER_"
START_S = 60.0  # a cold Python start plus cache sync on a loaded 2-core machine
STOP_S = 35.0  # the controller's 30 s graceful shutdown, plus process exit
POLL_S = 0.1
HTTP_TIMEOUT_S = 2.0
LOG_TAIL_CHARS = 4000


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ControllerProcess:
    """``vpsie-autoscaler run`` on the host, configured as the chart's pod."""

    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int
    env: dict[str, str]

    def http(self, port: int, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=HTTP_TIMEOUT_S) as resp:
                return int(resp.status), resp.read().decode()
        except OSError as exc:
            return int(getattr(exc, "code", 0) or 0), ""

    def metrics(self) -> str:
        status, body = self.http(self.metrics_port, "/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def wait_until(self, condition: Callable[[], bool], what: str, within: float = START_S) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"controller exited ({self.proc.returncode}) waiting for {what}\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what}\n{self.log_tail()}")
            time.sleep(POLL_S)

    def wait_ready(self) -> None:
        self.wait_until(lambda: self.http(self.health_port, "/readyz")[0] == 200, "/readyz")

    def stop(self) -> int:
        """SIGTERM, as the kubelet sends it; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"no exit within {STOP_S}s of SIGTERM\n{self.log_tail()}") from None
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_S)


def start_controller(
    cluster: ClusterHandle, chart: InstalledChart, workdir: Path, *, env: Mapping[str, str] | None = None
) -> ControllerProcess:
    """Start ``vpsie-autoscaler run`` with the installed Deployment's args and environment.

    What the pod would get from Kubernetes is supplied the same way: the downward-API namespace, the
    credentials Secret's keys as files (the kubelet mounts them; the ServiceAccount itself may not read
    Secrets) and
    a kubeconfig with a token of the chart's ServiceAccount. Only the listen addresses change, to free
    loopback ports. ``env`` adds or overrides variables.
    """
    ns = chart.namespace
    deployment = cluster.client.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{chart.fullname}")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    kubeconfig = cluster.sa_kubeconfig(ns, chart.service_account, path=workdir / "controller.kubeconfig")
    secret = cluster.client.get(f"/api/v1/namespaces/{ns}/secrets/{chart.credentials_secret}")
    credentials = workdir / "vpsie-credentials"
    credentials.mkdir(exist_ok=True)
    for key, value in (secret.get("data") or {}).items():
        (credentials / key).write_bytes(base64.b64decode(value))
    metrics_port, health_port = _free_port(), _free_port()
    process_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for item in container["env"]:
        if "value" in item or "valueFrom" not in item:
            process_env[item["name"]] = item.get("value", "")  # an empty value is dropped by the API
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            process_env[item["name"]] = ns
        else:
            raise AssertionError(f"no host equivalent for env {item}")
    process_env.update(
        {
            ENV_PREFIX + "KUBECONFIG": str(kubeconfig),
            ENV_PREFIX + "VPSIE_CREDENTIALS_DIR": str(credentials),
            ENV_PREFIX + "METRICS_BIND_ADDRESS": f"127.0.0.1:{metrics_port}",
            ENV_PREFIX + "HEALTH_PROBE_BIND_ADDRESS": f"127.0.0.1:{health_port}",
            **(env or {}),
        }
    )
    log = workdir / "controller.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpsie_autoscaler", *container["args"]],
            env=process_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ControllerProcess(proc, log, metrics_port, health_port, process_env)
