"""Consolidation planner: fewer and cheaper nodes, no churn, a verdict for every node."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.scaling.builders import NOW, group, node, pdb, pod, pods
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.scaling.consolidation import (
    CONSOLIDATABLE,
    CONSOLIDATE_DELETE,
    CONSOLIDATE_REPLACE,
    CONSOLIDATION_DISABLED,
    EVICTION_BUDGET_EXHAUSTED,
    NEW_NODE_PREFIX,
    NO_CHEAPER_PLAN,
    NODE_GONE,
    NOT_STABLE,
    OUTSIDE_WINDOW,
    PRICE_UNKNOWN,
    SAVINGS_BELOW_THRESHOLD,
    TIME_BUDGET_EXCEEDED,
    ConsolidationPlan,
    ConsolidationPolicy,
    ConsolidationSettings,
    check_removal,
    eviction_cost,
    plan_consolidation,
    policy_of,
)
from vpsie_autoscaler.scaling.groups import GroupTemplate, ScaleDownPolicy
from vpsie_autoscaler.scaling.headroom import HEADROOM_RESERVED, Headroom
from vpsie_autoscaler.scaling.reasons import (
    AT_MIN_SIZE,
    DISRUPTION_BUDGET_EXHAUSTED,
    POD_BLOCKS_EVICTION,
)
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PDBInfo, PodInfo
from vpsie_autoscaler.scaling.windows import DisruptionWindow

ON = ConsolidationPolicy(enabled=True, consolidate_after=timedelta(minutes=15))
WIDE = ScaleDownPolicy(disruption_budget="100%", max_concurrent_drains=10)


def plan(
    nodes: Sequence[NodeInfo],
    groups: Sequence[GroupTemplate],
    *,
    policies: dict[str, ConsolidationPolicy] | None = None,
    pdbs: Sequence[PDBInfo] = (),
    **kw: Any,
) -> ConsolidationPlan:
    pol = policies if policies is not None else {g.name: ON for g in groups}
    return plan_consolidation(nodes, groups, pol, pdbs, now=NOW, **kw)


def web_nodes(n: int, pods_per_node: int, cpu: str = "400m", **kw: Any) -> list[NodeInfo]:
    return [
        node(f"web-{i}", pods=pods(f"app{i}", pods_per_node, cpu, node=f"web-{i}"), **kw) for i in range(n)
    ]


def test_six_nodes_at_thirty_percent_become_two() -> None:
    nodes = web_nodes(6, 3)  # 3 x 400m of 4 cpu: 30 %
    result = plan(nodes, [group("web", size=6, price=0.1, scale_down=WIDE)])
    (action,) = result.actions
    assert action.kind == CONSOLIDATE_DELETE
    assert len(action.nodes) == 4
    assert action.evictions == 12
    assert action.savings == pytest.approx(0.4)
    kept = {n.name for n in nodes} - set(action.nodes)
    assert set(action.destinations.values()) <= kept
    assert all(result.verdicts[n].code == CONSOLIDATE_DELETE for n in action.nodes)


def test_default_disruption_budget_takes_one_node_per_pass() -> None:
    result = plan(web_nodes(6, 3), [group("web", size=6, price=0.1)])  # budget 10 % of 6 -> 1
    (action,) = result.actions
    assert len(action.nodes) == 1
    others = [r.code for n, r in result.verdicts.items() if n not in action.nodes]
    assert others == [CONSOLIDATABLE] * 5


def test_a_node_is_replaced_by_a_cheaper_plan() -> None:
    big = node("big-0", "8", "16Gi", group="big", pods=pods("a", 2, "500m", node="big-0"))
    result = plan(
        [big],
        [group("big", "8", "16Gi", size=1, price=0.2), group("small", "2", "4Gi", price=0.05)],
        policies={"big": ON},
    )
    (action,) = result.actions
    assert action.kind == CONSOLIDATE_REPLACE
    assert action.replacement == "small"
    assert action.savings == pytest.approx(0.15)
    assert set(action.destinations.values()) == {NEW_NODE_PREFIX + "small"}
    assert result.verdicts["big-0"].code == CONSOLIDATE_REPLACE


def test_never_replaced_by_the_same_plan() -> None:
    lone = node("big-0", "8", "16Gi", group="big", pods=pods("a", 2, "500m", node="big-0"))
    twin = group("twin", "8", "16Gi", price=0.2)  # another group of the same shape and price
    result = plan([lone], [group("big", "8", "16Gi", size=1, price=0.2), twin], policies={"big": ON})
    assert result.actions == ()
    assert result.verdicts["big-0"].code == NO_CHEAPER_PLAN


def test_a_small_saving_is_not_worth_the_churn() -> None:
    big = node("big-0", "8", "16Gi", group="big", pods=pods("a", 2, "500m", node="big-0"))
    groups = [group("big", "8", "16Gi", size=1, price=0.10), group("small", "2", "4Gi", price=0.09)]
    result = plan([big], groups, policies={"big": ON})
    assert result.actions == ()
    assert result.verdicts["big-0"].code == SAVINGS_BELOW_THRESHOLD
    lenient = ConsolidationPolicy(enabled=True, min_savings_percent=5)
    assert plan([big], groups, policies={"big": lenient}).actions[0].replacement == "small"


def test_a_fully_used_node_is_never_touched() -> None:
    full = node("web-0", pods=pods("full", 4, "1", node="web-0"))  # 4 of 4 cpu
    busy = node("web-1", pods=pods("busy", 4, "1", node="web-1"))
    groups = [group("web", size=2, price=0.1, scale_down=WIDE), group("tiny", "1", "2Gi", price=0.01)]
    result = plan([full, busy], groups, policies={"web": ON})
    assert result.actions == ()
    assert {r.code for r in result.verdicts.values()} == {NO_CHEAPER_PLAN}


@pytest.mark.parametrize(
    ("victim", "pdbs"),
    [
        (pod("x", node="web-0", annotations={"karpenter.sh/do-not-disrupt": "true"}), []),
        (pod("x", node="web-0", annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}), []),
        (pod("x", node="web-0", labels={"app": "db"}), [pdb("db", {"app": "db"}, 0)]),
        (pod("x", node="web-0", owner=None), []),
    ],
    ids=["do-not-disrupt", "safe-to-evict-false", "pdb", "no-controller"],
)
def test_pods_that_must_not_move_block_their_node(victim: PodInfo, pdbs: list[PDBInfo]) -> None:
    nodes = [node("web-0", pods=[victim]), node("web-1")]
    result = plan(nodes, [group("web", size=2, price=0.1, scale_down=WIDE)], pdbs=pdbs)
    assert result.verdicts["web-0"].code == POD_BLOCKS_EVICTION
    assert all("web-0" not in a.nodes for a in result.actions)


def test_a_pdb_is_shared_across_the_nodes_of_one_action() -> None:
    nodes = [node(f"web-{i}", pods=[pod(f"db-{i}", node=f"web-{i}", labels={"app": "db"})]) for i in range(3)]
    result = plan(
        nodes, [group("web", size=3, price=0.1, scale_down=WIDE)], pdbs=[pdb("db", {"app": "db"}, 1)]
    )
    (action,) = result.actions
    assert len(action.nodes) == 1  # two nodes together would need two disruptions


def test_consolidate_after_waits_for_pods_to_settle() -> None:
    fresh = pod("fresh", node="web-0")
    fresh = PodInfo(**{**{f: getattr(fresh, f) for f in fresh.__dataclass_fields__}, "start_time": NOW})
    nodes = [node("web-0", pods=[fresh]), node("web-1", pods=pods("old", 1, node="web-1"))]
    groups = [group("web", size=2, price=0.1)]
    result = plan(nodes, groups, pod_changes={"web-1": NOW - timedelta(minutes=5)})
    assert result.verdicts["web-0"].code == NOT_STABLE
    assert result.verdicts["web-1"].code == NOT_STABLE
    assert result.verdicts["web-0"].message.endswith("consolidateAfter is 15m")
    later = plan_consolidation(nodes, groups, {"web": ON}, now=NOW + timedelta(minutes=16))
    assert later.actions


def test_never_below_min_nodes() -> None:
    result = plan(web_nodes(3, 1), [group("web", size=3, min_nodes=3, price=0.1, scale_down=WIDE)])
    assert result.actions == ()
    assert {r.code for r in result.verdicts.values()} == {AT_MIN_SIZE}
    two = plan(web_nodes(3, 1), [group("web", size=3, min_nodes=2, price=0.1, scale_down=WIDE)])
    assert len(two.actions[0].nodes) == 1


def test_a_zero_disruption_budget_freezes_the_group() -> None:
    frozen = ScaleDownPolicy(disruption_budget=0)
    result = plan(web_nodes(3, 1), [group("web", size=3, price=0.1, scale_down=frozen)])
    assert result.actions == ()
    assert {r.code for r in result.verdicts.values()} == {DISRUPTION_BUDGET_EXHAUSTED}


def test_the_hourly_eviction_budget_is_cluster_wide() -> None:
    nodes = [*web_nodes(2, 3), node("web-empty")]
    groups = [group("web", size=3, price=0.1, scale_down=WIDE)]
    spent = ConsolidationSettings(evictions_per_hour=10, evictions_last_hour=8)
    result = plan(nodes, groups, settings=spent)
    assert result.verdicts["web-0"].code == EVICTION_BUDGET_EXHAUSTED
    assert result.actions[0].nodes == ("web-empty",)  # an empty node evicts nothing


def test_pod_deletion_cost_steers_the_choice() -> None:
    dear = [pod(f"dear-{i}", node="web-0", annotations={"controller.kubernetes.io/pod-deletion-cost": "1e9"})
            for i in range(2)]  # fmt: skip
    nodes = [node("web-0", pods=dear), node("web-1", pods=pods("cheap", 2, node="web-1")), node("web-2")]
    nodes[2] = node("web-2", pods=pods("full", 3, "1", node="web-2"))
    result = plan(nodes, [group("web", size=3, price=0.1)])  # one node per pass
    assert result.actions[0].nodes == ("web-1",)
    assert result.verdicts["web-0"].code == CONSOLIDATABLE


@pytest.mark.parametrize(
    ("annotations", "priority", "expected"),
    [
        ({}, 0, 1.0),
        ({"controller.kubernetes.io/pod-deletion-cost": str(2**27)}, 0, 2.0),
        ({"controller.kubernetes.io/pod-deletion-cost": "-1e12"}, 0, -10.0),
        ({"controller.kubernetes.io/pod-deletion-cost": "junk"}, 0, 1.0),
        ({}, 2**25, 2.0),
        ({}, 2**30, 10.0),
    ],
)
def test_eviction_cost_follows_karpenter(annotations: dict[str, str], priority: int, expected: float) -> None:
    assert eviction_cost(pod("p", annotations=annotations, priority=priority)) == pytest.approx(expected)


def test_every_node_of_our_groups_gets_a_verdict_and_others_none() -> None:
    nodes = [
        node("web-0", pods=pods("a", 1, node="web-0")),
        node("db-0", group="db", pods=pods("b", 1, node="db-0")),
        node("free-0", group=None),
        node("gpu-0", group="gpu"),
    ]
    groups = [group("web", size=1, price=0.1), group("db", size=1, price=0.1), group("gpu", size=1)]
    result = plan(nodes, groups, policies={"web": ON, "gpu": ON})
    assert result.verdicts["db-0"].code == CONSOLIDATION_DISABLED
    assert result.verdicts["gpu-0"].code == PRICE_UNKNOWN
    assert result.verdicts["web-0"].code == CONSOLIDATE_DELETE
    assert "free-0" not in result.verdicts


def test_outside_its_disruption_window_nothing_moves() -> None:
    night = ConsolidationPolicy(enabled=True, windows=(DisruptionWindow("0 22 * * *", timedelta(hours=8)),))
    groups = [group("web", size=2, price=0.1)]
    nodes = web_nodes(2, 1)
    noon = plan(nodes, groups, policies={"web": night})  # NOW is 12:00 UTC
    assert {r.code for r in noon.verdicts.values()} == {OUTSIDE_WINDOW}
    late = plan_consolidation(nodes, groups, {"web": night}, now=NOW.replace(hour=23))
    assert late.actions


def test_a_pass_stops_at_its_time_budget() -> None:
    ticks = iter(range(1000))
    clock: Callable[[], float] = lambda: float(next(ticks))  # noqa: E731 - one second per call
    budget = ConsolidationSettings(time_budget=2.5)
    result = plan(web_nodes(6, 3), [group("web", size=6, price=0.1)], settings=budget, monotonic=clock)
    assert result.timed_out
    assert TIME_BUDGET_EXCEEDED in {r.code for r in result.verdicts.values()}
    assert len(result.verdicts) == 6


def test_a_bad_window_schedule_keeps_consolidation_off() -> None:
    bad = ConsolidationPolicy(enabled=True, windows=(DisruptionWindow("99 * * * *", timedelta(hours=1)),))
    result = plan(web_nodes(2, 1), [group("web", size=2, price=0.1)], policies={"web": bad})
    assert result.actions == ()
    assert all(r.code == OUTSIDE_WINDOW and "invalid" in r.message for r in result.verdicts.values())


def test_the_nodegroup_spec_becomes_the_policy() -> None:
    ng = NodeGroup.from_k8s(
        {
            "metadata": {"name": "web"},
            "spec": {
                "minNodes": 0,
                "maxNodes": 3,
                "vm": {"resourceIdentifier": "r", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "p"},
                "consolidation": {
                    "enabled": True,
                    "consolidateAfter": "1h",
                    "minSavingsPercent": 35,
                    "windows": [{"schedule": "@daily", "duration": "2h"}],
                },
            },
        }
    )
    assert policy_of(ng) == ConsolidationPolicy(
        enabled=True,
        consolidate_after=timedelta(hours=1),
        min_savings_percent=35,
        windows=(DisruptionWindow("@daily", timedelta(hours=2)),),
    )
    ng.spec.consolidation = type(ng.spec.consolidation)()
    assert policy_of(ng) == ConsolidationPolicy()


def test_a_groups_headroom_is_never_consolidated_away() -> None:
    spare = Headroom(nodes=1)
    nodes = [node("web-0", pods=pods("a", 1, node="web-0")), node("web-1")]  # web-1 is the spare node
    groups = [group("web", size=2, price=0.1, scale_down=WIDE, spare=spare)]
    result = plan(nodes, groups)
    assert result.actions == ()
    assert {r.code for r in result.verdicts.values()} == {HEADROOM_RESERVED}
    without = plan(nodes, [group("web", size=2, price=0.1, scale_down=WIDE)])
    assert without.actions


def test_a_replacements_old_nodes_are_revalidated_before_they_drain() -> None:
    nodes = [node("old", pods=pods("a", 2, node="old")), node("new", group="cheap")]
    groups = [group("web", size=1, price=0.2), group("cheap", size=1, price=0.05)]
    action, _ = check_removal(["old"], nodes, groups, {"web": ON}, now=NOW)
    assert action is not None
    assert set(action.destinations.values()) == {"new"}
    full = [nodes[0], node("new", group="cheap", pods=pods("b", 4, "1", node="new"))]
    action, reason = check_removal(["old"], full, groups, {"web": ON}, now=NOW)
    assert action is None
    assert reason.code == NO_CHEAPER_PLAN  # the new node filled up meanwhile: the old one stays
    _, gone = check_removal(["vanished"], nodes, groups, {"web": ON}, now=NOW)
    assert gone.code == NODE_GONE
