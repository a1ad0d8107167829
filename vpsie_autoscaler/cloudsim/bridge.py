"""Kubernetes bridge: booted simulated instances appear as kwok-managed Nodes, and vanish with them.

This is what a real VPSie node does when it boots (kubelet registers a Node) and what the cloud does
when it dies (the Node goes; ``docs/local-cluster.md``: "the cloud simulator must delete Node objects
itself when a VM dies", as cluster-autoscaler's kwok provider does).

Each running managed worker and each running VM becomes a Node:

- name: the lower-cased VPSie hostname (how Kubernetes names VPSie nodes);
- annotation ``kwok.x-k8s.io/node: fake`` so kwok manages it (Ready within a second);
- ``spec.providerID`` ``vpsie://<identifier>``;
- capacity = allocatable = the plan's CPU, memory (MiB), disk (GiB) and 110 pods;
- labels: the well-known ones (hostname, os, arch, ``node.kubernetes.io/instance-type`` = plan
  nickname, ``topology.kubernetes.io/region`` = datacenter), the simulator's marker label, and the
  node template: for managed nodes the VPSie group's labels/taints (simulator config or
  ``POST /_sim/groups/{id}/template``); for VMs the ``--node-labels``/``--register-with-taints`` kubelet
  flags found in the VM's ``userData`` (as a self-managed kubelet would register them).

The bridge only creates and deletes Nodes it marked; it never patches them, so labels and taints the
autoscaler adds later (e.g. its scale-down taint) are never overwritten.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Protocol

import structlog

from vpsie_autoscaler.cloudsim.config import SimPlan
from vpsie_autoscaler.cloudsim.state import SimState
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.vpsie.bootstrap import decode_user_data, parse_kubelet_flags

log = structlog.get_logger("vpsie_autoscaler.cloudsim.bridge")

MANAGED_BY_LABEL: Final = "cloudsim.vpsie.com/managed"
PLAN_LABEL: Final = "cloudsim.vpsie.com/plan-id"
SOURCE_LABEL: Final = "cloudsim.vpsie.com/source"  # "managed" or "vm"
GROUP_LABEL: Final = "cloudsim.vpsie.com/group"
IDENTIFIER_ANNOTATION: Final = "cloudsim.vpsie.com/identifier"
KWOK_ANNOTATION: Final = "kwok.x-k8s.io/node"
MAX_PODS: Final = "110"  # kubelet's default --max-pods
DEFAULT_INTERVAL: Final = 0.5  # seconds between syncs: Nodes appear about as fast as kwok marks them Ready
KUBELET_VERSION_PREFIX: Final = "v"


class NodeAPI(Protocol):
    """The three Node calls the bridge needs (implemented over ``kube.KubeClient`` by :class:`KubeNodes`)."""

    async def list_names(self, label_selector: str) -> set[str]: ...

    async def create(self, body: dict[str, Any]) -> None: ...

    async def delete(self, name: str) -> None: ...


def node_body(
    *,
    hostname: str,
    identifier: str,
    plan: SimPlan,
    region: str,
    kube_version: str,
    labels: dict[str, str],
    taints: list[dict[str, str]],
    source: str,
    address: str,
    group: str | None = None,
) -> dict[str, Any]:
    """The Node a booted instance registers (pure: instance facts in, Node JSON out)."""
    name = hostname.lower()
    resources = {
        "cpu": str(plan.cpu),
        "memory": f"{plan.ram}Mi",
        "ephemeral-storage": f"{plan.ssd}Gi",
        "pods": MAX_PODS,
    }
    node_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": plan.nickname,
        "topology.kubernetes.io/region": region,
        "type": "kwok",
        MANAGED_BY_LABEL: "true",
        PLAN_LABEL: str(plan.id),
        SOURCE_LABEL: source,
    }
    if group:
        node_labels[GROUP_LABEL] = group
    node_labels.update(labels)
    spec: dict[str, Any] = {"providerID": f"vpsie://{identifier}"}
    if taints:
        spec["taints"] = [
            {
                k: v
                for k, v in (("key", t["key"]), ("value", t.get("value", "")), ("effect", t["effect"]))
                if v
            }
            for t in taints
        ]
    version = (
        kube_version
        if kube_version.startswith(KUBELET_VERSION_PREFIX)
        else KUBELET_VERSION_PREFIX + kube_version
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels,
            "annotations": {KWOK_ANNOTATION: "fake", IDENTIFIER_ANNOTATION: identifier},
        },
        "spec": spec,
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": address},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": version,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def desired_nodes(state: SimState) -> dict[str, dict[str, Any]]:
    """Every Node the simulated cloud should have right now, by name."""
    now = state.now()
    regions = {d.identifier: d.dc_name.lower().replace(" ", "-") for d in state.config.datacenters}
    default_version = state.config.clusters[0].kube_version if state.config.clusters else "1.31.4"
    nodes: dict[str, dict[str, Any]] = {}
    for node in state.nodes.values():
        if node.group_id is None or not node.running(now):
            continue
        group = state.groups.get(node.group_id)
        cluster = state.clusters[node.cluster]
        body = node_body(
            hostname=node.hostname,
            identifier=node.identifier,
            plan=state.plan(node.size),
            region=regions.get(cluster.datacenter, "unknown"),
            kube_version=cluster.kube_version,
            labels=dict(group.labels) if group else {},
            taints=list(group.taints) if group else [],
            source="managed",
            address=node.private_ip,
            group=group.name if group else None,
        )
        nodes[body["metadata"]["name"]] = body
    for vm in state.vms.values():
        if not vm.active(now):
            continue
        labels, taints = parse_kubelet_flags(decode_user_data(vm.user_data)) if vm.user_data else ({}, [])
        body = node_body(
            hostname=vm.hostname,
            identifier=vm.identifier,
            plan=state.plans_by_identifier[vm.plan],
            region=regions.get(vm.datacenter, "unknown"),
            kube_version=default_version,
            labels=labels,
            taints=[{"key": t.key, "value": t.value, "effect": t.effect} for t in taints],
            source="vm",
            address=vm.private_ip or vm.public_ipv4 or "10.20.0.1",
        )
        nodes[body["metadata"]["name"]] = body
    return nodes


class Bridge:
    """Keeps the cluster's simulator-marked Nodes equal to :func:`desired_nodes`."""

    def __init__(
        self, state: SimState, nodes: NodeAPI, clock: Clock, *, interval: float = DEFAULT_INTERVAL
    ) -> None:
        self._state = state
        self._nodes = nodes
        self._clock = clock
        self._interval = interval

    async def sync(self) -> tuple[list[str], list[str]]:
        """One pass: create missing Nodes, delete Nodes whose instance is gone; returns (created, deleted)."""
        self._state.tick()
        desired = desired_nodes(self._state)
        existing = await self._nodes.list_names(f"{MANAGED_BY_LABEL}=true")
        created = sorted(set(desired) - existing)
        deleted = sorted(existing - set(desired))
        for name in created:
            await self._nodes.create(desired[name])
            log.info("sim.bridge.node_created", node=name)
        for name in deleted:
            await self._nodes.delete(name)
            log.info("sim.bridge.node_deleted", node=name)
        return created, deleted

    async def run(self) -> None:
        """Sync forever; a failed pass is logged and retried on the next tick."""
        while True:
            try:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the bridge must outlive API hiccups
                log.warning("sim.bridge.sync_failed", error=f"{type(exc).__name__}: {exc}")
            await self._clock.sleep(self._interval)
