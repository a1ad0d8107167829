"""Manifests the stack applies (NodeGroups of the simulated cloud, placeholder workloads, PDBs).

Short timings throughout, so a scenario settles within seconds; kwok runs no container, so every pod
is a placeholder with only requests and constraints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hack.stack.cloudsim import SIM_CLUSTER_ID, VPSieGroup, plan_identifier
from hack.stack.kube import JsonObj
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT


def nodegroup(
    name: str,
    group: VPSieGroup,
    *,
    min_nodes: int = 0,
    max_nodes: int = 5,
    priority: int = 0,
    labels: Mapping[str, str] | None = None,
    taints: list[JsonObj] | None = None,
    unneeded_time: str = "10s",
    delay_after_scale_up: str = "5s",
    max_graceful_termination: str = "10s",
    disruption_budget: str | int = "100%",
    max_concurrent_drains: int = 5,
    utilization_threshold: float = 0.5,
    scale_down_enabled: bool = True,
    backoff_initial: str = "30s",
) -> JsonObj:
    """A NodeGroup of the simulated managed cluster, with the short timings the e2e suite runs on."""
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {
            "minNodes": min_nodes,
            "maxNodes": max_nodes,
            "managed": {
                "clusterIdentifier": SIM_CLUSTER_ID,
                "nodeGroupName": group.name,
                "sizeId": group.size_id,
            },
            "template": {"labels": dict(labels or {}), "taints": list(taints or [])},
            "scaleUp": {"enabled": True, "priority": priority},
            "scaleDown": {
                "enabled": scale_down_enabled,
                "utilizationThreshold": utilization_threshold,
                "unneededTime": unneeded_time,
                "delayAfterScaleUp": delay_after_scale_up,
                "maxConcurrentDrains": max_concurrent_drains,
                "disruptionBudget": disruption_budget,
                "maxGracefulTermination": max_graceful_termination,
            },
            "provisioning": {"maxProvisionTime": "1m", "backoff": {"initial": backoff_initial, "max": "5m"}},
        },
    }


def pod_spec(
    *,
    cpu: str = "100m",
    memory: str = "64Mi",
    node_selector: Mapping[str, str] | None = None,
    tolerations: list[JsonObj] | None = None,
    anti_affinity_to: str | None = None,
) -> JsonObj:
    """A placeholder pod spec (kwok runs nothing) with the given requests and constraints."""
    spec: JsonObj = {
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": cpu, "memory": memory}},
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = list(tolerations)
    if anti_affinity_to:
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": anti_affinity_to}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return spec


def deployment(name: str, replicas: int, **spec: Any) -> JsonObj:
    """A Deployment of placeholder pods; ``spec`` as for :func:`pod_spec`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(**spec)},
        },
    }


def bare_pod(name: str, app: str, **spec: Any) -> JsonObj:
    """A pod no controller owns (labelled ``app``); ``spec`` as for :func:`pod_spec`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": pod_spec(**spec),
    }


def pod_disruption_budget(name: str, app: str, *, min_available: int) -> JsonObj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    }


def is_running(pod: JsonObj) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


def phase_of(vn: JsonObj) -> str | None:
    phase: str | None = vn.get("status", {}).get("phase")
    return phase


def vm_nodegroup(name: str, size: VPSieGroup, **options: Any) -> JsonObj:
    """A NodeGroup of plain VPSie VMs of the size of ``size`` (options as for :func:`nodegroup`)."""
    body = nodegroup(name, size, **options)
    del body["spec"]["managed"]
    body["spec"]["vm"] = {
        "resourceIdentifier": plan_identifier(size),
        "osIdentifier": DEFAULT_OS,
        "dcIdentifier": DEFAULT_DATACENTER,
        "projectId": DEFAULT_PROJECT,
    }
    return body
