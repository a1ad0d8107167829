"""What the Go autoscaler honoured, on the real control plane: node protections, DaemonSet overhead in
a group's template, local PersistentVolumes. The autoscaling controllers run in-process through
``setup_autoscaling`` (real informers, RBAC-relevant resources, Events), as in test_autoscaling.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import pytest

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.integration.crds import install_crds
from tests.integration.test_autoscaling import (
    CLUSTER_EVENTS_NS,
    FAST_DOWN,
    WAIT_S,
    add_member,
    autoscaler,
    cleanup,
    group_name,
    make_group,
    members,
    passes_later,
    pending_pod,
    wait_events,
)
from tests.support.wait import eventually
from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import DAEMONSETS, PODS, PVCS, PVS, VPSIENODES

pytestmark = pytest.mark.cluster


@pytest.fixture
async def kube(k8s_cluster: ClusterHandle) -> AsyncIterator[KubeClient]:
    install_crds(k8s_cluster.client)
    async with await KubeClient.connect(str(k8s_cluster.kubeconfig)) as client:
        yield client


async def drain_requested(kube: KubeClient, name: str) -> bool:
    vn = await kube.get(VPSIENODES, name)
    return DRAIN_REQUESTED_ANNOTATION in (vn["metadata"].get("annotations") or {})


async def test_protected_nodes_stay_with_their_reason_and_the_free_one_goes(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns, scaleDown=FAST_DOWN)
    protected, bad_hours, free = f"{group}-protected", f"{group}-hours", f"{group}-free"
    try:
        await add_member(kube, group, protected, ns, annotations={"autoscaler.vpsie.com/protected": "true"})
        await add_member(
            kube, group, bad_hours, ns, annotations={"autoscaler.vpsie.com/scale-down-allowed-hours": "9-5"}
        )
        await add_member(kube, group, free, ns)
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            await eventually(
                lambda: drain_requested(kube, free), within=WAIT_S, what="the unprotected node drained"
            )
            (kept,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", protected)
            assert kept["type"] == "Normal"
            assert "NodeProtected: node annotation autoscaler.vpsie.com/protected=true" in kept["note"]
            (warned,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", bad_hours)
            assert warned["type"] == "Warning"
            assert "InvalidAllowedHours" in warned["note"]
            await passes_later(lambda: handles.scaledown.passes)
            assert not await drain_requested(kube, protected)
            assert not await drain_requested(kube, bad_hours)
    finally:
        await cleanup(kube, group)


async def test_a_group_outside_its_disruption_windows_keeps_its_idle_node(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    new_year = {"schedule": "0 0 1 1 *", "duration": "1m"}  # open one minute a year
    await make_group(kube, group, ns, scaleDown={**FAST_DOWN, "windows": [new_year]})
    idle = f"{group}-idle"
    try:
        await add_member(kube, group, idle, ns)
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            (kept,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", idle)
            assert (
                f"OutsideDisruptionWindow: outside the disruption windows of NodeGroup {group}"
                in kept["note"]
            )
            await passes_later(lambda: handles.scaledown.passes)
            assert not await drain_requested(kube, idle)
    finally:
        await cleanup(kube, group)


def daemonset(ns: str, cpu: str) -> dict[str, Any]:
    labels = {"app": "node-agent"}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "node-agent", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {OWNER_LABEL: ns},  # this test's nodes only
                    "containers": [
                        {
                            "name": "agent",
                            "image": "registry.example/agent:1",
                            "resources": {"requests": {"cpu": cpu}},
                        }
                    ],
                },
            },
        },
    }


async def test_a_daemonset_of_one_cpu_makes_eight_one_cpu_pods_need_three_four_cpu_nodes(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    """Without the DaemonSet 4 pods fit a 4-cpu node (2 nodes); with it, 3 do (3 nodes)."""
    ns, group = k8s_namespace, group_name()
    template = {"labels": {OWNER_LABEL: ns}, "resources": {"cpu": "4", "memory": "16Gi"}}
    await make_group(kube, group, ns, template=template)
    await kube.create(DAEMONSETS, daemonset(ns, "1"), ns)
    try:
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            for i in range(8):
                await kube.create(PODS, pending_pod(ns, f"p{i}", "1"), ns)

            async def three() -> bool:
                return len(await members(kube, group)) >= 3

            await eventually(
                three, within=WAIT_S, what="3 VPSieNodes: 3 one-cpu pods per node beside the agent"
            )
            await passes_later(lambda: handles.scaleup.passes)
            assert len(await members(kube, group)) == 3
    finally:
        await cleanup(kube, group)


async def test_a_pod_on_a_local_volume_keeps_its_node(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns, scaleDown=FAST_DOWN)
    node, pv = f"{group}-disk", f"{group}-pv"
    on_node = {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
    try:
        await add_member(kube, group, node, ns)
        await kube.create(
            PVS,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "local": {"path": "/mnt/disks/ssd1"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [on_node]}},
                },
            },
        )
        claim = {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "volumeName": pv,
            "resources": {"requests": {"storage": "1Gi"}},
        }
        await kube.create(
            PVCS,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": claim,
            },
            ns,
        )
        # safe-to-evict lifts the rules for a pod without a controller, not the local volume.
        db = pending_pod(ns, "db", "100m")
        db["metadata"]["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}
        db["spec"]["nodeName"] = node
        db["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
        await kube.create(PODS, db, ns)
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            (kept,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", node)
            assert f"data: PersistentVolume {pv} is a local volume of this node" in kept["note"]
            await passes_later(lambda: handles.scaledown.passes)
            assert not await drain_requested(kube, node)
    finally:
        await cleanup(kube, group)
        with suppress(errors.NotFound):
            await kube.delete(PVS, pv)
