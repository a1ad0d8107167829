"""Cluster-wide headroom (``AutoscalerSettings`` ``spec.headroom``): spare capacity kept across every
NodeGroup together. Held by any group's nodes that a pod without tolerations may use; what is not held
is planned like pending pods any group may take; scale-down never removes a node it needs."""

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
    cluster_blocker,
    cluster_unmet,
    is_headroom_pod,
)
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scaledown import ScaleDownSettings, plan_scale_down
from vpsie_autoscaler.scaling.scaleup import plan_scale_up
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo

TWO_CPU = Resources.parse({"cpu": "2"})
UNNEEDED = {UNNEEDED_SINCE_ANNOTATION: LONG_AGO.isoformat()}
TAINT = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}


def grp(name: str, cpu: str = "4", **kw: object) -> GroupTemplate:
    base = group(name, cpu, "8Gi", **kw)  # type: ignore[arg-type]
    return replace(base, scale_down=policy(unneeded_time=timedelta(minutes=10)))


def busy(name: str, cpu: str, group_name: str | None = "web", **kw: object) -> NodeInfo:
    return node(name, "4", "8Gi", group=group_name, pods=[pod(f"{name}-app", cpu, node=name)], **kw)


def test_free_room_on_any_groups_node_holds_it() -> None:
    groups = [grp("web"), grp("batch")]
    assert cluster_unmet(groups, TWO_CPU, [busy("w1", "4"), busy("b1", "2", "batch")]) == ()


def test_room_that_pods_without_tolerations_cannot_use_does_not_hold_it() -> None:
    groups = [grp("web"), grp("db")]
    nodes = [busy("w1", "4"), busy("d1", "0", "db", taints=[TAINT]), busy("x1", "0", None)]
    (missing,) = cluster_unmet(groups, TWO_CPU, nodes)  # a tainted node, a node of no group: not ours
    assert is_headroom_pod(missing)
    assert missing.requests["cpu"] == 2000
    assert missing.node_selector == ()  # any group may hold it


def test_scale_up_orders_it_from_a_group_the_expanders_choose() -> None:
    groups = [grp("web", size=1), grp("batch")]
    nodes = [busy("w1", "4")]
    result = plan_scale_up([], groups, now=NOW, headroom_pods=cluster_unmet(groups, TWO_CPU, nodes))
    assert sum(i.nodes for i in result.increases) == 1
    assert [i.headroom_pods for i in result.increases] == [1]
    assert result.pods == ()  # virtual pods get no outcome


def test_scale_down_keeps_the_node_the_cluster_headroom_needs_and_says_why() -> None:
    nodes = [busy("w1", "3"), node("w2", "4", "8Gi", annotations=UNNEEDED)]
    groups = [grp("web", size=2)]
    kept = plan_scale_down(nodes, groups, now=NOW, settings=ScaleDownSettings(cluster_headroom=TWO_CPU))
    assert kept.removals == ()
    assert kept.blocked["w2"].code == HEADROOM_RESERVED
    assert "the cluster less than its headroom (2 cpu)" in kept.blocked["w2"].message
    removed = plan_scale_down(nodes, groups, now=NOW)
    assert [r.node for r in removed.removals] == ["w2"]


def test_scale_down_removes_what_the_cluster_headroom_does_not_need() -> None:
    nodes = [busy("w1", "1"), node("w2", "4", "8Gi", annotations=UNNEEDED)]
    plan = plan_scale_down(
        nodes, [grp("web", size=2)], now=NOW, settings=ScaleDownSettings(cluster_headroom=TWO_CPU)
    )
    assert [r.node for r in plan.removals] == ["w2"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=6), st.integers(1, 6))
def test_a_scale_down_plan_never_leaves_less_than_the_cluster_headroom(used: list[int], want: int) -> None:
    """Whatever the pods, the nodes left after the removals (and the moves) hold the headroom when the
    nodes before did."""
    headroom = Resources.parse({"cpu": str(want)})
    groups = [grp("web", size=len(used))]
    nodes = [
        node(
            f"n{i}", "4", "8Gi", annotations=UNNEEDED, pods=[pod(f"p{i}", str(c), node=f"n{i}")] if c else []
        )
        for i, c in enumerate(used)
    ]
    if cluster_blocker(groups, headroom, [n.free for n in nodes]) is not None:
        return  # not held to begin with: scale-up's job
    plan = plan_scale_down(nodes, groups, now=NOW, settings=ScaleDownSettings(cluster_headroom=headroom))
    gone = {r.node for r in plan.removals}
    room = {n.name: n.free for n in nodes if n.name not in gone}
    for removal in plan.removals:  # the moved pods take room where the planner placed them
        for p in removal.pods_to_evict:
            dest = removal.destinations[p.key]
            room[dest] = room[dest] - p.requests
    assert cluster_blocker(groups, headroom, list(room.values())) is None
