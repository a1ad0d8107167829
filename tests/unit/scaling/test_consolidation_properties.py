"""Consolidation invariants for every input (hypothesis): a plan never leaves a running pod without a
node it fits, never goes below minNodes, never replaces a node by its own plan, and every node of a
NodeGroup gets a verdict."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.scaling.builders import NOW, group, node, pod, self_anti_affinity
from vpsie_autoscaler.scaling.consolidation import (
    NEW_NODE_PREFIX,
    ConsolidationPolicy,
    ConsolidationSettings,
    plan_consolidation,
)
from vpsie_autoscaler.scaling.groups import GroupTemplate, ScaleDownPolicy
from vpsie_autoscaler.scaling.predicates import check
from vpsie_autoscaler.scaling.scaledown import movable_pods
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.selectors import Taint
from vpsie_autoscaler.scaling.simulation import SimNode

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAINT = Taint("dedicated", "x", "NoSchedule")
BUDGETS: tuple[int | str, ...] = (0, 1, 3, "50%", "100%", "100%")


@st.composite
def a_pod(draw: st.DrawFn, name: str, on: str) -> PodInfo:
    kw: dict[str, object] = {}
    app = draw(st.sampled_from(("web", "db", "batch")))
    kw["labels"] = {"app": app}
    if draw(st.integers(0, 3)) == 0:
        kw["node_selector"] = {"pool": draw(st.sampled_from(("a", "b")))}
    if draw(st.integers(0, 3)) == 0:
        kw["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
    if draw(st.integers(0, 6)) == 0:
        kw["host_port"] = 80
    if app == "db" and draw(st.booleans()):
        kw["affinity"] = self_anti_affinity("db")
    if draw(st.integers(0, 8)) == 0:
        kw["annotations"] = {
            "controller.kubernetes.io/pod-deletion-cost": str(draw(st.integers(-(10**9), 10**9)))
        }
    cpu, mem = draw(st.integers(50, 2500)), draw(st.integers(32, 4096))
    return pod(name, f"{cpu}m", f"{mem}Mi", node=on, **kw)


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[NodeInfo], list[GroupTemplate], dict[str, ConsolidationPolicy]]:
    groups: list[GroupTemplate] = []
    nodes: list[NodeInfo] = []
    policies: dict[str, ConsolidationPolicy] = {}
    for g in range(draw(st.integers(1, 4))):
        name = f"g{g}"
        size = draw(st.integers(0, 5))
        labels = {"pool": draw(st.sampled_from(("a", "b")))} if draw(st.booleans()) else {}
        taints = (TAINT,) if draw(st.integers(0, 3)) == 0 else ()
        cpu, mem = draw(st.integers(1, 8)), draw(st.integers(1, 16))
        budget = draw(st.sampled_from(BUDGETS))
        template = group(
            name,
            str(cpu),
            f"{mem}Gi",
            min_nodes=draw(st.integers(0, size)),
            max_nodes=size + draw(st.integers(0, 2)),
            size=size,
            labels=labels,
            taints=taints,
            price=draw(st.one_of(st.none(), st.sampled_from((0.01, 0.05, 0.1, 0.2, 0.4)))),
            scale_down=ScaleDownPolicy(
                disruption_budget=budget, max_concurrent_drains=draw(st.integers(1, 4))
            ),
        )
        groups.append(template)
        if draw(st.integers(0, 4)) > 0:
            policies[name] = ConsolidationPolicy(
                enabled=True,
                consolidate_after=timedelta(minutes=draw(st.sampled_from((0, 15, 180)))),
                min_savings_percent=draw(st.sampled_from((0, 20, 50))),
            )
        for i in range(size):
            node_name = f"{name}-{i}"
            shell = template.virtual_node(node_name)
            sim = SimNode(shell)
            placed: list[PodInfo] = []
            for j in range(draw(st.integers(0, 6))):
                p = draw(a_pod(f"{node_name}-p{j}", node_name))
                if check(p, sim) is None:  # a snapshot the scheduler could have produced
                    sim.place(p)
                    placed.append(p)
            nodes.append(
                node(
                    node_name,
                    str(cpu),
                    f"{mem}Gi",
                    group=name,
                    labels=labels,
                    taints=[{"key": t.key, "value": t.value, "effect": t.effect} for t in taints],
                    unschedulable=draw(st.integers(0, 9)) == 0,
                    ready=draw(st.integers(0, 9)) > 0,
                    pods=placed,
                )
            )
    if draw(st.booleans()):  # an empty, cheap group: what replacements are made of
        cpu, mem = draw(st.integers(1, 4)), draw(st.integers(1, 8))
        groups.append(
            group("spare", str(cpu), f"{mem}Gi", max_nodes=2, price=draw(st.sampled_from((0.005, 0.02))))
        )
    if draw(st.booleans()):
        nodes.append(node("unowned", "16", "64Gi", group=None))
    return nodes, groups, policies


@PROPERTY_SETTINGS
@given(
    cluster=clusters(),
    evictions=st.sampled_from((0, 3, 100, 100)),
)
def test_a_plan_never_leaves_a_running_pod_without_a_node_it_fits(
    cluster: tuple[list[NodeInfo], list[GroupTemplate], dict[str, ConsolidationPolicy]], evictions: int
) -> None:
    nodes, groups, policies = cluster
    result = plan_consolidation(
        nodes, groups, policies, now=NOW, settings=ConsolidationSettings(evictions_per_hour=evictions)
    )
    by_name = {n.name: n for n in nodes}
    by_group = {g.name: g for g in groups}

    # Every node of a NodeGroup has a verdict; nodes of no group have none.
    assert set(result.verdicts) == {n.name for n in nodes if n.group in by_group and not n.deleting}
    assert len(result.actions) <= 1
    event(f"actions: {[(a.kind, len(a.nodes)) for a in result.actions]}")
    for action in result.actions:
        removed = [by_name[n] for n in action.nodes]
        assert len(set(action.nodes)) == len(action.nodes)
        for n in removed:
            assert n.group in policies
            assert n.ready
            assert not n.unschedulable
        # Never below minNodes, never beyond the eviction budget.
        for name, count in Counter(n.group for n in removed).items():
            g = by_group[str(name)]
            assert g.size - count >= g.min_nodes
        assert action.evictions <= evictions
        # No churn: a replacement is cheaper by more than the threshold and never the same plan.
        if action.replacement is not None:
            new = by_group[action.replacement]
            assert action.replacement not in {n.group for n in removed}
            threshold = sum(
                (by_group[str(n.group)].hourly_price or 0) * policies[str(n.group)].min_savings_percent / 100
                for n in removed
            )
            assert (new.hourly_price or 0) < action.removed_cost
            assert action.savings > threshold
        # Every pod that must move has a destination that admits it, all of them together.
        moving = [p for n in removed for p in movable_pods(n)]
        assert sorted(p.key for p in action.pods_to_evict) == sorted(p.key for p in moving)
        targets: dict[str, SimNode] = {
            n.name: SimNode(n)
            for n in nodes
            if n.name not in action.nodes and not n.deleting and not n.unschedulable and n.ready
        }
        if action.replacement is not None:
            targets[NEW_NODE_PREFIX + action.replacement] = SimNode(
                by_group[action.replacement].virtual_node()
            )
        for p in moving:
            dest = action.destinations.get(p.key)
            assert dest in targets, f"{p.key} has no destination ({dest})"
            reason = check(p, targets[dest])
            assert reason is None, f"{p.key} does not fit {dest}: {reason}"
            targets[dest].place(p)
