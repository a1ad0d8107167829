"""Consolidation controller: plan → drain requests or a replacement first, Events, metrics, dry-run."""

from __future__ import annotations

from typing import Any

from tests.unit.controllers.fakes import World
from vpsie_autoscaler.api.labels import DRAIN_REASON_ANNOTATION, DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.controllers.consolidation import ConsolidationController
from vpsie_autoscaler.controllers.consolidation.controller import REPLACES_ANNOTATION

ENABLED = {"enabled": True, "consolidateAfter": "0s"}
WIDE = {"disruptionBudget": "100%", "maxConcurrentDrains": 10}
SAVINGS = "vpsie_autoscaler_consolidation_projected_savings_hourly"


def controller(w: World, *, dry_run: bool = False) -> ConsolidationController:
    return ConsolidationController(w.deps(dry_run=dry_run), builder=w.builder(), registry=w.registry)


def drains(w: World) -> dict[str, str]:
    out = {}
    for v in w.stores["vpsienodes"].list():
        ann = v["metadata"].get("annotations") or {}
        if DRAIN_REQUESTED_ANNOTATION in ann:
            out[v["metadata"]["name"]] = ann[DRAIN_REASON_ANNOTATION]
    return out


def group(w: World, name: str, cpu: str, price: float, **spec: Any) -> None:
    w.group(name, cpu=cpu, memory="8Gi", template={"resources": {"cpu": cpu, "memory": "8Gi"},
            "labels": {"pool": "any"}, "hourlyPrice": price}, **spec)  # fmt: skip


async def test_six_nodes_at_thirty_percent_become_two() -> None:
    w = World()
    group(w, "web", "2", 0.1, consolidation=ENABLED, scaleDown=WIDE)
    for i in range(6):
        w.member(f"web-{i}", "web", cpu="2", memory="8Gi")
        for j in range(3):
            w.bound_pod(f"p{i}-{j}", f"web-{i}", cpu="200m")
    plan = await controller(w).consolidate_once()
    assert plan is not None
    assert len(drains(w)) == 4
    assert set(drains(w).values()) == {"ConsolidateDelete"}
    assert w.sample(SAVINGS) == 0.4
    assert any(e.reason == "Consolidating" for e in w.recorder.events)


async def test_a_cheaper_plan_is_launched_first_and_the_old_node_drained_once_it_is_ready() -> None:
    w = World()
    group(w, "big", "8", 0.2, consolidation=ENABLED)
    group(w, "small", "2", 0.05)
    w.member("big-0", "big", cpu="8", memory="8Gi")
    w.bound_pod("a", "big-0", cpu="500m")
    w.bound_pod("b", "big-0", cpu="500m")

    c = controller(w)
    await c.consolidate_once()
    (new,) = [v for v in w.stores["vpsienodes"].list() if v["spec"]["nodeGroup"] == "small"]
    assert new["metadata"]["annotations"][REPLACES_ANNOTATION] == "big-0"
    assert drains(w) == {}  # nothing is drained before the new node is Ready

    await c.consolidate_once()  # still Pending: wait, plan nothing else
    assert drains(w) == {}
    assert len(w.stores["vpsienodes"].list()) == 2

    name = new["metadata"]["name"]
    new["status"] = {"phase": "Ready", "nodeName": name}
    w.node(name, "small", cpu="2", memory="8Gi", vpsienode=name)
    await c.consolidate_once()
    assert drains(w) == {"big-0": "ConsolidateReplace"}


async def test_a_fully_used_node_is_never_touched() -> None:
    w = World()
    group(w, "web", "2", 0.1, consolidation=ENABLED, scaleDown=WIDE)
    group(w, "tiny", "1", 0.01)
    for i in range(2):
        w.member(f"web-{i}", "web", cpu="2", memory="8Gi")
        w.bound_pod(f"full-{i}", f"web-{i}", cpu="1900m")
    await controller(w).consolidate_once()
    assert drains(w) == {}
    assert len(w.stores["vpsienodes"].list()) == 2
    notes = [e.note for e in w.recorder.events if e.reason == "NotConsolidated"]
    assert len(notes) == 2
    assert all("NoCheaperPlan" in n for n in notes)


async def test_dry_run_shows_the_plan_and_changes_nothing() -> None:
    w = World()
    group(w, "big", "8", 0.2, consolidation=ENABLED, scaleDown=WIDE)
    group(w, "small", "2", 0.05)
    for i in range(2):
        w.member(f"big-{i}", "big", cpu="8", memory="8Gi")
        w.bound_pod(f"a{i}", f"big-{i}", cpu="500m")
    c = controller(w, dry_run=True)
    plan = await c.consolidate_once()
    await c.consolidate_once()
    assert plan is not None
    assert plan.actions
    assert drains(w) == {}
    assert len(w.stores["vpsienodes"].list()) == 2
    notes = [e.note for e in w.recorder.events if e.reason == "Consolidating"]
    assert notes
    assert all(n.startswith("dry-run: ") for n in notes)
    assert len(notes) == len(plan.actions[0].nodes)  # announced once, not every pass
    assert w.sample(SAVINGS) > 0
