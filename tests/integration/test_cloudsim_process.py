"""``vpsie-autoscaler cloudsim`` as a real process: it serves, prints its credentials, stops on SIGTERM,
and with ``--kubeconfig`` turns a booted VM into a Ready Node."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.vpsie.bootstrap import render_user_data
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig

START_S = 20.0
STOP_S = 10.0
NODE_READY_S = 30.0


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"cloudsim exited early with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            )
        if path.exists() and path.stat().st_size:
            info: dict[str, Any] = json.loads(path.read_text())
            return info
        time.sleep(0.05)
    raise AssertionError("cloudsim did not become ready")


def start(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    ready = tmp_path / "ready.json"
    argv = [
        sys.executable,
        "-m",
        "vpsie_autoscaler",
        "cloudsim",
        "--port",
        "0",
        "--ready-file",
        str(ready),
        *extra,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, wait_for_file(ready, proc, START_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(STOP_S)


@pytest.fixture
def cloudsim(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    yield from start(tmp_path, "--client-id", "demo", "--client-secret", "demo-secret", "--boot-delay", "0.2")


def client_for(info: dict[str, Any]) -> VPSieClient:
    return VPSieClient(
        VPSieClientConfig(
            base_url=info["base_url"], client_id=info["client_id"], client_secret=info["client_secret"]
        )
    )


async def test_cloudsim_serves_prints_credentials_and_stops_cleanly(
    cloudsim: tuple[subprocess.Popen[str], dict[str, Any]],
) -> None:
    proc, info = cloudsim
    async with client_for(info) as client:
        [cluster] = await client.list_k8s_clusters()
        assert cluster.cluster_name == "HEL-Kubernetes-49ab"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=STOP_S)
    assert proc.returncode == 0
    assert "client secret:  demo-secret" in out
    assert info["base_url"] in out


@pytest.mark.cluster
async def test_cloudsim_bridge_turns_a_booted_vm_into_a_ready_node(
    tmp_path: Path, k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    for proc, info in start(tmp_path, "--boot-delay", "0.5", "--kubeconfig", str(k8s_cluster.kubeconfig)):
        hostname = f"asg-demo-{k8s_namespace[-6:]}"
        async with client_for(info) as client:
            user_data = render_user_data({OWNER_LABEL: k8s_namespace}, ())
            await client.create_vm(vm_request(hostname, user_data=user_data))
        node = await asyncio.to_thread(k8s_cluster.client.wait_node_ready, hostname, timeout=NODE_READY_S)
        assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "Advanced"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=STOP_S)
        assert proc.returncode == 0
