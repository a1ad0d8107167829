"""Planner throughput: how many pending pods per second the scale-up planner decides.

Scenario (the issue's target: >= 10 000 pods/s): 20 000 pending pods over 10 NodeGroups, pods from
40 workloads of varied shapes (cpu 100m..4, memory 128Mi..16Gi), some with nodeSelectors, GPU
requests and tolerations, hostname anti-affinity and host ports. Also measured: building the pod
snapshots from raw JSON (what the controller does before planning), a worst case where every pod
has its own shape, and the scale-down planner over 500 nodes / 10 000 bound pods.

Run: ``make bench`` or ``.venv/bin/python -m benchmarks.planner_bench [--pods N] [--repeat R]``.
A script that prints numbers, not a timed test: results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL, UNNEEDED_SINCE_ANNOTATION
from vpsie_autoscaler.scaling.groups import GroupTemplate, ScaleDownPolicy
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scaledown import plan_scale_down
from vpsie_autoscaler.scaling.scaleup import ClusterLimits, plan_scale_up
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.selectors import Taint

NOW: Final = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SEED: Final = 20261127
WORKLOADS: Final = 40
GROUPS: Final = 10
T = TypeVar("T")


def _pod(name: str, app: str, cpu: int, mem_mi: int, *, rng: random.Random, kind: int) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app",
        "image": "registry.example/app:1",
        "resources": {"requests": {"cpu": f"{cpu}m", "memory": f"{mem_mi}Mi"}},
    }
    spec: dict[str, Any] = {"containers": [container], "priority": 0}
    if kind == 1:
        spec["nodeSelector"] = {"pool": rng.choice(("general", "memory"))}
    elif kind == 2:
        container["resources"]["requests"]["nvidia.com/gpu"] = "1"
        spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    elif kind == 3:
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        }
    elif kind == 4:
        container["ports"] = [{"containerPort": 9100, "hostPort": 9100}]
    return {
        "metadata": {
            "name": name,
            "namespace": "bench",
            "uid": f"uid-{name}",
            "labels": {"app": app, "pod-template-hash": "abc123"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": f"{app}-abc123", "controller": True}],
        },
        "spec": spec,
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        },
    }


def pending_pods(n: int, rng: random.Random, distinct: bool = False) -> list[dict[str, Any]]:
    """``n`` pending pods from :data:`WORKLOADS` workloads (or all distinct shapes)."""
    shapes = []
    for w in range(WORKLOADS):
        kind = 0 if w < 28 else 1 if w < 34 else 2 if w < 36 else 3 if w < 38 else 4
        shapes.append(
            (
                f"app{w}",
                rng.choice((100, 250, 500, 1000, 2000, 4000)),
                rng.choice((128, 256, 512, 1024, 4096, 16384)),
                kind,
            )
        )
    out = []
    for i in range(n):
        if distinct:
            app, cpu, mem, kind = f"app{i}", rng.randint(50, 4000), rng.randint(64, 16384), 0
        else:
            # Anti-affinity and host-port workloads stay small (a few replicas), like real ones.
            app, cpu, mem, kind = (
                shapes[i % (WORKLOADS - 4)] if i % 500 else shapes[WORKLOADS - 4 + (i // 500) % 4]
            )
        out.append(_pod(f"{app}-{i}", app, cpu, mem, rng=rng, kind=kind))
    return out


def groups() -> list[GroupTemplate]:
    """10 groups: general, memory-optimized and GPU pools of several sizes."""
    out = []
    sizes = [(2, 4), (4, 8), (8, 16), (16, 32), (32, 64), (4, 32), (8, 64), (16, 128), (8, 32), (16, 64)]
    for i, (cpu, mem) in enumerate(sizes[:GROUPS]):
        pool = "memory" if mem // cpu >= 8 else "general"
        extra: dict[str, str] = {}
        taints: tuple[Taint, ...] = ()
        if i >= 8:
            extra = {"nvidia.com/gpu": "4"}
            taints = (Taint("nvidia.com/gpu", "", "NoSchedule"),)
        alloc = Resources.parse({"cpu": str(cpu), "memory": f"{mem}Gi", "pods": "110", **extra})
        out.append(
            GroupTemplate(
                name=f"group-{i}",
                min_nodes=0,
                max_nodes=1000,
                allocatable=alloc,
                capacity=alloc,
                size=2,
                labels={"pool": pool},
                taints=taints,
                hourly_price=0.01 * cpu + 0.002 * mem,
                priority=i % 3,
            )
        )
    return out


def timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Median wall time of ``repeat`` runs and the last result."""
    times = []
    result: T | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(times), result


def scale_down_cluster(
    nodes: int, pods_per_node: int, rng: random.Random
) -> tuple[list[NodeInfo], list[GroupTemplate]]:
    gs = groups()[:5]
    for i, g in enumerate(gs):
        gs[i] = GroupTemplate(
            **{
                **{f: getattr(g, f) for f in g.__dataclass_fields__},
                "size": nodes // len(gs),
                "scale_down": ScaleDownPolicy(disruption_budget="10%", max_concurrent_drains=5),
            }
        )
    out = []
    old = (NOW - timedelta(hours=1)).isoformat()
    for n in range(nodes):
        g = gs[n % len(gs)]
        name = f"node-{n}"
        load = rng.random()
        pods = []
        for p in range(pods_per_node):
            cpu = int(g.allocatable["cpu"] * load / pods_per_node) or 1
            mem = int(g.allocatable["memory"] * load / pods_per_node) or 1
            raw = _pod(f"{name}-p{p}", f"app{p % WORKLOADS}", cpu, mem // 2**20 or 1, rng=rng, kind=0)
            raw["spec"]["nodeName"] = name
            raw["status"]["phase"] = "Running"
            pods.append(PodInfo.from_k8s(raw))
        out.append(
            NodeInfo.build(
                name,
                labels={NODEGROUP_LABEL: g.name, "pool": g.labels.get("pool", "")},
                annotations={UNNEEDED_SINCE_ANNOTATION: old},
                allocatable=g.allocatable,
                pods=pods,
            )
        )
    return out, gs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=500, help="nodes in the scale-down scenario")
    args = parser.parse_args()
    rng = random.Random(SEED)

    print(
        f"planner benchmark: python {platform.python_version()} on {platform.machine()}, "
        f"median of {args.repeat}"
    )
    raw = pending_pods(args.pods, rng)
    t_parse, pods = timed(lambda: [PodInfo.from_k8s(p) for p in raw], args.repeat)
    print(
        f"  snapshot  {args.pods:>6} pods          {t_parse * 1000:8.1f} ms  "
        f"{args.pods / t_parse:>10,.0f} pods/s"
    )

    gs = groups()
    t_plan, plan = timed(
        lambda: plan_scale_up(pods, gs, limits=ClusterLimits(), rng=random.Random(SEED), now=NOW), args.repeat
    )
    nodes = sum(i.nodes for i in plan.increases)
    print(
        f"  scale-up  {args.pods:>6} pods/{GROUPS} groups {t_plan * 1000:8.1f} ms  "
        f"{args.pods / t_plan:>10,.0f} pods/s"
        f"  -> {len(plan.increases)} group(s), {nodes} nodes"
    )
    total = t_parse + t_plan
    print(f"  snapshot + scale-up                {total * 1000:8.1f} ms  {args.pods / total:>10,.0f} pods/s")

    distinct_n = min(args.pods, 2_000)
    distinct = [PodInfo.from_k8s(p) for p in pending_pods(distinct_n, rng, distinct=True)]
    t_worst, _ = timed(lambda: plan_scale_up(distinct, gs, now=NOW), max(1, args.repeat // 2))
    print(
        f"  scale-up  {distinct_n:>6} distinct shapes    {t_worst * 1000:8.1f} ms  "
        f"{distinct_n / t_worst:>10,.0f} pods/s  (worst case: no equivalence)"
    )

    sd_nodes, sd_groups = scale_down_cluster(args.nodes, 20, rng)
    t_down, down = timed(lambda: plan_scale_down(sd_nodes, sd_groups, now=NOW), max(1, args.repeat // 2))
    bound = sum(len(n.pods) for n in sd_nodes)
    print(
        f"  scale-down {args.nodes:>5} nodes/{bound} pods  {t_down * 1000:8.1f} ms  "
        f"-> {len(down.removals)} removal(s), {len(down.unneeded)} unneeded"
    )


if __name__ == "__main__":
    main()
