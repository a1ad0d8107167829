"""Invariants that must hold for every input (hypothesis), not just the examples we thought of:

- scale-up never takes a group above ``maxNodes`` nor the cluster above its limits;
- no pod is ever planned onto a node (new or in flight) where a predicate fails, and packing never
  exceeds allocatable;
- scale-down never takes a group below ``minNodes``, never drains beyond its disruption budget or
  ``maxConcurrentDrains``, never removes more empty nodes in a pass than the bulk cap nor any node of a
  group whose budget is 0, never calls a node with a pod to move empty, never removes a node it does
  not own or one already leaving, and every moved pod has a real, fitting destination.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.scaling.builders import LONG_AGO, NOW, group, node, pod, self_anti_affinity
from vpsie_autoscaler.api.labels import UNNEEDED_SINCE_ANNOTATION
from vpsie_autoscaler.scaling.expanders import ExpanderChain
from vpsie_autoscaler.scaling.groups import GroupTemplate, ScaleDownPolicy, budget_nodes
from vpsie_autoscaler.scaling.predicates import check
from vpsie_autoscaler.scaling.reasons import REMOVE_EMPTY
from vpsie_autoscaler.scaling.scaledown import (
    DEFAULT_MAX_EMPTY_BULK_DELETE,
    ScaleDownSettings,
    plan_scale_down,
)
from vpsie_autoscaler.scaling.scaleup import IN_FLIGHT, TRIGGERED, ClusterLimits, ClusterUsage, plan_scale_up
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.selectors import Taint

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
POOLS = ("a", "b", "c")
TAINT = Taint("dedicated", "x", "NoSchedule")
BUDGETS: tuple[int | str, ...] = (0, 1, 2, 5, "10%", "50%", "100%")
POD_KINDS: tuple[dict[str, str], ...] = (
    {},
    {},
    {},
    {"owner": "DaemonSet"},  # never moves: a node with only these is empty
    {"owner": "Job", "phase": "Succeeded"},  # finished: same
)
BULK_CAPS = (0, 1, 3, DEFAULT_MAX_EMPTY_BULK_DELETE)


@st.composite
def pending_pod(draw: st.DrawFn, index: int) -> PodInfo:
    kw: dict[str, object] = {}
    app = draw(st.sampled_from(("web", "db", "batch")))
    kw["labels"] = {"app": app}
    if draw(st.booleans()):
        kw["node_selector"] = {"pool": draw(st.sampled_from(POOLS))}
    if draw(st.integers(0, 3)) == 0:
        kw["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    if draw(st.integers(0, 5)) == 0:
        kw["host_port"] = draw(st.sampled_from((53, 80)))
    if app == "db" and draw(st.booleans()):
        kw["affinity"] = self_anti_affinity("db")
    if draw(st.integers(0, 6)) == 0:
        kw["extra"] = {"nvidia.com/gpu": "1"}
    cpu = draw(st.integers(50, 5000))
    mem = draw(st.integers(32, 9000))
    return pod(f"p{index}", f"{cpu}m", f"{mem}Mi", **kw)


@st.composite
def pending_pods(draw: st.DrawFn) -> list[PodInfo]:
    n = draw(st.integers(0, 25))
    shapes = [draw(pending_pod(i)) for i in range(min(n, 6))]
    # Repeat shapes (equivalence groups), with unique names.
    out = []
    for i in range(n):
        base = shapes[i % len(shapes)] if shapes else None
        if base is None:
            break
        out.append(PodInfo(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, "name": f"p{i}"}))
    return out


@st.composite
def groups(draw: st.DrawFn) -> list[GroupTemplate]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        max_nodes = draw(st.integers(0, 6))
        size = draw(st.integers(0, max_nodes))
        labels = {"pool": draw(st.sampled_from(POOLS))} if draw(st.booleans()) else {}
        taints = (TAINT,) if draw(st.integers(0, 3)) == 0 else ()
        extra = {"nvidia.com/gpu": str(draw(st.integers(1, 2)))} if draw(st.integers(0, 3)) == 0 else None
        out.append(
            group(
                f"g{i}",
                f"{draw(st.integers(1, 8))}",
                f"{draw(st.integers(1, 16))}Gi",
                min_nodes=draw(st.integers(0, size)),
                max_nodes=max_nodes,
                size=size,
                in_flight=draw(st.integers(0, size)),
                pods_cap=draw(st.integers(1, 20)),
                labels=labels,
                taints=taints,
                extra=extra,
                priority=draw(st.integers(0, 2)),
                price=draw(st.one_of(st.none(), st.floats(0.01, 2))),
            )
        )
    return out


def assert_node_admits(node: NodeInfo, pods: list[PodInfo]) -> None:
    """Add ``pods`` one by one; each must pass every predicate on the node as it fills."""
    current = node
    for p in pods:
        reason = check(p, current)
        assert reason is None, f"{p.key} on {node.name}: {reason}"
        current = NodeInfo.build(
            current.name,
            labels=current.labels,
            taints=current.taints,
            unschedulable=current.unschedulable,
            allocatable=current.allocatable,
            pods=[*current.pods, p],
        )
    assert current.allocatable.fits(current.requested)


@PROPERTY_SETTINGS
@given(
    pending=pending_pods(),
    gs=groups(),
    max_nodes=st.integers(0, 12),
    max_cores=st.integers(0, 40),
    max_mem=st.integers(0, 64),
    seed=st.integers(0, 1000),
    chain=st.sampled_from(
        ("priority,least-waste", "least-cost", "most-pods", "random", "least-waste,random")
    ),
)
def test_scale_up_invariants(
    *,
    pending: list[PodInfo],
    gs: list[GroupTemplate],
    max_nodes: int,
    max_cores: int,
    max_mem: int,
    seed: int,
    chain: str,
) -> None:
    in_flight = [g.virtual_node(f"{g.name}-inflight-{i}") for g in gs for i in range(g.in_flight)]
    usage = ClusterUsage.from_nodes(in_flight)
    limits = ClusterLimits(max_nodes, max_cores, max_mem)
    plan = plan_scale_up(
        pending,
        gs,
        in_flight_nodes=in_flight,
        limits=limits,
        usage=usage,
        expanders=ExpanderChain.parse(chain),
        rng=random.Random(seed),
        now=NOW,
    )
    by_name = {g.name: g for g in gs}

    # Limits.
    assert len({i.group for i in plan.increases}) == len(plan.increases)
    for inc in plan.increases:
        assert inc.nodes > 0
        assert inc.to_size <= by_name[inc.group].max_nodes
    new_nodes = sum(i.nodes for i in plan.increases)
    if max_nodes:
        assert usage.nodes + new_nodes <= max(max_nodes, usage.nodes)
    if max_cores:
        cpu = sum(i.nodes * by_name[i.group].capacity["cpu"] for i in plan.increases)
        assert usage.cpu_milli + cpu <= max(max_cores * 1000, usage.cpu_milli)
    if max_mem:
        mem = sum(i.nodes * by_name[i.group].capacity["memory"] for i in plan.increases)
        assert usage.memory_bytes + mem <= max(max_mem * 2**30, usage.memory_bytes)

    # Every pod has exactly one outcome; triggered pods are exactly the increases' pods.
    assert len(plan.pods) == len(pending)
    triggered = Counter(o.pod.key for o in plan.pods if o.status == TRIGGERED)
    in_increases = Counter(p.key for i in plan.increases for p in i.pods)
    assert triggered == in_increases

    # New nodes: the runs hold exactly the increase's pods, and each node admits its pods.
    for inc in plan.increases:
        g = by_name[inc.group]
        assert sum(r.count for r in inc.runs) == inc.nodes
        assert sum(r.count * k for r in inc.runs for _, k in r.pods_per_node) == len(inc.pods)
        for run in inc.runs:
            on_node = [rep for rep, k in run.pods_per_node for _ in range(k)]
            assert_node_admits(g.virtual_node(), on_node)

    # In-flight nodes: what waits for a node fits on it.
    waiting: dict[str, list[PodInfo]] = {}
    for o in plan.pods:
        if o.status == IN_FLIGHT:
            assert o.node is not None
            waiting.setdefault(o.node, []).append(o.pod)
    for n in in_flight:
        assert_node_admits(n, waiting.get(n.name, []))


@st.composite
def cluster(draw: st.DrawFn) -> tuple[list[NodeInfo], list[GroupTemplate]]:
    gs: list[GroupTemplate] = []
    nodes: list[NodeInfo] = []
    for gi in range(draw(st.integers(1, 3))):
        name = f"g{gi}"
        count = draw(st.integers(0, 6))
        deleting = draw(st.integers(0, 2))
        members = []
        for ni in range(count + deleting):
            pods = [
                pod(
                    f"{name}-{ni}-{pi}",
                    f"{draw(st.integers(50, 2000))}m",
                    f"{draw(st.integers(32, 4000))}Mi",
                    node=f"{name}-n{ni}",
                    node_selector={"pool": "a"} if draw(st.integers(0, 4)) == 0 else None,
                    tolerations=[{"key": "dedicated", "operator": "Exists"}] if draw(st.booleans()) else (),
                    host_port=draw(st.sampled_from((0, 0, 0, 9100))),
                    **draw(st.sampled_from(POD_KINDS)),
                )
                for pi in range(draw(st.integers(0, 4)))
            ]
            old = draw(st.booleans())
            members.append(
                node(
                    f"{name}-n{ni}",
                    "4",
                    "8Gi",
                    group=name,
                    pods=pods,
                    labels={"pool": "a"} if draw(st.booleans()) else {},
                    annotations={UNNEEDED_SINCE_ANNOTATION: LONG_AGO.isoformat()} if old else {},
                    deleting=ni >= count,
                    taints=[{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
                    if draw(st.integers(0, 3)) == 0
                    else (),
                    ready=draw(st.integers(0, 8)) != 0,
                )
            )
        nodes.extend(members)
        min_nodes = draw(st.integers(0, count))
        gs.append(
            group(
                name,
                size=count,
                deleting=deleting,
                min_nodes=min_nodes,
                max_nodes=draw(st.integers(min_nodes, 8)),
                in_flight=0,
                scale_down=ScaleDownPolicy(
                    utilization_threshold=draw(st.sampled_from((0.3, 0.5, 0.9))),
                    unneeded_time=timedelta(minutes=10),
                    max_concurrent_drains=draw(st.integers(0, 3)),
                    disruption_budget=draw(st.sampled_from(BUDGETS)),
                ),
            )
        )
    if draw(st.booleans()):
        nodes.append(node("unmanaged", "8", "16Gi", group=None))
    return nodes, gs


def must_move(p: PodInfo) -> bool:
    """Independent of the planner: a pod a drain would have to move (not DaemonSet, mirror,
    finished or already terminating)."""
    return not (p.is_daemonset or p.is_mirror or p.phase in ("Succeeded", "Failed") or p.deleting)


@PROPERTY_SETTINGS
@given(data=cluster(), cap=st.sampled_from(BULK_CAPS))
def test_scale_down_invariants(data: tuple[list[NodeInfo], list[GroupTemplate]], cap: int) -> None:
    nodes, gs = data
    plan = plan_scale_down(nodes, gs, now=NOW, settings=ScaleDownSettings(max_empty_bulk_delete=cap))
    by_node = {n.name: n for n in nodes}
    removed = {r.node for r in plan.removals}
    assert len(removed) == len(plan.removals)
    # A non-empty node is never counted as empty, and the other way round.
    for r in plan.removals:
        empty = not any(must_move(p) for p in by_node[r.node].pods)
        assert (r.reason == REMOVE_EMPTY) <= empty
        assert (not r.pods_to_evict) == empty
    # Empty nodes removed never exceed the per-pass bulk cap (all groups together).
    assert sum(1 for r in plan.removals if r.empty) <= cap
    for g in gs:
        mine = [r for r in plan.removals if r.group == g.name]
        assert g.size - len(mine) >= g.min_nodes
        budget = budget_nodes(g.scale_down.disruption_budget, g.size + g.deleting)
        if budget == 0:  # a zero budget freezes the group, empty nodes included
            assert mine == []
        # Drains stay within the budget (nodes already leaving use it) and maxConcurrentDrains.
        drains = [r for r in mine if not r.empty]
        assert len(drains) <= max(0, budget - g.deleting)
        draining = sum(
            1 for n in nodes if n.group == g.name and n.deleting and any(must_move(p) for p in n.pods)
        )
        assert len(drains) <= max(0, g.scale_down.max_concurrent_drains - draining)
    for r in plan.removals:
        n = by_node[r.node]
        assert n.group == r.group
        assert not n.deleting
        for p in r.pods_to_evict:
            dest = r.destinations.get(p.key)
            assert dest is not None
            assert dest not in removed
            assert dest != r.node
            assert not by_node[dest].deleting
    # Destinations never overflow: existing requests plus everything moved there fits allocatable.
    incoming: dict[str, list[PodInfo]] = {}
    for r in plan.removals:
        for p in r.pods_to_evict:
            if p.key in r.destinations:
                incoming.setdefault(r.destinations[p.key], []).append(p)
    for dest, moved in incoming.items():
        assert_node_admits(by_node[dest], moved)
