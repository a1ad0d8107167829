"""The Kubernetes adapter against the real apiserver: verbs, content types and error mapping."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

import pytest

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL, make_kwok_node
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import CONFIGMAPS, NODES, PDBS, PODS

pytestmark = pytest.mark.cluster


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


async def test_crud_round_trip_with_typed_errors(kube: KubeClient, k8s_namespace: str) -> None:
    ns = k8s_namespace
    created = await kube.create(CONFIGMAPS, configmap("a", k="1"), ns)
    assert created["metadata"]["resourceVersion"]
    with pytest.raises(errors.AlreadyExists):
        await kube.create(CONFIGMAPS, configmap("a"), ns)
    got = await kube.get(CONFIGMAPS, "a", ns)
    assert got["data"] == {"k": "1"}
    patched = await kube.merge_patch(CONFIGMAPS, "a", {"data": {"k2": "2"}}, ns)
    assert patched["data"] == {"k": "1", "k2": "2"}
    # A write carrying the old resourceVersion loses the optimistic lock.
    stale = {**got, "data": {"k": "stale"}}
    with pytest.raises(errors.Conflict):
        await kube.replace(CONFIGMAPS, "a", stale, ns)
    with pytest.raises(errors.Conflict):
        await kube.merge_patch(
            CONFIGMAPS,
            "a",
            {"metadata": {"resourceVersion": got["metadata"]["resourceVersion"]}, "data": {}},
            ns,
        )
    listed = await kube.list(CONFIGMAPS, ns, limit=1)
    assert listed["metadata"]["resourceVersion"]
    assert await kube.delete(CONFIGMAPS, "a", ns) is None
    with pytest.raises(errors.NotFound):
        await kube.get(CONFIGMAPS, "a", ns)
    with pytest.raises(errors.NotFound):
        await kube.delete(CONFIGMAPS, "a", ns)


async def test_invalid_objects_report_field_causes(kube: KubeClient, k8s_namespace: str) -> None:
    with pytest.raises(errors.Invalid) as exc:
        await kube.create(CONFIGMAPS, configmap("Not_A_Valid_Name"), k8s_namespace)
    assert any(c.get("field") == "metadata.name" for c in exc.value.causes)


async def test_list_at_an_expired_continue_token_or_rv_is_gone(kube: KubeClient, k8s_namespace: str) -> None:
    with pytest.raises(errors.KubeError) as exc:
        await kube.list(CONFIGMAPS, k8s_namespace, continue_="bm90LWEtdG9rZW4=")
    assert exc.value.status in (400, 410)


async def test_watch_sees_changes_in_order_and_bookmarks_keep_the_rv(
    kube: KubeClient, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    rv = (await kube.list(CONFIGMAPS, ns))["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []

    async def consume() -> None:
        async with aclosing(kube.watch(CONFIGMAPS, ns, resource_version=rv, timeout_seconds=30)) as stream:
            async for event in stream:
                if event["type"] != "BOOKMARK":
                    seen.append((event["type"], event["object"]["metadata"]["name"]))
                if len(seen) == 3:
                    return

    task = asyncio.create_task(consume())
    await kube.create(CONFIGMAPS, configmap("w"), ns)
    await kube.merge_patch(CONFIGMAPS, "w", {"data": {"x": "1"}}, ns)
    await kube.delete(CONFIGMAPS, "w", ns)
    await asyncio.wait_for(task, 30)
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


async def test_eviction_blocked_by_a_pdb_is_too_many_requests(
    kube: KubeClient, k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    node = make_kwok_node(f"{ns}-n", cpu="2", memory="4Gi", labels={OWNER_LABEL: ns})
    await kube.create(NODES, node)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "guarded", "labels": {"app": "guarded"}},
        "spec": {
            "nodeName": node["metadata"]["name"],
            "containers": [{"name": "c", "image": "registry.example/a:1"}],
        },
    }
    await kube.create(PODS, pod, ns)
    # Pending pods may always be evicted; the PDB only protects a running (kwok-started) pod.
    k8s_cluster.client.wait_for(
        f"/api/v1/namespaces/{ns}/pods/guarded",
        lambda p: p is not None and p.get("status", {}).get("phase") == "Running",
        timeout=60,
        what="pod running",
    )
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    }
    await kube.create(PDBS, pdb, ns)
    # The disruption controller must have observed the PDB before it blocks anything.
    k8s_cluster.client.wait_for(
        f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/guard",
        lambda p: p is not None and (p.get("status") or {}).get("currentHealthy") == 1,
        timeout=60,
        what="PDB observed",
    )
    with pytest.raises(errors.TooManyRequests):
        await kube.evict("guarded", ns)
    await kube.delete(PDBS, "guard", ns)
    await kube.evict("guarded", ns, grace_period_seconds=0)


async def test_server_version_and_cluster_scoped_reads(kube: KubeClient) -> None:
    version = await kube.server_version()
    assert version["major"] == "1"
    nodes = await kube.list(NODES, limit=5)
    assert nodes["kind"] == "NodeList"
