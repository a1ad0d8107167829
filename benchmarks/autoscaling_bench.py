"""One scale-up decision and one scale-down pass of the controllers, over caches the size of a big
cluster: what runs on the event loop between informer events.

Scenario: 1 000 Ready Nodes in 5 NodeGroups with their 1 000 VPSieNodes, 10 000 bound pods (10 per
node), 125 VPSieNodes in flight, and 500 unschedulable pods that fit on them. Measured: building the
snapshot for scale-up (only pending pods and arriving nodes are parsed), the whole
``scale_up_once`` (snapshot + planner + reporting, no API calls: the caches already hold the
in-flight nodes so nothing is created), building the full snapshot for scale-down (first build, then
steady state with the parsed-pod cache warm), and the whole ``scale_down_once``.

Run: ``.venv/bin/python -m benchmarks.autoscaling_bench [--nodes N] [--repeat R]``. A script that
prints numbers, not a timed test: results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, cast

from prometheus_client import CollectorRegistry

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL, VPSIENODE_LABEL
from vpsie_autoscaler.controllers.catalogue import PlanCatalogue
from vpsie_autoscaler.controllers.cluster_state import SnapshotBuilder
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.metrics import autoscaler_metrics
from vpsie_autoscaler.controllers.scaledown import ScaleDownController, ScaleDownOptions
from vpsie_autoscaler.controllers.scaleup import ScaleUpController
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.logging import configure
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.events import EventRecorder

NOW: Final = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GROUPS: Final = 5
PODS_PER_NODE: Final = 10
PENDING: Final = 500
IN_FLIGHT: Final = 125  # room for all 500 pending pods: the decision creates nothing
STAMP: Final = "2026-11-27T11:00:00Z"
VM: Final = {"resourceIdentifier": "plan", "osIdentifier": "os", "dcIdentifier": "dc", "projectId": "p"}


class Store:
    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    def list(self) -> list[dict[str, Any]]:
        return self.objects


class NullClient:
    """Accepts every write (the benchmark measures decisions, not the API server)."""

    async def create(self, *_: Any, **__: Any) -> dict[str, Any]:
        raise AssertionError("the benchmark must not create anything")

    async def merge_patch(self, *_: Any, **__: Any) -> dict[str, Any]:
        return {}


class NullRecorder:
    def event(self, *_: Any, **__: Any) -> None:
        return None


def _pod(ns: str, name: str, node: str | None, cpu: str) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running"}
    if node is None:
        status = {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "lastTransitionTime": STAMP,
                }
            ],
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": f"{ns}-{name}",
            "resourceVersion": "1",
            "labels": {"app": name.rsplit("-", 1)[0]},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "rs", "controller": True, "uid": "u", "apiVersion": "v1"}
            ],
        },
        "spec": {
            **({"nodeName": node} if node else {}),
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}],
        },
        "status": status,
    }


def world(nodes: int) -> SnapshotBuilder:
    groups, node_objs, vns, pods = [], [], [], []
    for g in range(GROUPS):
        groups.append(
            {
                "apiVersion": "autoscaler.vpsie.com/v1alpha1",
                "kind": "NodeGroup",
                "metadata": {"name": f"pool{g}"},
                "spec": {
                    "minNodes": 0,
                    "maxNodes": 1000,
                    "vm": VM,
                    "template": {"resources": {"cpu": "8", "memory": "32Gi"}, "labels": {"pool": f"pool{g}"}},
                },
            }
        )
    for i in range(nodes):
        group = f"pool{i % GROUPS}"
        name = f"{group}-n{i:05d}"
        labels = {
            NODEGROUP_LABEL: group,
            VPSIENODE_LABEL: name,
            "pool": group,
            "kubernetes.io/hostname": name,
        }
        node_objs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": {}, "creationTimestamp": STAMP},
                "spec": {},
                "status": {
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": STAMP}],
                },
            }
        )
        vns.append(_vn(name, group, "Ready", name))
        for p in range(PODS_PER_NODE):
            pods.append(_pod(f"ns{i % 20}", f"app{p}-{i}", name, "700m"))
    for i in range(IN_FLIGHT):
        group = f"pool{i % GROUPS}"
        vns.append(_vn(f"{group}-f{i:04d}", group, "Provisioning", None))
    for i in range(PENDING):
        pods.append(_pod("pending", f"web-{i}", None, "2"))
    return SnapshotBuilder(
        pods=Store(pods),
        nodes=Store(node_objs),
        nodegroups=Store(groups),
        vpsienodes=Store(vns),
        pdbs=Store([]),
        catalogue=PlanCatalogue(None, FakeClock(NOW)),
    )


def _vn(name: str, group: str, phase: str, node: str | None) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "VPSieNode",
        "metadata": {"name": name, "labels": {NODEGROUP_LABEL: group}, "creationTimestamp": STAMP},
        "spec": {"nodeGroup": group, "hostname": name, "vm": VM},
        "status": {"phase": phase, **({"nodeName": node} if node else {})},
    }


def measure(fn: Callable[[], Awaitable[object]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        asyncio.run(cast(Any, fn()))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    configure("warning", "console")  # the controllers log every decision at info
    builder = world(args.nodes)
    clock = FakeClock(NOW)
    registry = CollectorRegistry()
    metrics = autoscaler_metrics(registry)
    client, recorder = cast(KubeClient, NullClient()), cast(EventRecorder, NullRecorder())
    deps = Deps.build(client=client, recorder=recorder, clock=clock, metrics=metrics)
    up = ScaleUpController(deps, builder=builder)
    down = ScaleDownController(deps, builder=builder, options=ScaleDownOptions())

    async def build_up() -> None:
        builder.build(NOW, with_pods=False)

    async def build_down() -> None:
        builder.build(NOW, with_pods=True)

    async def build_down_cold() -> None:
        builder.forget_pods()
        builder.build(NOW, with_pods=True)

    pods = len(builder.pods.list())
    print(
        f"{platform.python_version()} on {platform.machine()}; {args.nodes} nodes, {pods} pods "
        f"({PENDING} unschedulable), {IN_FLIGHT} VPSieNodes in flight; median of {args.repeat}"
    )
    for label, fn in (
        ("scale-up snapshot (build, with_pods=False)", build_up),
        ("scale_up_once (snapshot + plan + report)", up.scale_up_once),
        ("scale-down snapshot, cold (every pod parsed)", build_down_cold),
        ("scale-down snapshot, steady (pods unchanged)", build_down),
        ("scale_down_once (snapshot + plan + writes)", down.scale_down_once),
    ):
        print(f"  {label:<48} {measure(fn, args.repeat):8.1f} ms")


if __name__ == "__main__":
    main()
