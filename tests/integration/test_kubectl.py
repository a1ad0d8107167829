"""What an operator sees with kubectl: ``kubectl explain`` serves the CRD field descriptions and
``kubectl get vn`` shows each node's plan (and, while it drains, how many pods are left:
tests/integration/test_lifecycle_controllers.py).

Runs the preinstalled ``kubectl`` against the local control plane, so the API server's own OpenAPI
publishing and table conversion are what is tested, not our reading of them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from hack.devcluster.cluster import ClusterHandle
from hack.stack.kube import VPSIENODES
from tests.integration.crds import install_crds
from tests.support.wait import eventually
from vpsie_autoscaler.api.crdgen import nodegroup_crd, vpsienode_crd

pytestmark = pytest.mark.cluster

KUBECTL = shutil.which("kubectl")
PUBLISH_S = 60.0
"""The API server publishes a CRD's OpenAPI a few seconds after the CRD changes (asynchronously)."""
VM = {"resourceIdentifier": "plan-7f3a", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}
MANAGED = {"clusterIdentifier": "c-1", "nodeGroupName": "workers", "sizeId": 3}

EXPLAINED = [
    ("nodegroups", "spec.provisioning.backoff.initial"),
    ("nodegroups", "spec.template.taints.effect"),
    ("nodegroups", "status.conditions.lastTransitionTime"),
    ("nodegroups", "status.backoffUntil"),
    ("vpsienodes", "status.lastError"),
    ("vpsienodes", "status.phase"),
    ("vpsienodes", "spec.taints.key"),
]


def field_schema(plural: str, path: str) -> dict[str, Any]:
    crd = nodegroup_crd() if plural == "nodegroups" else vpsienode_crd()
    node: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for name in path.split("."):
        while "items" in node:
            node = node["items"]
        node = node["properties"][name]
    return node


def words(text: str) -> str:
    """``text`` with every run of whitespace made one space (kubectl wraps descriptions)."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def cluster(k8s_cluster: ClusterHandle) -> ClusterHandle:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    install_crds(k8s_cluster.client)
    return k8s_cluster


async def kubectl(cluster: ClusterHandle, *args: str) -> tuple[int, str]:
    """Run kubectl with a fresh discovery and OpenAPI cache; (exit code, stdout + stderr)."""
    assert KUBECTL is not None
    with tempfile.TemporaryDirectory() as cache:
        proc = await asyncio.create_subprocess_exec(
            KUBECTL,
            f"--kubeconfig={cluster.kubeconfig}",
            f"--cache-dir={cache}",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize(("plural", "path"), EXPLAINED, ids=lambda v: v)
async def test_kubectl_explain_serves_the_field_description(
    cluster: ClusterHandle, plural: str, path: str
) -> None:
    want = words(field_schema(plural, path)["description"])
    seen: list[str] = []

    async def explained() -> bool:
        code, out = await kubectl(cluster, "explain", f"{plural}.{path}")
        seen[:] = [out]
        return code == 0 and want in words(out)

    try:
        await eventually(explained, within=PUBLISH_S, what=f"kubectl explain {plural}.{path}")
    except AssertionError as err:
        raise AssertionError(f"{err}; wanted {want!r}, last output: {seen}") from None


async def test_kubectl_explain_metadata_is_object_meta(cluster: ClusterHandle) -> None:
    # The one field our schema may not describe: the API server fills in ObjectMeta's description.
    async def explained() -> bool:
        code, out = await kubectl(cluster, "explain", "vpsienodes.metadata")
        return code == 0 and "Standard object's metadata" in words(out)

    await eventually(explained, within=PUBLISH_S, what="kubectl explain vpsienodes.metadata")


@pytest.fixture
def vpsienodes(cluster: ClusterHandle) -> Iterator[dict[str, str]]:
    """Three VPSieNodes (managed; VM; VM whose group names its plan): name → the plan kubectl shows."""
    suffix = secrets.token_hex(3)
    specs: dict[str, tuple[dict[str, Any], str]] = {
        f"t-managed-{suffix}": ({"managed": MANAGED}, "3"),
        f"t-vm-{suffix}": ({"vm": VM}, "plan-7f3a"),
        f"t-named-{suffix}": ({"vm": VM, "instanceType": "General-4GB"}, "General-4GB"),
    }
    for name, (source, _) in specs.items():
        body = {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "VPSieNode",
            "metadata": {"name": name},
            "spec": {"nodeGroup": "g", "hostname": name, **source},
        }
        cluster.client.create(VPSIENODES, body)
    try:
        yield {name: plan for name, (_, plan) in specs.items()}
    finally:
        for name in specs:
            cluster.client.delete(f"{VPSIENODES}/{name}")


def table_headers(table: str) -> list[str]:
    """The column headers of kubectl's aligned table output: kubectl pads columns with at least three
    spaces, so one space stays inside a header (``PODS LEFT``)."""
    return re.split(r" {2,}", table.splitlines()[0].strip())


def table_column(table: str, header: str) -> dict[str, str]:
    """Row name → the cell under ``header`` in kubectl's aligned table output."""
    lines = table.splitlines()
    heads = table_headers(table)
    start = lines[0].index(header)
    after = heads.index(header) + 1
    end = lines[0].index(heads[after], start) if after < len(heads) else None
    return {line.split()[0]: line[start:end].strip() for line in lines[1:] if line.strip()}


async def test_kubectl_get_vn_shows_the_plan(cluster: ClusterHandle, vpsienodes: dict[str, str]) -> None:
    seen: list[str] = []

    async def shown() -> bool:
        # Retried: a CRD replaced in a reused cluster reaches the API server's handler asynchronously.
        code, out = await kubectl(cluster, "get", "vn", *vpsienodes)
        seen[:] = [out]
        return code == 0 and table_headers(out) == [
            "NAME",
            "GROUP",
            "PHASE",
            "PODS LEFT",
            "PLAN",
            "NODE",
            "IP",
            "AGE",
        ]

    try:
        await eventually(shown, within=PUBLISH_S, what="the PLAN column of kubectl get vn")
    except AssertionError as err:
        raise AssertionError(f"{err}; last output: {seen}") from None
    assert table_column(seen[0], "PLAN") == vpsienodes, seen[0]
