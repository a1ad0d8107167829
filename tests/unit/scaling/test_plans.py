"""Flexible NodeGroups: the planner picks, per pending workload, the cheapest allowed plan that fits,
mixes plans when the mix is cheaper, names the largest plan when none fits, and keeps every limit
across plans (table tests, then hypothesis properties)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.scaling.builders import NOW, group, pod, pods
from vpsie_autoscaler.scaling.binpack import PackItem
from vpsie_autoscaler.scaling.groups import GroupTemplate
from vpsie_autoscaler.scaling.plans import (
    PlanRequirements,
    PlanShape,
    Room,
    choose_plans,
    resolve_requirements,
)
from vpsie_autoscaler.scaling.reasons import INSUFFICIENT_RESOURCE
from vpsie_autoscaler.scaling.resources import CPU, MEMORY, Resources
from vpsie_autoscaler.scaling.scaleup import (
    NOT_TRIGGERED,
    TRIGGERED,
    ClusterLimits,
    ClusterUsage,
    GroupIncrease,
    plan_scale_up,
)
from vpsie_autoscaler.scaling.scheduling_facts import PodInfo

GIB = 2**30


def plan(
    name: str, cpu: int, memory_gib: int, price: float | None, category: str = "Shared CPU"
) -> PlanShape:
    alloc = Resources.parse({"cpu": cpu, "memory": f"{memory_gib}Gi", "pods": 110})
    return PlanShape(name, alloc, alloc, price, label=f"{name}-label", category=category)


P2 = plan("p2", 2, 4, 1.0)
P4 = plan("p4", 4, 8, 2.0)
P8 = plan("p8", 8, 16, 4.0)
P8_DEDICATED = plan("p8d", 8, 16, 9.0, category="Dedicated CPU")
ALL = (P2, P4, P8)


def flexible(plans: tuple[PlanShape, ...] = ALL, **kw: Any) -> GroupTemplate:
    smallest = min(plans, key=PlanShape.size_key)
    base = group("flex", **kw)
    return replace(base, allocatable=smallest.allocatable, capacity=smallest.per_node, plans=plans)


def plan_counts(increase: GroupIncrease | None) -> dict[str, int]:
    assert increase is not None
    return increase.plan_counts()


@dataclass(frozen=True)
class Case:
    id: str
    pending: list[PodInfo]
    want: dict[str, int]
    plans: tuple[PlanShape, ...] = ALL
    limits: ClusterLimits = field(default_factory=ClusterLimits)
    max_nodes: int = 10


CASES = [
    Case("an 8-cpu pod gets the 8-cpu plan", [pod("big", "8", "1Gi")], {"p8": 1}),
    Case("a small pod gets the cheapest plan", [pod("small", "500m")], {"p2": 1}),
    Case("small pods get small nodes", pods("s", 3, "1500m"), {"p2": 3}),
    Case(
        "the cheaper mix: 8-cpu pod on p8, small pods on p2",
        [pod("big", "8", "1Gi"), *pods("s", 2, "900m")],
        {"p8": 1, "p2": 1},
    ),
    Case(
        "one plan when it is cheaper than the mix",
        [pod("big", "6", "1Gi"), pod("small", "1500m")],
        {"p8": 1},
    ),
    Case("memory decides too", [pod("mem", "500m", "12Gi")], {"p8": 1}),
    Case(
        "a pod selecting an instance type gets that plan",
        [pod("pinned", "500m", node_selector={"node.kubernetes.io/instance-type": "p4-label"})],
        {"p4": 1},
    ),
    Case("equal cost: fewer nodes", pods("s", 2, "1500m"), {"p4": 1}),
    Case(
        "within maxNodes, the plans that place the most pods",
        [pod("big", "8", "1Gi"), *pods("s", 4, "1500m")],
        {"p8": 2},
        max_nodes=2,
    ),
    Case(
        "cluster-wide cores count each plan's own cores",
        [pod("big", "8", "1Gi"), *pods("s", 2, "900m")],
        {"p8": 1, "p2": 1},
        limits=ClusterLimits(max_cores=10),
    ),
    Case(
        "within cluster-wide cores, the plans that place the most pods",
        [pod("big", "8", "1Gi"), *pods("s", 4, "1500m")],
        {"p4": 2},
        limits=ClusterLimits(max_cores=10),
    ),
    Case(
        "unpriced plans lose to priced ones",
        [pod("small", "500m")],
        {"p4": 1},
        plans=(plan("p2x", 2, 4, None), P4),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_cheapest_allowed_plans_hold_the_pods(case: Case) -> None:
    result = plan_scale_up(
        case.pending, [flexible(case.plans, max_nodes=case.max_nodes)], limits=case.limits, now=NOW
    )
    assert plan_counts(result.increase_for("flex")) == case.want


def test_the_decision_names_the_plans_and_how_they_were_chosen() -> None:
    result = plan_scale_up([pod("big", "8", "1Gi"), *pods("s", 2, "900m")], [flexible()], now=NOW)
    increase = result.increase_for("flex")
    assert increase is not None
    assert "plans: 1 x p2-label + 1 x p8-label at 5.0000/h (cheapest mix of plans)" in increase.message
    assert {run.plan.name for run in increase.runs if run.plan} == {"p2", "p8"}


def test_a_pod_no_plan_holds_names_the_largest_plans_allocatable() -> None:
    result = plan_scale_up([pod("huge", "12", "1Gi")], [flexible()], now=NOW)
    outcome = result.outcome("default/huge")
    assert outcome.status == NOT_TRIGGERED
    reason = outcome.reasons["flex"]
    assert reason.code == INSUFFICIENT_RESOURCE
    assert "largest plan p8-label (allocatable cpu 8, memory 16Gi)" in reason.message
    assert "insufficient cpu: requests 12" in reason.message


def test_pods_that_fit_are_served_beside_one_that_fits_no_plan() -> None:
    result = plan_scale_up([pod("huge", "12", "1Gi"), pod("ok", "1")], [flexible()], now=NOW)
    assert result.outcome("default/ok").status == TRIGGERED
    assert plan_counts(result.increase_for("flex")) == {"p2": 1}


def test_a_single_plan_group_is_unchanged() -> None:
    result = plan_scale_up([pod("a", "1")], [group("web", "4", "8Gi")], now=NOW)
    increase = result.increase_for("web")
    assert increase is not None
    assert increase.plan_counts() == {}
    assert "plans:" not in increase.message


def test_requirements_resolve_against_the_catalogue() -> None:
    catalogue = (P2, P4, P8, P8_DEDICATED)
    wanted = PlanRequirements(min_cpu=4000, max_memory=16 * GIB, categories=frozenset({"Shared CPU"}))
    assert resolve_requirements(wanted, catalogue) == (P4, P8)
    assert resolve_requirements(PlanRequirements(), catalogue) == (P2, P4, P8, P8_DEDICATED)
    assert resolve_requirements(PlanRequirements(max_cpu=1000), catalogue) == ()


def test_no_room_no_choice() -> None:
    items = [PackItem(0, pod("a", "1").requests, 1)]
    assert choose_plans(items, ALL, {}, Room(0)) is None
    assert choose_plans(items, (), {}, Room(5)) is None


# --- properties ---------------------------------------------------------------------------------------
PLAN_POOL = (P2, P4, P8, plan("m16", 2, 16, 3.0), plan("c8", 8, 8, 3.5), plan("nopr", 4, 4, None))
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[PodInfo], GroupTemplate, ClusterLimits, ClusterUsage]:
    chosen = draw(st.lists(st.sampled_from(PLAN_POOL), min_size=1, max_size=4, unique_by=lambda p: p.name))
    kinds = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["250m", "1", "1500m", "3", "6", "8", "10"]),
                st.sampled_from(["256Mi", "2Gi", "6Gi", "14Gi"]),
                st.integers(1, 6),
            ),
            min_size=1,
            max_size=4,
        )
    )
    pending = [p for i, (cpu, mem, n) in enumerate(kinds) for p in pods(f"k{i}", n, cpu, mem)]
    size = draw(st.integers(0, 3))
    grp = flexible(tuple(chosen), size=size, max_nodes=size + draw(st.integers(0, 6)))
    limits = ClusterLimits(
        max_cores=draw(st.sampled_from([0, 12, 24, 40])), max_memory_gib=draw(st.sampled_from([0, 32, 64]))
    )
    usage = ClusterUsage(nodes=size, cpu_milli=size * 2000, memory_bytes=size * 4 * GIB)
    return pending, grp, limits, usage


@PROPERTY_SETTINGS
@given(scenarios())
def test_chosen_plans_always_fit_and_never_exceed_limits(
    scenario: tuple[list[PodInfo], GroupTemplate, ClusterLimits, ClusterUsage],
) -> None:
    pending, grp, limits, usage = scenario
    result = plan_scale_up(pending, [grp], limits=limits, usage=usage, now=NOW)
    increase = result.increase_for(grp.name)
    if increase is None:
        return
    assert grp.size + increase.nodes <= grp.max_nodes
    cpu = memory = 0
    for run in increase.runs:
        assert run.plan is not None
        assert run.plan in grp.plans
        used = Resources({})
        for rep, k in run.pods_per_node:
            used = used + rep.requests.scaled(k)
        assert run.plan.allocatable.fits(used), (run, used)
        cpu += run.plan.per_node[CPU] * run.count
        memory += run.plan.per_node[MEMORY] * run.count
    if limits.max_cores:
        assert usage.cpu_milli + cpu <= limits.max_cores * 1000
    if limits.max_memory_gib:
        assert usage.memory_bytes + memory <= limits.max_memory_gib * GIB
    assert sum(n for n in Counter(increase.plan_counts()).values()) == increase.nodes


@PROPERTY_SETTINGS
@given(scenarios())
def test_no_single_plan_places_as_many_pods_for_less(
    scenario: tuple[list[PodInfo], GroupTemplate, ClusterLimits, ClusterUsage],
) -> None:
    pending, grp, _, _ = scenario
    items = [PackItem(i, p.requests, 1) for i, p in enumerate(pending)]
    room = Room(grp.headroom)
    choice = choose_plans(items, grp.plans, {}, room)
    if choice is None:
        return
    for single in grp.plans:
        alone = choose_plans(items, (single,), {}, room)
        if alone is None or alone.placed_pods < choice.placed_pods:
            continue
        assert choice.cost_key()[:1] <= alone.cost_key()[:1]
