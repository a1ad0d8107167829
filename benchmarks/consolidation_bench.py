"""Consolidation pass: the planner over 1 000 nodes and 30 000 bound pods.

Scenario (the target: a pass within 1 s): 1 000 nodes in three NodeGroups of different plans and
prices (16 cpu / 64Gi, 8 cpu / 32Gi, 16 cpu / 128Gi), 30 pods per node from 60 workloads (cpu
50m..400m, memory 64Mi..1Gi; some with nodeSelectors, hostname anti-affinity, PDBs and
pod-deletion-cost), utilization 10..60 %, plus an empty, cheaper fourth NodeGroup for replacements.
Consolidation is enabled on every group; every node is stable.

Measured: one full pass without a time budget (every candidate simulated alone, then the multi-node
search), and a pass with the default time budget (what the controller runs), with how many
candidates it reached. Snapshots are built before timing (the controller builds them once per pass
for scale-down as well).

Run: ``make bench`` or ``.venv/bin/python -m benchmarks.consolidation_bench [--nodes N] [--repeat R]``.
A script that prints numbers, not a timed test: results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.scaling.consolidation import (
    DEFAULT_TIME_BUDGET_SECONDS,
    ConsolidationPlan,
    ConsolidationPolicy,
    ConsolidationSettings,
    plan_consolidation,
)
from vpsie_autoscaler.scaling.groups import GroupTemplate
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PDBInfo, PodInfo

NOW: Final = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LONG_AGO: Final = NOW - timedelta(hours=3)
SEED: Final = 20261206
WORKLOADS: Final = 60
PODS_PER_NODE: Final = 30
GROUPS: Final = (  # name, cpu, memory GiB, hourly price, share of the nodes
    ("general", 16, 64, 0.20, 0.5),
    ("small", 8, 32, 0.09, 0.3),
    ("memory", 16, 128, 0.30, 0.2),
)
SPARE: Final = ("spare", 4, 16, 0.04)


def group(name: str, cpu: int, mem: int, price: float, size: int) -> GroupTemplate:
    alloc = Resources.parse({"cpu": str(cpu), "memory": f"{mem}Gi", "pods": "110"})
    return GroupTemplate(
        name=name,
        min_nodes=0,
        max_nodes=1000,
        allocatable=alloc,
        capacity=alloc,
        size=size,
        hourly_price=price,
    )


def pod(name: str, app: str, node: str, *, cpu: int, mem: int, kind: int) -> PodInfo:
    spec: dict[str, Any] = {
        "nodeName": node,
        "containers": [{"name": "c", "resources": {"requests": {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}}}],
    }
    annotations = {}
    if kind == 1:
        spec["nodeSelector"] = {"tier": "app"}
    elif kind == 2:
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        }
    elif kind == 3:
        annotations["controller.kubernetes.io/pod-deletion-cost"] = "1000"
    return PodInfo.from_k8s(
        {
            "metadata": {
                "name": name,
                "namespace": "bench",
                "uid": f"uid-{name}",
                "labels": {"app": app},
                "annotations": annotations,
                "creationTimestamp": LONG_AGO.isoformat(),
                "ownerReferences": [{"kind": "ReplicaSet", "name": f"{app}-rs", "controller": True}],
            },
            "spec": spec,
            "status": {"phase": "Running", "startTime": LONG_AGO.isoformat()},
        }
    )


def cluster(n_nodes: int, rng: random.Random) -> tuple[list[NodeInfo], list[GroupTemplate], list[PDBInfo]]:
    shapes = [
        (f"w{i}", rng.randint(50, 400), rng.randint(64, 1024), rng.choice((0, 0, 0, 0, 1, 2, 3)))
        for i in range(WORKLOADS)
    ]
    nodes: list[NodeInfo] = []
    groups: list[GroupTemplate] = []
    made = 0
    for gi, (name, cpu, mem, price, share) in enumerate(GROUPS):
        size = n_nodes - made if gi == len(GROUPS) - 1 else int(n_nodes * share)
        made += size
        groups.append(group(name, cpu, mem, price, size))
        alloc = Resources.parse({"cpu": str(cpu), "memory": f"{mem}Gi", "pods": "110"})
        for i in range(size):
            node_name = f"{name}-{i:04d}"
            target = rng.uniform(0.1, 0.6) * cpu * 1000
            pods: list[PodInfo] = []
            used = 0
            for j in range(PODS_PER_NODE):
                app, pcpu, pmem, kind = rng.choice(shapes)
                if used + pcpu > target and pods:
                    pcpu = max(10, int((target - used) / (PODS_PER_NODE - j)))
                used += pcpu
                pods.append(pod(f"{node_name}-{j}", app, node_name, cpu=pcpu, mem=pmem, kind=kind))
            nodes.append(
                NodeInfo.build(
                    node_name,
                    labels={NODEGROUP_LABEL: name, "kubernetes.io/hostname": node_name, "tier": "app"},
                    allocatable=alloc,
                    created=LONG_AGO,
                    pods=pods,
                )
            )
    groups.append(group(*SPARE, size=0))
    pdbs = [
        PDBInfo.from_k8s(
            {
                "metadata": {"name": f"w{i}", "namespace": "bench"},
                "spec": {"selector": {"matchLabels": {"app": f"w{i}"}}},
                "status": {"disruptionsAllowed": 5},
            }
        )
        for i in range(0, WORKLOADS, 3)
    ]
    return nodes, groups, pdbs


def run_pass(
    nodes: list[NodeInfo], groups: list[GroupTemplate], pdbs: list[PDBInfo], budget: float
) -> tuple[float, float, ConsolidationPlan]:
    policies = {g.name: ConsolidationPolicy(enabled=True, consolidate_after=timedelta(0)) for g in groups}
    settings = ConsolidationSettings(time_budget=budget)
    start, cpu = time.perf_counter(), time.process_time()
    plan = plan_consolidation(nodes, groups, policies, pdbs, now=NOW, settings=settings)
    return time.perf_counter() - start, time.process_time() - cpu, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(SEED)
    nodes, groups, pdbs = cluster(args.nodes, rng)
    n_pods = sum(len(n.pods) for n in nodes)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpu, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"cluster: {len(nodes)} nodes, {n_pods} pods, {len(groups)} NodeGroups, {len(pdbs)} PDBs")
    for label, budget in (
        ("full pass (no time budget)", 60.0),
        ("default time budget", DEFAULT_TIME_BUDGET_SECONDS),
    ):
        times: list[float] = []
        cpu: list[float] = []
        plan: ConsolidationPlan | None = None
        for _ in range(args.repeat):
            elapsed, used, plan = run_pass(nodes, groups, pdbs, budget)
            times.append(elapsed)
            cpu.append(used)
        assert plan is not None
        codes: dict[str, int] = {}
        for reason in plan.verdicts.values():
            codes[reason.code] = codes.get(reason.code, 0) + 1
        print(
            f"{label}: wall median {statistics.median(times) * 1000:.0f} ms (max {max(times) * 1000:.0f}), "
            f"CPU median {statistics.median(cpu) * 1000:.0f} ms; "
            f"{plan.evaluated} evaluations, timed out: {plan.timed_out}; "
            f"actions: {[a.describe() for a in plan.actions]}; verdicts: {dict(sorted(codes.items()))}"
        )


if __name__ == "__main__":
    main()
