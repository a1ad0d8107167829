"""Flexible plans and headroom through the scale-up controller: the chosen plan goes into the VPSieNode
it creates, a record's plan is the capacity it brings, and headroom taken by pods is ordered again
(fake API server, fake clock)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any, cast

from tests.support.vpsie import make_client, running_simulator, sim_config
from tests.unit.controllers.fakes import StubCatalogue, World
from tests.unit.controllers.test_invalid_objects import Lifecycle, nodegroup
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS
from vpsie_autoscaler.controllers.catalogue import CatalogueClient, PlanCatalogue, PlanFacts
from vpsie_autoscaler.controllers.decisions import DecisionLog, GroupFacts
from vpsie_autoscaler.controllers.flexible import headroom_of, headroom_text, plan_shapes
from vpsie_autoscaler.controllers.scaleup import ScaleUpController, ScaleUpOptions
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.scaling.scaleup import IN_FLIGHT, TRIGGERED
from vpsie_autoscaler.vpsie import models

SMALL = PlanFacts(
    {"cpu": 2, "memory": "4096Mi"}, 20 / 730, "Standard", identifier="plan-2", category="Shared"
)
BIG = PlanFacts(
    {"cpu": 8, "memory": "16384Mi"}, 80 / 730, "Professional", identifier="plan-8", category="Shared"
)
HIGHMEM = PlanFacts(
    {"cpu": 4, "memory": "32768Mi"}, 90 / 730, "HighMem", identifier="plan-hm", category="Memory"
)


def flexible_world(*, plans: dict[str, Any] | None = None, **spec: Any) -> tuple[World, NodeGroup]:
    w = World()
    obj = w.group("flex", cpu=None, plans=plans or {"sizes": ["plan-2", "plan-8"]}, **spec)
    ng = NodeGroup.from_k8s(obj)
    assert w.catalogue is not None
    w.catalogue.put(ng, SMALL)  # the source's own plan (plan-1 in the fake VM source)
    w.catalogue.put_options(ng, [SMALL, BIG, HIGHMEM])
    return w, ng


def controller(w: World, *, dry_run: bool = False) -> ScaleUpController:
    return ScaleUpController(
        w.deps(dry_run=dry_run), builder=w.builder(), options=ScaleUpOptions(), rng=random.Random(3)
    )


def created_plans(w: World) -> list[tuple[str, str]]:
    out = []
    for c in w.kube.writes("create", "vpsienodes"):
        spec = c.body["spec"]
        out.append((spec["vm"]["resourceIdentifier"], spec["instanceType"]))
    return sorted(out)


async def test_the_catalogue_lists_the_plans_a_group_may_choose_from() -> None:
    clock = FakeClock()
    spec: dict[str, Any] = {
        "minNodes": 0,
        "maxNodes": 3,
        "vm": {
            "resourceIdentifier": "x",
            "osIdentifier": DEFAULT_OS,
            "dcIdentifier": DEFAULT_DATACENTER,
            "projectId": "p",
        },
    }
    anything = NodeGroup.from_k8s(
        {"metadata": {"name": "any"}, "spec": {**spec, "plans": {"requirements": {}}}}
    )
    compute = NodeGroup.from_k8s(
        {
            "metadata": {"name": "co"},
            "spec": {**spec, "plans": {"requirements": {"categories": ["Compute Optimized"]}}},
        }
    )
    async with running_simulator(sim_config()) as (_, url), make_client(url, clock) as client:
        catalogue = PlanCatalogue(client, clock)
        assert catalogue.options(anything) is None  # never fetched on the hot path: only marked wanted
        catalogue.options(compute)
        await catalogue.refresh()
        listed = catalogue.options(anything)
        assert listed is not None
        assert [f.name for f in listed] == ["Starter", "Standard", "Advanced", "Professional", "HighMem"]
        assert listed[3].capacity == {"cpu": 8, "memory": "16384Mi", "ephemeral-storage": "320Gi"}
        assert listed[3].hourly_price == 80 / 730
        assert [(f.name, f.category) for f in catalogue.options(compute) or ()] == [
            ("HighMem", "Compute Optimized")
        ]
        shapes = plan_shapes(compute, catalogue, ())
        assert [s.instance_type for s in shapes] == ["HighMem"]


def test_sizes_and_requirements_select_the_plans() -> None:
    w, ng = flexible_world()
    assert w.catalogue is not None
    assert [p.name for p in plan_shapes(ng, w.catalogue, ())] == ["plan-2", "plan-8"]
    w2, ng2 = flexible_world(plans={"requirements": {"memory": {"min": "8Gi"}, "categories": ["Shared"]}})
    assert w2.catalogue is not None
    assert [p.name for p in plan_shapes(ng2, w2.catalogue, ())] == ["plan-8"]


async def test_the_chosen_plan_goes_into_the_vpsienode() -> None:
    w, _ = flexible_world()
    w.pending_pod("big", cpu="8")
    for i in range(2):
        w.pending_pod(f"small-{i}", cpu="900m")
    plan = await controller(w).scale_up_once()
    assert plan is not None
    assert {o.status for o in plan.pods} == {TRIGGERED}
    assert created_plans(w) == [("plan-2", "Standard"), ("plan-8", "Professional")]
    (scaled,) = w.recorder.reasons("ScaledUp", "flex")
    assert "plans: 1 x Standard + 1 x Professional" in scaled.note
    assert "cheapest mix of plans" in scaled.note


async def test_a_record_brings_the_capacity_of_its_own_plan() -> None:
    w, _ = flexible_world()
    w.kube.cache_writes = False  # the next pass sees the new record only through expectations
    w.pending_pod("big", cpu="8")
    c = controller(w)
    await c.scale_up_once()
    plan = await c.scale_up_once()
    assert plan is not None
    assert plan.pods[0].status == IN_FLIGHT  # an 8-cpu record, not the 2-cpu source plan
    assert created_plans(w) == [("plan-8", "Professional")]


async def test_dry_run_reports_the_plan_choice_and_creates_nothing() -> None:
    w, _ = flexible_world()
    w.pending_pod("big", cpu="8")
    await controller(w, dry_run=True).scale_up_once()
    assert created_plans(w) == []
    (scaled,) = w.recorder.reasons("ScaledUp", "flex")
    assert "plans: 1 x Professional" in scaled.note


async def test_headroom_taken_by_pods_is_ordered_again() -> None:
    w = World()
    w.group("web", headroom={"cpu": "1"})
    w.member("web-aaaaa", "web")
    w.add("pods", w.bound_pod("busy", "web-aaaaa", cpu="1500m"))
    c = controller(w)
    plan = await c.scale_up_once()
    assert plan is not None
    assert plan.pods == ()
    (body,) = [x.body for x in w.kube.writes("create", "vpsienodes")]
    assert body["spec"]["nodeGroup"] == "web"
    (scaled,) = w.recorder.reasons("ScaledUp", "web")
    assert "headroom (1 virtual pod(s))" in scaled.note


async def test_headroom_that_is_held_orders_nothing() -> None:
    w = World()
    w.group("web", headroom={"cpu": "1"})
    w.member("web-aaaaa", "web")
    w.add("pods", w.bound_pod("light", "web-aaaaa", cpu="500m"))
    assert await controller(w).scale_up_once() is None
    assert w.kube.writes("create", "vpsienodes") == []


def test_headroom_status_text() -> None:
    w = World()
    ng = NodeGroup.from_k8s(w.group("web", headroom={"cpu": "1", "memory": "1Gi"}))
    snap = w.builder().build(w.clock.now())
    (group,) = snap.groups
    assert group.spare == headroom_of(ng)
    assert headroom_text(group, snap.nodes) == "1 cpu, 1Gi memory: 1 virtual pod(s) waiting for capacity"


async def test_headroom_and_plan_choice_are_handed_to_the_status_writer_and_the_metric() -> None:
    w, _ = flexible_world(headroom={"cpu": "1"})
    w.pending_pod("big", cpu="8")
    c = controller(w)
    await c.scale_up_once()
    facts = c.decisions.facts("flex")
    assert facts is not None
    assert facts.headroom == "1 cpu: 1 virtual pod(s) waiting for capacity"
    # The 8-cpu pod fills a Professional node; the headroom's virtual pod takes a Standard one.
    assert facts.last_plan_choice == "1 x Standard + 1 x Professional at 0.1370/h (cheapest mix of plans)"
    assert w.sample("vpsie_autoscaler_nodegroup_headroom_missing_pods", {"nodegroup": "flex"}) == 1


async def test_the_nodegroup_controller_folds_the_facts_into_status() -> None:
    env, decisions = Lifecycle(), DecisionLog()
    env.put(nodegroup("web", finalizer=True))
    reconciler = env.nodegroups(dataclasses.replace(env.deps(), decisions=decisions))
    asked: list[str] = []
    decisions.on_record(asked.append)
    decisions.note_facts("web", GroupFacts(headroom="2 cpu: held", last_plan_choice="2 x Standard"))
    decisions.note_facts("web", GroupFacts(headroom="2 cpu: held", last_plan_choice="2 x Standard"))
    assert asked == ["web"]  # asked once: the same facts again change nothing
    await reconciler.reconcile(Request("web"))
    st = (env.get("nodegroups", "web") or {}).get("status") or {}
    assert (st.get("headroom"), st.get("lastPlanChoice")) == ("2 cpu: held", "2 x Standard")


async def test_headroom_on_the_way_is_not_ordered_twice() -> None:
    w = World()
    w.kube.cache_writes = False  # the next pass sees the new record only through expectations
    w.group("web", headroom={"cpu": "1"})
    w.member("web-aaaaa", "web")
    w.add("pods", w.bound_pod("busy", "web-aaaaa", cpu="1500m"))
    c = controller(w)
    await c.scale_up_once()
    assert await c.scale_up_once() is None  # the record on its way holds the headroom
    assert len(w.kube.writes("create", "vpsienodes")) == 1


def plans_client() -> StubCatalogue:
    """A VPSie catalogue that lists the three plans of these tests."""
    return StubCatalogue(
        [
            models.Plan(identifier=f.identifier, nickname=f.name, cpu=cpu, ram=ram, ssd=80, price=price)
            for f, cpu, ram, price in ((SMALL, 2, 4096, 20), (BIG, 8, 16384, 80), (HIGHMEM, 4, 32768, 90))
        ]
    )


def world_before_the_plans_are_read(client: StubCatalogue) -> tuple[World, NodeGroup]:
    w = World()
    w.catalogue = PlanCatalogue(cast(CatalogueClient, client), w.clock)
    obj = w.group("flex", cpu=None, plans={"sizes": ["plan-2", "plan-8"]})
    ng = NodeGroup.from_k8s(obj)
    w.catalogue.put(ng, SMALL)  # the source's own plan is known; the group's plans are not
    w.pending_pod("big", cpu="8")
    for i in range(2):
        w.pending_pod(f"small-{i}", cpu="900m")
    return w, ng


async def test_the_first_decision_waits_for_the_groups_plans_instead_of_planning_with_one() -> None:
    """Right after a start the plans of ``spec.plans`` are not read yet: planned with the source's
    plan alone, the 8-cpu pod would get nothing and the small pods a Standard node of their own."""
    client = plans_client()
    w, _ = world_before_the_plans_are_read(client)
    assert w.catalogue is not None
    c = controller(w)
    await c.scale_up_once()
    assert w.kube.writes("create", "vpsienodes") == []  # nothing ordered with one plan of three
    await w.catalogue.refresh()  # the catalogue answers (and re-plans: scale-up's on_change)
    assert client.calls >= 1
    await c.scale_up_once()
    assert created_plans(w) == [("plan-2", "Standard"), ("plan-8", "Professional")]


async def test_a_catalogue_that_fails_leaves_the_group_its_source_plan() -> None:
    client = plans_client()
    client.down = True
    w, _ = world_before_the_plans_are_read(client)
    assert w.catalogue is not None
    c = controller(w)
    await c.scale_up_once()
    await w.catalogue.refresh()
    await c.scale_up_once()
    created = [c.body["spec"]["vm"]["resourceIdentifier"] for c in w.kube.writes("create", "vpsienodes")]
    assert created == ["plan-1"]  # the source's plan: the small pods go on, the 8-cpu pod waits
