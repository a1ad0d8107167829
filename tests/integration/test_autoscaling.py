"""The scale-up and scale-down controllers in-process against the real control plane.

A real kube-scheduler marks pods Unschedulable, our manager (informers, leader election, event
recorder) runs ``setup_autoscaling``, and we check what a user would see: VPSieNodes created,
Events on pods, Nodes and NodeGroups, ``unneeded-since`` annotations and drain requests written,
stale taints removed, and nothing changed in dry-run. The lifecycle controller is not running here:
the tests play its part (a VPSieNode becomes Ready with a kwok Node) where a scenario needs it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL, make_kwok_node
from tests.integration.crds import install_crds
from tests.support.wait import eventually
from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    NODEGROUP_LABEL,
    TO_BE_DELETED_TAINT,
    UNNEEDED_SINCE_ANNOTATION,
    VPSIENODE_LABEL,
)
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.autoscaling import Autoscaling, setup_autoscaling
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import DEPLOYMENTS, EVENTS, NODEGROUPS, NODES, PDBS, PODS, VPSIENODES
from vpsie_autoscaler.runtime.manager import Manager, ManagerOptions
from vpsie_autoscaler.runtime.metrics import new_registry

pytestmark = pytest.mark.cluster

WAIT_S = 60.0
VM = {"resourceIdentifier": "plan-1", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}
FAST_DOWN = {"unneededTime": "1s", "delayAfterScaleUp": "0s"}
CLUSTER_EVENTS_NS = "default"  # Events about cluster-scoped objects (NodeGroups, Nodes) live here


@pytest.fixture
async def kube(k8s_cluster: ClusterHandle) -> AsyncIterator[KubeClient]:
    install_crds(k8s_cluster.client)
    async with await KubeClient.connect(str(k8s_cluster.kubeconfig)) as client:
        yield client


@asynccontextmanager
async def autoscaler(
    k8s_cluster: ClusterHandle, namespace: str, **settings: Any
) -> AsyncIterator[tuple[Manager, Autoscaling]]:
    """One replica: a manager (leader election in ``namespace``) with the autoscaling controllers."""
    config = Settings(
        kubeconfig=str(k8s_cluster.kubeconfig),
        namespace=namespace,
        metrics_bind_address="0",
        health_probe_bind_address="0",
        scan_interval=settings.pop("scan_interval", 1.0),
        leader_election_id="autoscaler-it",
        **settings,
    )
    registry = new_registry()
    async with await KubeClient.connect(config.kubeconfig, registry=registry) as client:
        manager = Manager(
            client,
            ManagerOptions(
                namespace=namespace,
                leader_election_id=config.leader_election_id,
                metrics_bind_address="0",
                health_probe_bind_address="0",
                lease_duration=4,
                renew_deadline=3,
                retry_period=1,
            ),
            registry=registry,
        )
        handles = setup_autoscaling(manager, config)
        task = asyncio.ensure_future(manager.run(handle_signals=False))
        try:
            yield manager, handles
        finally:
            manager.request_stop()
            await asyncio.wait_for(task, 30)


def group_name() -> str:
    return f"g{secrets.token_hex(3)}"


async def make_group(kube: KubeClient, name: str, ns: str, **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {
            "minNodes": 0,
            "maxNodes": 5,
            "vm": VM,
            "template": {"labels": {OWNER_LABEL: ns}, "resources": {"cpu": "2", "memory": "4Gi"}},
            **spec,
        },
    }
    return await kube.create(NODEGROUPS, body)


async def add_member(
    kube: KubeClient,
    group: str,
    name: str,
    ns: str,
    *,
    phase: str = "Ready",
    taints: list[dict[str, str]] | None = None,
    annotations: dict[str, str] | None = None,
) -> None:
    """A VPSieNode in ``phase`` with its Ready kwok Node (what the lifecycle controller produces)."""
    await kube.create(
        VPSIENODES,
        {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "VPSieNode",
            "metadata": {"name": name, "labels": {NODEGROUP_LABEL: group}},
            "spec": {"nodeGroup": group, "hostname": name, "vm": VM},
        },
    )
    await kube.merge_patch(
        VPSIENODES, name, {"status": {"phase": phase, "nodeName": name}}, subresource="status"
    )
    labels = {OWNER_LABEL: ns, NODEGROUP_LABEL: group, VPSIENODE_LABEL: name}
    await kube.create(
        NODES,
        make_kwok_node(name, "2", "4Gi", labels=labels, taints=taints, annotations=annotations),
    )


async def members(kube: KubeClient, group: str) -> list[dict[str, Any]]:
    listed = await kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={group}")
    return list(listed["items"])


async def cleanup(kube: KubeClient, *groups: str) -> None:
    for group in groups:
        for vn in await members(kube, group):
            await _delete(kube, VPSIENODES, vn["metadata"]["name"])
        await _delete(kube, NODEGROUPS, group)


async def _delete(kube: KubeClient, res: Any, name: str) -> None:
    with suppress(errors.NotFound):
        await kube.delete(res, name)


def pending_pod(ns: str, name: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {OWNER_LABEL: ns},
            "containers": [
                {"name": "app", "image": "registry.example/app:1", "resources": {"requests": {"cpu": cpu}}}
            ],
        },
    }


async def events(
    kube: KubeClient, namespace: str, reason: str, name: str | None = None
) -> list[dict[str, Any]]:
    listed = await kube.list(EVENTS, namespace)
    return [
        e
        for e in listed["items"]
        if e.get("reason") == reason and (name is None or (e.get("regarding") or {}).get("name") == name)
    ]


async def wait_events(
    kube: KubeClient, namespace: str, reason: str, name: str | None = None, *, count: int = 1
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = await events(kube, namespace, reason, name)
        return len(found) >= count

    await eventually(enough, within=WAIT_S, what=f"{count} {reason} Event(s) for {name or 'any object'}")
    return found


async def passes_later(read: Callable[[], int], more: int = 3) -> None:
    """Wait until a controller has completed ``more`` further passes (proves 'nothing else happens')."""
    start = read()
    await eventually(lambda: read() >= start + more, within=WAIT_S, what=f"{more} more controller passes")


async def test_pending_pods_get_exactly_the_nodes_they_need_and_run(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns)
    try:
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            for i in range(3):
                await kube.create(PODS, pending_pod(ns, f"p{i}", "1500m"), ns)
            await eventually(
                lambda: _count(kube, group, 3), within=WAIT_S, what="3 VPSieNodes for 3 pods of 1.5 cpu"
            )
            # Further batches and resyncs see the capacity in flight: no fourth node.
            await passes_later(lambda: handles.scaleup.passes)
            assert len(await members(kube, group)) == 3
            triggered = await wait_events(kube, ns, "TriggeredScaleUp", count=3)
            assert {e["regarding"]["name"] for e in triggered} == {"p0", "p1", "p2"}
            (scaled,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaledUp", group)
            assert f"scale-up {group}: 0 -> 3 (+3) for 3 pending pod(s)" in scaled["note"]
            # Handed to the NodeGroup controller (not running here), the single writer of its status.
            decision = handles.decisions.latest(group)
            assert decision is not None
            assert decision.text.startswith(f"scale-up {group}: 0 -> 3")
            # Play the lifecycle controller: the nodes join; the pods run on them.
            for vn in await members(kube, group):
                name = vn["metadata"]["name"]
                await kube.merge_patch(
                    VPSIENODES, name, {"status": {"phase": "Ready", "nodeName": name}}, subresource="status"
                )
                labels = {OWNER_LABEL: ns, NODEGROUP_LABEL: group, VPSIENODE_LABEL: name}
                await kube.create(NODES, make_kwok_node(name, "2", "4Gi", labels=labels))

            async def all_bound() -> bool:
                pods = (await kube.list(PODS, ns))["items"]
                return len(pods) == 3 and all(p["spec"].get("nodeName") for p in pods)

            await eventually(all_bound, within=WAIT_S, what="the 3 pods bound to the new nodes")
            assert len(await members(kube, group)) == 3  # none ordered while they were joining
    finally:
        await cleanup(kube, group)


async def _count(kube: KubeClient, group: str, n: int) -> bool:
    return len(await members(kube, group)) >= n


async def test_pods_no_group_can_hold_get_a_reason_and_no_node(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns)
    try:
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            await kube.create(PODS, pending_pod(ns, "huge", "16"), ns)
            (event,) = await wait_events(kube, ns, "NotTriggerScaleUp", "huge")
            assert f"{group}: InsufficientResource" in event["note"]
            await passes_later(lambda: handles.scaleup.passes)
            assert await members(kube, group) == []
    finally:
        await cleanup(kube, group)


async def test_scale_up_runs_only_on_the_leader(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns)
    try:
        async with autoscaler(k8s_cluster, ns) as (first, a), autoscaler(k8s_cluster, ns) as (second, b):
            await eventually(lambda: first.is_leader() or second.is_leader(), within=WAIT_S, what="a leader")
            for i in range(2):
                await kube.create(PODS, pending_pod(ns, f"p{i}", "1500m"), ns)
            await eventually(lambda: _count(kube, group, 2), within=WAIT_S, what="2 VPSieNodes")
            leader, standby = (a, b) if first.is_leader() else (b, a)
            await passes_later(lambda: leader.scaleup.passes)
            assert len(await members(kube, group)) == 2
            assert standby.scaleup.passes == 0
            assert standby.scaledown.passes == 0
    finally:
        await cleanup(kube, group)


async def test_empty_nodes_go_in_bulk_never_below_min(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    """Empty nodes disrupt no pod: they are not paced by the drain budget (cluster-autoscaler's bulk
    empty deletion), but the group never goes below minNodes."""
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns, minNodes=1, scaleDown={**FAST_DOWN, "disruptionBudget": 1})
    names = [f"{group}-n{i}" for i in range(3)]
    try:
        for name in names:
            await add_member(kube, group, name, ns)
        async with autoscaler(k8s_cluster, ns) as (_, handles):

            async def requested() -> list[str]:
                return sorted(
                    v["metadata"]["name"]
                    for v in await members(kube, group)
                    if DRAIN_REQUESTED_ANNOTATION in (v["metadata"].get("annotations") or {})
                )

            async def two_requested() -> bool:
                return len(await requested()) == 2

            await eventually(two_requested, within=WAIT_S, what="two drain requests in one pass")
            # The lifecycle controller is not running: the requested nodes stay, and the last node is
            # never requested however many passes run (minNodes=1).
            await passes_later(lambda: handles.scaledown.passes)
            drained = await requested()
            assert len(drained) == 2
            for name in drained:
                vn = await kube.get(VPSIENODES, name)
                assert vn["metadata"]["annotations"][DRAIN_REASON_ANNOTATION] == "Empty"
            (last,) = [n for n in names if n not in drained]
            assert UNNEEDED_SINCE_ANNOTATION in (await kube.get(NODES, last))["metadata"]["annotations"]
            (event,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaledDown", group)
            assert "removing 2 empty nodes" in event["note"], event["note"]

            async def at_min() -> bool:
                found = await events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", last)
                return any("AtMinSize" in e["note"] for e in found)

            await eventually(at_min, within=WAIT_S, what="the AtMinSize explanation on the last node")
    finally:
        await cleanup(kube, group)


async def test_a_pdb_keeps_the_node_and_the_event_says_why(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns, scaleDown=FAST_DOWN)
    node = f"{group}-guarded"
    try:
        await add_member(kube, group, node, ns)
        await kube.create(
            DEPLOYMENTS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "guarded", "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "guarded"}},
                    "template": {
                        "metadata": {"labels": {"app": "guarded"}},
                        "spec": {
                            "nodeSelector": {OWNER_LABEL: ns},
                            "containers": [
                                {
                                    "name": "app",
                                    "image": "registry.example/app:1",
                                    "resources": {"requests": {"cpu": "100m"}},
                                }
                            ],
                        },
                    },
                },
            },
            ns,
        )
        await kube.create(
            PDBS,
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "guard", "namespace": ns},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
            },
            ns,
        )

        async def running() -> bool:
            pods = (await kube.list(PODS, ns))["items"]
            return any(p["status"].get("phase") == "Running" for p in pods)

        await eventually(running, within=WAIT_S, what="the guarded pod running")
        async with autoscaler(k8s_cluster, ns) as (_, handles):
            (event,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", node)
            assert "PodDisruptionBudget guard allows no disruption" in event["note"]
            await passes_later(lambda: handles.scaledown.passes)
            vn = await kube.get(VPSIENODES, node)
            assert DRAIN_REQUESTED_ANNOTATION not in (vn["metadata"].get("annotations") or {})
            # Deduplicated: still one Event after several passes.
            assert len(await events(kube, CLUSTER_EVENTS_NS, "ScaleDownBlocked", node)) == 1
    finally:
        await cleanup(kube, group)


async def test_our_stale_taints_are_removed_but_not_from_draining_nodes(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns, scaleDown={"enabled": False})
    taint = {"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}
    try:
        await add_member(kube, group, f"{group}-stale", ns, taints=[taint])
        await add_member(kube, group, f"{group}-draining", ns, phase="Draining", taints=[taint])
        async with autoscaler(k8s_cluster, ns) as (_, handles):

            async def untainted() -> bool:
                node = await kube.get(NODES, f"{group}-stale")
                return not node["spec"].get("taints")

            await eventually(untainted, within=WAIT_S, what="the stale taint removed")
            await passes_later(lambda: handles.scaledown.passes)
            draining = await kube.get(NODES, f"{group}-draining")
            assert [t["key"] for t in draining["spec"]["taints"]] == [TO_BE_DELETED_TAINT]
    finally:
        await cleanup(kube, group)


async def test_unneeded_timers_survive_a_restart(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    await make_group(kube, group, ns, scaleDown={"unneededTime": "1h", "delayAfterScaleUp": "0s"})
    node = f"{group}-idle"
    try:
        await add_member(kube, group, node, ns)
        async with autoscaler(k8s_cluster, ns):

            async def annotated() -> bool:
                obj = await kube.get(NODES, node)
                return UNNEEDED_SINCE_ANNOTATION in (obj["metadata"].get("annotations") or {})

            await eventually(annotated, within=WAIT_S, what="the unneeded-since annotation")
        # While no autoscaler runs, time passes (we move the persisted timer back 2 hours).
        past = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        await kube.merge_patch(NODES, node, {"metadata": {"annotations": {UNNEEDED_SINCE_ANNOTATION: past}}})
        async with autoscaler(k8s_cluster, ns):

            async def drain_requested() -> bool:
                vn = await kube.get(VPSIENODES, node)
                return DRAIN_REQUESTED_ANNOTATION in (vn["metadata"].get("annotations") or {})

            await eventually(drain_requested, within=WAIT_S, what="the drain request after the restart")
    finally:
        await cleanup(kube, group)


async def test_dry_run_reports_everything_and_changes_nothing(
    k8s_cluster: ClusterHandle, k8s_namespace: str, kube: KubeClient
) -> None:
    ns, group = k8s_namespace, group_name()
    big_template = {"labels": {OWNER_LABEL: ns}, "resources": {"cpu": "4", "memory": "8Gi"}}
    await make_group(kube, group, ns, scaleDown=FAST_DOWN, template=big_template)
    taint = {"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}
    old = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        await add_member(kube, group, f"{group}-idle", ns, annotations={UNNEEDED_SINCE_ANNOTATION: old})
        await add_member(kube, group, f"{group}-fresh", ns)
        await add_member(kube, group, f"{group}-tainted", ns, taints=[taint])
        await kube.create(PODS, pending_pod(ns, "big", "3"), ns)  # no 2-cpu node fits it
        async with autoscaler(k8s_cluster, ns, dry_run=True) as (_, handles):
            (up,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaledUp", group)
            assert up["note"].startswith(f"dry-run: scale-up {group}:")
            (pod_event,) = await wait_events(kube, ns, "TriggeredScaleUp", "big")
            assert pod_event["note"].startswith("dry-run: ")
            (down,) = await wait_events(kube, CLUSTER_EVENTS_NS, "ScaleDown", f"{group}-idle")
            assert down["note"].startswith(f"dry-run: removing empty node {group}-idle")
            (stale,) = await wait_events(kube, CLUSTER_EVENTS_NS, "StaleTaintRemoved", f"{group}-tainted")
            assert stale["note"].startswith("dry-run: ")
            await passes_later(lambda: handles.scaledown.passes)
            await passes_later(lambda: handles.scaleup.passes, 1)
            decision = handles.decisions.latest(group)
            assert decision is not None
            assert decision.text.startswith("dry-run: ")
            ng = await kube.get(NODEGROUPS, group)
            assert "lastScaleUpTime" not in (ng.get("status") or {})
        vns = await members(kube, group)
        assert len(vns) == 3  # nothing created
        assert all(DRAIN_REQUESTED_ANNOTATION not in (v["metadata"].get("annotations") or {}) for v in vns)
        fresh = await kube.get(NODES, f"{group}-fresh")
        assert UNNEEDED_SINCE_ANNOTATION not in (fresh["metadata"].get("annotations") or {})
        tainted = await kube.get(NODES, f"{group}-tainted")
        assert [t["key"] for t in tainted["spec"]["taints"]] == [TO_BE_DELETED_TAINT]
    finally:
        await cleanup(kube, group)
