"""Test builders (cluster-autoscaler's ``BuildTestPod``/``BuildTestNode`` in Python): raw Kubernetes
JSON in, snapshots out, so every test also exercises the parsing the controllers rely on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.scaling.groups import GroupTemplate, ScaleDownPolicy
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PDBInfo, PodInfo
from vpsie_autoscaler.scaling.selectors import Taint

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=2)


def pod_dict(
    name: str,
    cpu: str = "100m",
    memory: str = "128Mi",
    *,
    namespace: str = "default",
    node: str = "",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] = (),
    host_port: int = 0,
    affinity: Mapping[str, Any] | None = None,
    owner: str | None = "ReplicaSet",
    priority: int = 0,
    volumes: Sequence[Mapping[str, Any]] = (),
    phase: str = "Running",
    spec_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": cpu, "memory": memory, **(extra or {})}
    container: dict[str, Any] = {"name": "c", "image": "x", "resources": {"requests": requests}}
    if host_port:
        container["ports"] = [{"containerPort": host_port, "hostPort": host_port}]
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{namespace}-{name}",
        "labels": dict(labels or {"app": name}),
        "annotations": dict(annotations or {}),
        "creationTimestamp": LONG_AGO.isoformat(),
    }
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": f"{name}-owner", "controller": True}]
    spec: dict[str, Any] = {"containers": [container], "priority": priority, **(spec_extra or {})}
    if node:
        spec["nodeName"] = node
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = list(tolerations)
    if affinity:
        spec["affinity"] = dict(affinity)
    if volumes:
        spec["volumes"] = list(volumes)
    return {"metadata": meta, "spec": spec, "status": {"phase": phase if node else "Pending"}}


def pod(name: str, cpu: str = "100m", memory: str = "128Mi", **kw: Any) -> PodInfo:
    return PodInfo.from_k8s(pod_dict(name, cpu, memory, **kw))


def pods(prefix: str, n: int, cpu: str = "100m", memory: str = "128Mi", **kw: Any) -> list[PodInfo]:
    labels = kw.pop("labels", {"app": prefix})
    return [pod(f"{prefix}-{i}", cpu, memory, labels=labels, **kw) for i in range(n)]


def self_anti_affinity(app: str) -> dict[str, Any]:
    return {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}
            ]
        }
    }


def node_dict(
    name: str,
    cpu: str = "4",
    memory: str = "8Gi",
    *,
    group: str | None = "web",
    pods_cap: str = "110",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    unschedulable: bool = False,
    ready: bool = True,
    deleting: bool = False,
) -> dict[str, Any]:
    all_labels = {"kubernetes.io/hostname": name, **(labels or {})}
    if group:
        all_labels[NODEGROUP_LABEL] = group
    meta: dict[str, Any] = {
        "name": name,
        "labels": all_labels,
        "annotations": dict(annotations or {}),
        "creationTimestamp": LONG_AGO.isoformat(),
    }
    if deleting:
        meta["deletionTimestamp"] = NOW.isoformat()
    alloc = {"cpu": cpu, "memory": memory, "pods": pods_cap}
    return {
        "metadata": meta,
        "spec": {"taints": list(taints), "unschedulable": unschedulable},
        "status": {
            "capacity": alloc,
            "allocatable": alloc,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def node(
    name: str, cpu: str = "4", memory: str = "8Gi", *, pods: Sequence[PodInfo] = (), **kw: Any
) -> NodeInfo:
    return NodeInfo.from_k8s(node_dict(name, cpu, memory, **kw), pods)


def group(
    name: str = "web",
    cpu: str = "4",
    memory: str = "8Gi",
    *,
    min_nodes: int = 0,
    max_nodes: int = 10,
    size: int = 0,
    pods_cap: int = 110,
    extra: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Taint] = (),
    price: float | None = None,
    priority: int = 0,
    **kw: Any,
) -> GroupTemplate:
    alloc = Resources.parse({"cpu": cpu, "memory": memory, "pods": pods_cap, **(extra or {})})
    return GroupTemplate(
        name=name,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        allocatable=alloc,
        capacity=alloc,
        size=size,
        labels=dict(labels or {}),
        taints=tuple(taints),
        hourly_price=price,
        priority=priority,
        **kw,
    )


def policy(**kw: Any) -> ScaleDownPolicy:
    return ScaleDownPolicy(**kw)


def pdb(name: str, match: Mapping[str, str], allowed: int, namespace: str = "default") -> PDBInfo:
    return PDBInfo.from_k8s(
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": dict(match)}},
            "status": {"disruptionsAllowed": allowed},
        }
    )
