"""Headroom: spare capacity kept free as virtual pods; scale-up restores it, scale-down never eats it,
and the classic low-priority pause-pod pattern keeps working beside it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.scaling.builders import LONG_AGO, NOW, group, node, pod, policy
from vpsie_autoscaler.api.labels import UNNEEDED_SINCE_ANNOTATION
from vpsie_autoscaler.scaling.groups import GroupTemplate
from vpsie_autoscaler.scaling.headroom import (
    HEADROOM_RESERVED,
    Headroom,
    blocker,
    chunks,
    is_headroom_pod,
    unmet,
)
from vpsie_autoscaler.scaling.plans import PlanShape
from vpsie_autoscaler.scaling.reasons import EXPENDABLE_POD
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scaledown import plan_scale_down
from vpsie_autoscaler.scaling.scaleup import IGNORED, TRIGGERED, plan_scale_up
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo

TWO_CPU = Headroom(Resources.parse({"cpu": "2"}))
UNNEEDED = {UNNEEDED_SINCE_ANNOTATION: LONG_AGO.isoformat()}


def web(spare: Headroom = TWO_CPU, **kw: object) -> GroupTemplate:
    base = group("web", "4", "8Gi", **kw)  # type: ignore[arg-type]
    return replace(base, spare=spare, scale_down=policy(unneeded_time=timedelta(minutes=10)))


def busy(name: str, cpu: str) -> NodeInfo:
    return node(name, "4", "8Gi", pods=[pod(f"{name}-app", cpu, node=name)])


def test_headroom_that_fits_the_free_capacity_asks_for_nothing() -> None:
    assert unmet(web(), TWO_CPU, [busy("n1", "1")]) == ()


def test_headroom_taken_by_pods_becomes_a_virtual_pod_of_the_group() -> None:
    missing = unmet(web(), TWO_CPU, [busy("n1", "3"), busy("n2", "3")])
    assert len(missing) == 1
    assert is_headroom_pod(missing[0])
    assert missing[0].requests["cpu"] == 2000
    assert dict(missing[0].node_selector) == {"autoscaler.vpsie.com/nodegroup": "web"}


def test_scale_up_restores_headroom_without_reporting_virtual_pods() -> None:
    grp = web(size=2)
    nodes = [busy("n1", "3"), busy("n2", "3")]
    result = plan_scale_up([], [grp], now=NOW, headroom_pods=unmet(grp, grp.spare, nodes))
    increase = result.increase_for("web")
    assert increase is not None
    assert (increase.nodes, increase.headroom_pods, increase.pods) == (1, 1, ())
    assert result.pods == ()
    assert "headroom (1 virtual pod(s))" in increase.message


def test_real_pods_and_headroom_share_new_nodes() -> None:
    grp = web(size=1)
    missing = unmet(grp, grp.spare, [busy("n1", "4")])
    result = plan_scale_up([pod("a", "1")], [grp], now=NOW, headroom_pods=missing)
    increase = result.increase_for("web")
    assert increase is not None
    assert (increase.nodes, increase.headroom_pods) == (1, 1)
    assert result.outcome("default/a").status == TRIGGERED


def test_headroom_is_split_into_pieces_a_node_holds() -> None:
    parts = chunks(
        Resources.parse({"cpu": "6", "memory": "2Gi"}), Resources.parse({"cpu": "4", "memory": "8Gi"})
    )
    assert [p["cpu"] for p in parts] == [3000, 3000]
    assert [p["memory"] for p in parts] == [2**30, 2**30]


def test_spare_nodes_count_empty_nodes_and_ask_for_whole_ones() -> None:
    spare = Headroom(nodes=2)
    grp = web(spare)
    missing = unmet(grp, spare, [busy("n1", "100m"), node("n2", "4", "8Gi")])
    assert len(missing) == 1
    assert missing[0].requests["cpu"] == 4000
    result = plan_scale_up([], [replace(grp, size=2)], now=NOW, headroom_pods=missing)
    assert result.increase_for("web") is not None


def test_a_flexible_group_keeps_spare_nodes_of_its_smallest_plan() -> None:
    small = PlanShape("p2", Resources.parse({"cpu": 2, "memory": "4Gi", "pods": 110}), hourly_price=1.0)
    big = PlanShape("p8", Resources.parse({"cpu": 8, "memory": "16Gi", "pods": 110}), hourly_price=4.0)
    grp = replace(web(Headroom(nodes=1)), plans=(small, big), allocatable=small.allocatable)
    result = plan_scale_up([], [grp], now=NOW, headroom_pods=unmet(grp, grp.spare, []))
    increase = result.increase_for("web")
    assert increase is not None
    assert increase.plan_counts() == {"p2": 1}


def test_scale_down_keeps_the_empty_node_that_holds_the_headroom() -> None:
    nodes = [busy("n1", "3"), node("n2", "4", "8Gi", annotations=UNNEEDED)]
    plan = plan_scale_down(nodes, [web(size=2)], now=NOW)
    assert plan.removals == ()
    assert plan.blocked["n2"].code == HEADROOM_RESERVED
    without = plan_scale_down(nodes, [web(Headroom(), size=2)], now=NOW)
    assert [r.node for r in without.removals] == ["n2"]


def test_scale_down_removes_what_the_headroom_does_not_need() -> None:
    nodes = [busy("n1", "1"), node("n2", "4", "8Gi", annotations=UNNEEDED)]
    plan = plan_scale_down(nodes, [web(size=2)], now=NOW)
    assert [r.node for r in plan.removals] == ["n2"]


def test_the_pause_pod_pattern_keeps_working() -> None:
    """Low-priority pause pods (priority -10) reserve room: when real pods preempt them, they are
    pending again and trigger a new node; pods below -10 are expendable and never do."""
    pause = pod("pause", "2", priority=-10, owner="Deployment")
    below = pod("below", "2", priority=-11, owner="Deployment")
    result = plan_scale_up([pause, below], [group("web", "4", "8Gi")], now=NOW)
    assert result.outcome("default/pause").status == TRIGGERED
    assert result.outcome("default/below").status == IGNORED
    reason = result.outcome("default/below").reason
    assert reason is not None
    assert reason.code == EXPENDABLE_POD


# --- property -----------------------------------------------------------------------------------------
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    loads=st.lists(st.sampled_from(["0", "500m", "1", "2", "3", "4"]), min_size=1, max_size=6),
    cpu=st.sampled_from(["0", "1", "2", "3", "5"]),
    spare_nodes=st.integers(0, 2),
    min_nodes=st.integers(0, 2),
)
def test_a_scale_down_plan_never_violates_headroom(
    loads: list[str], cpu: str, spare_nodes: int, min_nodes: int
) -> None:
    headroom = Headroom(Resources.parse({"cpu": cpu}), spare_nodes)
    nodes = [
        node(
            f"n{i}",
            "4",
            "8Gi",
            pods=[pod(f"p{i}", load, node=f"n{i}")] if load != "0" else [],
            annotations=UNNEEDED,
        )
        for i, load in enumerate(loads)
    ]
    grp = replace(
        web(headroom, size=len(nodes), min_nodes=min(min_nodes, len(nodes))),
        scale_down=policy(unneeded_time=timedelta(minutes=10), max_concurrent_drains=5, disruption_budget=5),
    )
    plan = plan_scale_down(nodes, [grp], now=NOW)
    removed = {r.node for r in plan.removals}
    if not removed:
        return
    # After the removals, the moved pods land somewhere; what is left must hold the headroom.
    kept_nodes = [n for n in nodes if n.name not in removed]
    moved = [p for r in plan.removals for p in r.pods_to_evict]
    dest = {p.key: d for r in plan.removals for p, d in ((p, r.destinations[p.key]) for p in r.pods_to_evict)}
    after = []
    for n in kept_nodes:
        extra = [p for p in moved if dest[p.key] == n.name]
        after.append(
            NodeInfo.build(n.name, labels=n.labels, allocatable=n.allocatable, pods=[*n.pods, *extra])
        )
    assert blocker(grp, headroom, [(n.free, not n.pods) for n in after]) is None
