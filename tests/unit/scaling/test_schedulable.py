"""Pending pods that fit the free capacity of an existing Ready node wait for the scheduler
(cluster-autoscaler's "filter out schedulable"): they never trigger a scale-up. A pod that fits no
Ready node still does, and so does a pod with a constraint we do not model."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.scaling.builders import NOW, group, node, pod, pods, self_anti_affinity
from tests.unit.scaling.test_properties import (
    POOLS,
    PROPERTY_SETTINGS,
    TAINT,
    assert_node_admits,
    pending_pods,
)
from vpsie_autoscaler.scaling.predicates import check
from vpsie_autoscaler.scaling.scaleup import (
    IN_FLIGHT,
    NOT_TRIGGERED,
    SCHEDULABLE,
    SCHEDULER_GRACE_SECONDS,
    TRIGGERED,
    plan_scale_up,
)
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.simulation import SimNode

TAINTED = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
SPREAD = {
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
    ]
}


def just_created(pending: list[PodInfo]) -> list[PodInfo]:
    """Pods as the scheduler has just reported them (the builders date pods long ago)."""
    return [replace(p, created=NOW) for p in pending]


def _statuses(pending: list[PodInfo], ready: list[NodeInfo]) -> tuple[Counter[str], int]:
    plan = plan_scale_up(just_created(pending), [group("web", "4", "8Gi")], ready_nodes=ready, now=NOW)
    return Counter(o.status for o in plan.pods), sum(i.nodes for i in plan.increases)


CASES: list[tuple[str, list[PodInfo], list[NodeInfo], dict[str, int], int]] = [
    ("fits an empty Ready node", pods("p", 3, "1", "1Gi"), [node("n1")], {SCHEDULABLE: 3}, 0),
    (
        "only the room left on the node",
        pods("p", 6, "1", "1Gi"),
        [node("n1", pods=pods("bound", 2, "1", "1Gi", node="n1"))],
        {SCHEDULABLE: 2, TRIGGERED: 4},
        1,
    ),
    ("too big for any Ready node", pods("p", 1, "3", "1Gi"), [node("n1", "2", "8Gi")], {TRIGGERED: 1}, 1),
    (
        "taint not tolerated",
        pods("p", 1, "1", "1Gi"),
        [node("n1", taints=TAINTED)],
        {TRIGGERED: 1},
        1,
    ),
    (
        "node selector not matched",
        pods("p", 1, "1", "1Gi", node_selector={"pool": "db"}),
        [node("n1", labels={"pool": "web"})],
        {NOT_TRIGGERED: 1},  # the web group cannot hold it either
        0,
    ),
    ("cordoned node", pods("p", 1, "1", "1Gi"), [node("n1", unschedulable=True)], {TRIGGERED: 1}, 1),
    ("leaving node", pods("p", 1, "1", "1Gi"), [node("n1", deleting=True)], {TRIGGERED: 1}, 1),
    (
        "hostname anti-affinity: one per node",
        pods("db", 3, "100m", "128Mi", labels={"app": "db"}, affinity=self_anti_affinity("db")),
        [node("n1"), node("n2")],
        {SCHEDULABLE: 2, TRIGGERED: 1},
        1,
    ),
    (
        "constraint we do not model: the scheduler's verdict wins",
        pods("p", 1, "1", "1Gi", spec_extra=SPREAD),
        [node("n1")],
        {TRIGGERED: 1},
        1,
    ),
]


@pytest.mark.parametrize(
    ("pending", "ready", "expected", "new_nodes"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_pods_fitting_ready_nodes_wait_for_the_scheduler(
    pending: list[PodInfo], ready: list[NodeInfo], expected: dict[str, int], new_nodes: int
) -> None:
    statuses, nodes = _statuses(pending, ready)
    assert dict(statuses) == expected
    assert nodes == new_nodes


def test_the_message_names_the_node() -> None:
    plan = plan_scale_up(just_created(pods("p", 1)), [group()], ready_nodes=[node("n1")], now=NOW)
    (outcome,) = plan.pods
    assert outcome.node == "n1"
    assert outcome.message == "pod fits on Ready node n1; waits for the scheduler to bind it"


def test_ready_nodes_first_then_capacity_on_the_way() -> None:
    web = group("web", "4", "8Gi", size=1, in_flight=1)
    plan = plan_scale_up(
        just_created(pods("p", 10, "1", "1Gi")),
        [web],
        ready_nodes=[node("ready", "2", "8Gi")],
        in_flight_nodes=[web.virtual_node("web-abc12")],
        now=NOW,
    )
    statuses = Counter(o.status for o in plan.pods)
    assert statuses == {SCHEDULABLE: 2, IN_FLIGHT: 4, TRIGGERED: 4}
    assert [(i.group, i.nodes) for i in plan.increases] == [("web", 1)]


def test_the_500_pod_burst_while_its_nodes_turn_ready() -> None:
    """A node that has just turned Ready, its planned pods not bound yet: nothing is ordered again."""
    burst = just_created(pods("p", 40, "1", "2Gi"))
    ready = [node(f"web-{i}", "8", "16Gi") for i in range(5)]  # 5 x 8 pods
    plan = plan_scale_up(burst, [group("web", "8", "16Gi", size=5)], ready_nodes=ready, now=NOW)
    assert plan.increases == ()
    assert {o.status for o in plan.pods} == {SCHEDULABLE}


def _ready_node(draw: st.DrawFn, i: int) -> NodeInfo:
    kw: dict[str, Any] = {}
    if draw(st.booleans()):
        kw["labels"] = {"pool": draw(st.sampled_from(POOLS))}
    if draw(st.integers(0, 3)) == 0:
        kw["taints"] = [{"key": TAINT.key, "value": TAINT.value, "effect": TAINT.effect}]
    kw["unschedulable"] = draw(st.integers(0, 5)) == 0
    bound = [
        pod(f"b{i}-{j}", f"{draw(st.integers(50, 3000))}m", f"{draw(st.integers(32, 6000))}Mi", node=f"n{i}")
        for j in range(draw(st.integers(0, 3)))
    ]
    return node(f"n{i}", str(draw(st.integers(1, 8))), f"{draw(st.integers(1, 16))}Gi", pods=bound, **kw)


@st.composite
def ready_nodes(draw: st.DrawFn) -> list[NodeInfo]:
    return [_ready_node(draw, i) for i in range(draw(st.integers(0, 5)))]


@PROPERTY_SETTINGS
@given(pending=pending_pods(), ready=ready_nodes())
def test_a_pod_that_fits_a_ready_node_never_triggers(pending: list[PodInfo], ready: list[NodeInfo]) -> None:
    g = group("g", "8", "16Gi", max_nodes=1000, extra={"nvidia.com/gpu": "2"})
    plan = plan_scale_up(just_created(pending), [g], ready_nodes=ready, now=NOW)
    # What waits for the scheduler fits the node it waits for, with what is bound there already.
    waiting: dict[str, list[PodInfo]] = {}
    for o in plan.pods:
        if o.status == SCHEDULABLE:
            assert o.node is not None
            assert not o.pod.unmodelled
            waiting.setdefault(o.node, []).append(o.pod)
    sims = []
    for n in ready:
        if n.name in waiting:  # (a node may be generated overcommitted by its bound pods)
            assert_node_admits(n, waiting[n.name])
        sim = SimNode(n)
        for p in waiting.get(n.name, []):
            sim.place(p)
        sims.append(sim)
    # A triggered pod fits no Ready node, even in the room the waiting pods leave.
    for o in plan.by_status(TRIGGERED):
        assert all(sim.check(o.pod) is not None for sim in sims), o.pod.key
    # A pod that fits no Ready node still triggers a scale-up when the group can hold it.
    template = g.virtual_node()
    for o in plan.pods:
        if check(o.pod, template) is None and all(check(o.pod, n) is not None for n in ready):
            assert o.status == TRIGGERED, o.pod.key


def test_a_pod_the_scheduler_left_unbound_past_the_grace_orders_a_node() -> None:
    """Whatever our simulation misses, waiting for the scheduler is bounded: a pod that fits a Ready
        node but is still unbound SCHEDULER_GRACE_SECONDS after its creation may order a node (a pending pod
    in the CI's end-to-end run waited for a node the scheduler never used)."""
    fresh = [replace(p, created=NOW - timedelta(seconds=5)) for p in pods("new", 2, "1", "1Gi")]
    stale = [
        replace(p, created=NOW - timedelta(seconds=SCHEDULER_GRACE_SECONDS + 1))
        for p in pods("old", 1, "1", "1Gi")
    ]
    plan = plan_scale_up([*fresh, *stale], [group("web", "4", "8Gi")], ready_nodes=[node("n1")], now=NOW)
    # The three are one class (same shape): a class with a pod past the grace is not held at all.
    assert Counter(o.status for o in plan.pods) == Counter({TRIGGERED: 3})
    assert sum(i.nodes for i in plan.increases) == 1
    held = plan_scale_up(fresh, [group("web", "4", "8Gi")], ready_nodes=[node("n1")], now=NOW)
    assert Counter(o.status for o in held.pods) == Counter({SCHEDULABLE: 2})
