"""Scale-up controller: decision → writes, Events, metrics (fake API server, fake clock)."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.unit.controllers.fakes import World
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.controllers.catalogue import PlanCatalogue, PlanFacts
from vpsie_autoscaler.controllers.scaleup import ScaleUpController, ScaleUpOptions
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.scaling import ClusterLimits
from vpsie_autoscaler.scaling.scaleup import IN_FLIGHT, NOT_TRIGGERED, SCHEDULABLE, TRIGGERED

LATENCY = "vpsie_autoscaler_scale_up_decision_latency_seconds"


def controller(w: World, *, dry_run: bool = False, **options: object) -> ScaleUpController:
    return ScaleUpController(
        w.deps(dry_run=dry_run),
        builder=w.builder(),
        options=ScaleUpOptions(**options),  # type: ignore[arg-type]
        rng=random.Random(3),
    )


def created(w: World) -> list[dict[str, object]]:
    return [c.body for c in w.kube.writes("create", "vpsienodes")]


async def test_pending_pods_get_exactly_the_nodes_they_need() -> None:
    w = World()
    w.group("web")
    for i in range(3):
        w.pending_pod(f"p{i}", cpu="1500m")  # one per 2-cpu node
    c = controller(w)
    plan = await c.scale_up_once()
    assert plan is not None
    assert [o.status for o in plan.pods] == [TRIGGERED] * 3
    bodies = created(w)
    assert len(bodies) == 3
    for body in bodies:
        meta = body["metadata"]
        assert isinstance(meta, dict)
        assert meta["labels"][NODEGROUP_LABEL] == "web"
        assert meta["name"].startswith("web-")
    assert len({b["metadata"]["name"] for b in bodies}) == 3  # type: ignore[index]
    assert [e.name for e in w.recorder.reasons("TriggeredScaleUp")] == ["p0", "p1", "p2"]
    (scaled,) = w.recorder.reasons("ScaledUp", "web")
    assert "0 -> 3" in scaled.note
    assert scaled.related in {b["metadata"]["name"] for b in bodies}  # type: ignore[index]
    assert (
        w.sample("vpsie_autoscaler_scale_up_total", {"nodegroup": "web", "reason": "UnschedulablePods"}) == 3
    )
    assert w.sample("vpsie_autoscaler_unschedulable_pods") == 3
    # The NodeGroup's status has one writer, the NodeGroup controller: scale-up hands it the decision.
    assert w.kube.writes("patch", "nodegroups") == []
    decision = c.decisions.latest("web")
    assert decision is not None
    assert decision.text == scaled.note
    assert decision.text.startswith("scale-up web: 0 -> 3")


async def test_capacity_already_on_the_way_is_not_ordered_twice_even_before_the_cache_shows_it() -> None:
    w = World()
    w.kube.cache_writes = False  # the VPSieNode watch has not delivered our creations yet
    w.group("web")
    for i in range(3):
        w.pending_pod(f"p{i}", cpu="1500m")
    c = controller(w)
    await c.scale_up_once()
    assert len(created(w)) == 3
    plan = await c.scale_up_once()  # next batch, same pods still pending
    assert plan is not None
    assert [o.status for o in plan.pods] == [IN_FLIGHT] * 3
    assert len(created(w)) == 3


async def test_in_flight_vpsienodes_in_the_cache_count_as_capacity() -> None:
    w = World()
    w.group("web")
    w.vpsienode("web-aaaaa", "web", phase="Provisioning")
    w.pending_pod("p0", cpu="1500m")
    plan = await controller(w).scale_up_once()
    assert plan is not None
    assert plan.pods[0].status == IN_FLIGHT
    assert created(w) == []


async def test_only_one_of_several_matching_groups_grows() -> None:
    w = World()
    w.group("a")
    w.group("b")
    w.group("c")
    for i in range(4):
        w.pending_pod(f"p{i}", cpu="500m")
    await controller(w).scale_up_once()
    groups = {b["metadata"]["labels"][NODEGROUP_LABEL] for b in created(w)}  # type: ignore[index]
    assert len(groups) == 1
    assert len(w.recorder.reasons("ScaledUp")) == 1


async def test_pods_no_group_can_hold_get_a_reason_per_group_and_no_node() -> None:
    w = World()
    w.group("small", cpu="1")
    w.group("full", max_nodes=0)
    w.pending_pod("huge", cpu="8")
    plan = await controller(w).scale_up_once()
    assert plan is not None
    assert plan.pods[0].status == NOT_TRIGGERED
    assert created(w) == []
    (event,) = w.recorder.reasons("NotTriggerScaleUp", "huge")
    assert "small: InsufficientResource" in event.note
    assert "full: GroupAtMaxSize" in event.note


async def test_the_same_verdict_is_not_repeated_every_loop() -> None:
    w = World()
    w.group("small", cpu="1")
    w.pending_pod("huge", cpu="8")
    c = controller(w)
    await c.scale_up_once()
    await c.scale_up_once()
    assert len(w.recorder.reasons("NotTriggerScaleUp")) == 1
    await w.clock.advance(301)
    await c.scale_up_once()
    assert len(w.recorder.reasons("NotTriggerScaleUp")) == 2


async def test_a_group_without_known_capacity_is_named_in_the_pod_event() -> None:
    w = World()
    w.group("noplan", cpu=None)
    w.pending_pod("p", cpu="1")
    await controller(w).scale_up_once()
    (event,) = w.recorder.reasons("NotTriggerScaleUp", "p")
    assert event.note.startswith(
        "pod didn't trigger scale-up: no usable NodeGroup: noplan: NodeGroup noplan: "
    )
    assert "capacity of cpu, memory unknown" in event.note
    assert "no VPSie credentials to read the plan" in event.note
    assert created(w) == []


async def test_plan_capacity_comes_from_the_catalogue_cache() -> None:
    w = World()
    ng = w.group("vm", cpu=None)
    catalogue = PlanCatalogue(None, w.clock)
    from vpsie_autoscaler.api.nodegroup import NodeGroup

    catalogue.put(NodeGroup.from_k8s(ng), PlanFacts({"cpu": 4, "memory": "8192Mi"}, 0.05, "Advanced"))
    w.catalogue = catalogue
    w.pending_pod("p", cpu="3")
    await controller(w).scale_up_once()
    assert len(created(w)) == 1


async def test_a_name_collision_is_retried_with_a_new_suffix() -> None:
    w = World()
    w.group("web")
    w.pending_pod("p", cpu="1")
    w.kube.fail_create.append(errors.AlreadyExists("taken"))
    await controller(w).scale_up_once()
    attempts = w.kube.writes("create", "vpsienodes")
    assert len(attempts) == 2
    assert attempts[0].name != attempts[1].name
    assert len(w.stores["vpsienodes"].list()) == 1


async def test_a_failed_creation_is_reported_on_the_group() -> None:
    w = World()
    w.group("web")
    w.pending_pod("p", cpu="1")
    w.kube.fail_create.append(errors.Forbidden("no"))
    await controller(w).scale_up_once()
    (event,) = w.recorder.reasons("ScaleUpFailed", "web")
    assert event.type == "Warning"
    assert w.recorder.reasons("ScaledUp") == []


async def test_cluster_limits_are_applied() -> None:
    w = World()
    w.group("web")
    for i in range(5):
        w.pending_pod(f"p{i}", cpu="1500m")
    await controller(w, limits=ClusterLimits(max_nodes=2)).scale_up_once()
    assert len(created(w)) == 2
    (scaled,) = w.recorder.reasons("ScaledUp", "web")
    assert "ClusterMaxNodesReached" in scaled.note


async def test_decision_latency_runs_from_unschedulable_to_the_vpsienode_creation() -> None:
    w = World()
    w.group("web")
    w.pending_pod("p", cpu="1", since_s=3)  # lastTransitionTime 3 s ago, whole seconds
    c = controller(w)
    await c.scale_up_once()
    # The transition lies in [t, t + 1 s): the midpoint is the estimate.
    assert w.sample(LATENCY + "_count") == 1
    assert w.sample(LATENCY + "_sum") == pytest.approx(2.5)
    await c.scale_up_once()  # same pod, now waiting for its node: measured once
    assert w.sample(LATENCY + "_count") == 1


async def test_decision_latency_uses_when_we_first_saw_the_pod_to_narrow_the_estimate() -> None:
    w = World()
    w.group("web")
    c = controller(w)
    pod = w.pending_pod("p", cpu="1")  # lastTransitionTime = now (09:00:00)
    await w.clock.advance(0.2)
    c.on_pod(pod)  # the watch delivered it 0.2 s into that second: the transition was before
    await w.clock.advance(1.0)  # the batch window
    await c.scale_up_once()
    assert w.sample(LATENCY + "_sum") == pytest.approx(1.1)


async def test_dry_run_reports_the_plan_and_creates_nothing() -> None:
    w = World()
    w.group("web")
    w.pending_pod("p", cpu="1")
    c = controller(w, dry_run=True)
    await c.scale_up_once()
    await c.scale_up_once()
    assert created(w) == []
    (scaled,) = w.recorder.reasons("ScaledUp", "web")
    assert scaled.note.startswith("dry-run: scale-up web: 0 -> 1")
    (pod_event,) = w.recorder.reasons("TriggeredScaleUp", "p")
    assert pod_event.note.startswith("dry-run: ")
    assert (
        w.sample("vpsie_autoscaler_scale_up_total", {"nodegroup": "web", "reason": "UnschedulablePods"}) == 1
    )
    assert w.kube.writes("patch", "nodegroups") == []
    decision = c.decisions.latest("web")
    assert decision is not None
    assert decision.text == scaled.note


async def test_run_plans_once_per_batch_and_resyncs_while_pods_stay_pending() -> None:
    w = World()
    w.group("web")
    c = controller(w, scan_interval=10.0)
    task = asyncio.ensure_future(c.run())
    try:
        for i in range(3):
            c.on_pod(w.pending_pod(f"p{i}", cpu="1500m"))
        await w.clock.advance(0.5)
        assert created(w) == []  # still inside the batch window
        await w.clock.advance(1.0)
        assert len(created(w)) == 3
        # The resync re-plans (pods still pending, nodes in flight): nothing new.
        await w.clock.advance(12.0)
        assert len(created(w)) == 3
        bound = dict(w.stores["pods"].objects["default/p0"])
        bound["spec"] = {**bound["spec"], "nodeName": "x"}
        c.on_pod(bound)  # a bound pod opens no batch
        assert not c.batcher.open
        # Every pod placed: the gauge falls to 0 on the next resync although no batch runs.
        for pod in w.stores["pods"].list():
            pod["spec"]["nodeName"] = "somewhere"
        passes = c.passes
        await w.clock.advance(10.0)
        assert w.sample("vpsie_autoscaler_unschedulable_pods") == 0
        assert c.passes == passes
    finally:
        task.cancel()


async def test_updates_of_an_already_pending_pod_do_not_postpone_the_decision() -> None:
    """The scheduler keeps updating a waiting pod; only pods that become unschedulable count."""
    w = World()
    w.group("web")
    c = controller(w, scan_interval=30.0)
    task = asyncio.ensure_future(c.run())
    try:
        pod = w.pending_pod("p0", cpu="1500m")
        c.on_pod(pod)
        for _ in range(4):  # a status update every 0.5 s, as a retrying scheduler sends them
            await w.clock.advance(0.5)
            c.on_pod_update(pod, pod)
        # Closed by the 1 s idle window after the pod appeared, not pushed towards the 10 s maximum.
        assert len(created(w)) == 1
    finally:
        task.cancel()


async def test_a_node_that_just_joined_holds_the_pods_about_to_land_on_it() -> None:
    w = World()
    w.group("web")
    node = w.member("web-new", "web")
    ready = node["status"]["conditions"][0]
    ready["lastTransitionTime"] = w.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    w.pending_pod("p", cpu="1500m")  # the scheduler has not bound it yet
    spread = {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule",
    }
    w.pending_pod("q", cpu="100m", topologySpreadConstraints=[spread])  # a constraint we do not model
    c = controller(w)
    plan = await c.scale_up_once()
    assert plan is not None
    assert {o.pod.name: o.status for o in plan.pods} == {"p": IN_FLIGHT, "q": IN_FLIGHT}
    assert created(w) == []
    # Long after the node joined (a scheduler binding a burst of hundreds can take that long): the
    # pod still fits its free capacity and keeps waiting for the scheduler; the pod with a constraint
    # we do not model gets the scheduler's verdict: it does not fit there.
    await w.clock.advance(31)
    plan = await c.scale_up_once()
    assert plan is not None
    assert {o.pod.name: o.status for o in plan.pods} == {"p": SCHEDULABLE, "q": TRIGGERED}
    assert len(created(w)) == 1


async def test_a_ready_record_whose_node_vanished_is_not_capacity() -> None:
    w = World()
    w.group("web")
    w.vpsienode("web-ghost", "web", phase="Ready", node_name="web-ghost")  # its Node is gone
    w.pending_pod("p", cpu="1500m")
    plan = await controller(w).scale_up_once()
    assert plan is not None
    assert plan.pods[0].status == TRIGGERED
    (increase,) = plan.increases
    assert (increase.from_size, increase.to_size) == (1, 2)  # it still counts against maxNodes
    assert len(created(w)) == 1


async def test_a_group_in_backoff_is_skipped_and_the_next_group_takes_over() -> None:
    w = World()
    first = w.group("first", scaleUp={"priority": 10})
    first["status"] = {"backoffUntil": "2026-11-27T09:05:00Z"}
    w.group("second", scaleUp={"priority": 0})
    w.pending_pod("p", cpu="1")
    c = controller(w, expander="priority")
    plan = await c.scale_up_once()
    assert plan is not None
    assert [i.group for i in plan.increases] == ["second"]
    assert plan.pods[0].reasons["first"].code == "GroupInBackoff"
    bodies = created(w)
    assert [b["metadata"]["labels"][NODEGROUP_LABEL] for b in bodies] == ["second"]  # type: ignore[index]
    # The pod Event names the group that took over, related to it (its own Event, not a series).
    (event,) = w.recorder.reasons("TriggeredScaleUp", "p")
    assert (event.note, event.related) == ("pod triggered scale-up of NodeGroup second", "second")


async def test_a_node_registered_before_its_labels_are_applied_still_counts_as_on_the_way() -> None:
    w = World()
    w.group("web")
    w.vpsienode("web-new", "web", phase="Joining", node_name="web-new")
    w.node("web-new", None, ready=False)  # registered; the group's labels are not applied yet
    w.pending_pod("p", cpu="1500m")
    plan = await controller(w).scale_up_once()
    assert plan is not None
    assert plan.pods[0].status == IN_FLIGHT
    assert created(w) == []


async def test_many_nodes_are_created_in_waves_and_an_error_stops_after_its_wave() -> None:
    w = World()
    w.group("web", max_nodes=30)
    for i in range(20):
        w.pending_pod(f"p{i}", cpu="1500m")
    await controller(w).scale_up_once()
    assert len(w.stores["vpsienodes"].list()) == 20

    w2 = World()
    w2.group("web", max_nodes=30)
    for i in range(20):
        w2.pending_pod(f"p{i}", cpu="1500m")
    w2.kube.fail_create.append(errors.Forbidden("quota"))
    await controller(w2).scale_up_once()
    assert len(w2.stores["vpsienodes"].list()) == 7  # the first wave of 8, one refused; no more waves
    (scaled,) = w2.recorder.reasons("ScaledUp", "web")
    assert "only 7 created: quota" in scaled.note
    assert w2.recorder.reasons("ScaleUpFailed", "web")


async def test_a_joining_node_with_the_not_ready_taint_is_still_capacity_on_the_way() -> None:
    w = World()
    w.group("web")
    w.vpsienode("web-new", "web", phase="Joining", node_name="web-new")
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    w.node("web-new", "web", ready=False, vpsienode="web-new", taints=[not_ready])
    w.pending_pod("p", cpu="1500m")
    plan = await controller(w).scale_up_once()
    assert plan is not None
    assert plan.pods[0].status == IN_FLIGHT
    assert created(w) == []


async def test_a_binding_while_pods_wait_re_plans_without_waiting_for_the_resync() -> None:
    """The scheduler spread a burst over the new nodes differently from the plan: once the binding
    wave ends, a pod that fits nowhere gets its node 1 s later, not at the next periodic resync."""
    w = World()
    w.group("web")
    c = controller(w, scan_interval=30.0)
    task = asyncio.ensure_future(c.run())
    try:
        w.member("web-full", "web")
        w.bound_pod("taker", "web-full", cpu="3500m")  # the node's room, taken by another pod
        waiting = w.pending_pod("p0", cpu="1500m")
        c.on_pod(waiting)
        await w.clock.advance(1.0)
        first = len(created(w))
        assert first == 1  # the node the plan ordered for p0
        # p0's node is not Ready yet; meanwhile a pod binds elsewhere: the room changed, re-plan.
        bound = dict(w.stores["pods"].objects["default/taker"])
        unbound = {**bound, "spec": {k: v for k, v in bound["spec"].items() if k != "nodeName"}}
        passes = c.passes
        c.on_pod_update(unbound, bound)
        await w.clock.advance(1.0)
        assert c.passes == passes + 1  # decided again after 1 s, long before the 30 s resync
    finally:
        task.cancel()


async def test_bindings_with_no_pod_waiting_re_plan_nothing() -> None:
    w = World()
    w.group("web")
    c = controller(w, scan_interval=30.0)
    w.member("web-a", "web")
    bound = w.bound_pod("a", "web-a", cpu="100m")
    unbound = {**bound, "spec": {k: v for k, v in bound["spec"].items() if k != "nodeName"}}
    c.on_pod_update(unbound, bound)
    assert not c.batcher.open
