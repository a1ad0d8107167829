"""Scale-down controller: plan → timers, drain requests, taint clean-up, Events, metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.controllers.fakes import TAINT, World
from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    TO_BE_DELETED_TAINT,
    UNNEEDED_SINCE_ANNOTATION,
)
from vpsie_autoscaler.controllers.scaledown import ScaleDownController, ScaleDownOptions
from vpsie_autoscaler.scaling import ScaleDownSettings

FAST = {"unneededTime": "1m", "delayAfterScaleUp": "0s"}
UNREMOVABLE = "vpsie_autoscaler_unremovable_nodes"


def controller(w: World, *, dry_run: bool = False, **options: Any) -> ScaleDownController:
    return ScaleDownController(
        w.deps(dry_run=dry_run), builder=w.builder(), options=ScaleDownOptions(**options)
    )


def annotations_of(w: World, plural: str, name: str) -> dict[str, str]:
    obj = w.stores[plural].get(name)
    assert obj is not None
    return dict(obj["metadata"].get("annotations") or {})


def drained(w: World) -> list[str]:
    return sorted(
        v["metadata"]["name"]
        for v in w.stores["vpsienodes"].list()
        if DRAIN_REQUESTED_ANNOTATION in (v["metadata"].get("annotations") or {})
    )


async def test_an_empty_node_is_drained_after_unneeded_time_and_the_timer_survives_a_restart() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web")
    w.member("web-b", "web")
    w.bound_pod("busy", "web-b", cpu="1500m")

    await controller(w).scale_down_once()
    since = annotations_of(w, "nodes", "web-a")[UNNEEDED_SINCE_ANNOTATION]
    assert since == "2026-11-27T09:00:00Z"
    assert drained(w) == []

    await w.clock.advance(61)
    restarted = controller(w)  # a new leader: no memory, only the annotation
    await restarted.scale_down_once()
    assert drained(w) == ["web-a"]
    ann = annotations_of(w, "vpsienodes", "web-a")
    assert ann[DRAIN_REASON_ANNOTATION] == "Empty"
    assert ann[DRAIN_REQUESTED_ANNOTATION] == "2026-11-27T09:01:01Z"
    # Counted once, by the requester (the lifecycle controller does not count it again).
    assert w.sample("vpsie_autoscaler_scale_down_total", {"nodegroup": "web", "reason": "Empty"}) == 1
    (node_event,) = w.recorder.reasons("ScaleDown", "web-a")
    assert "removing empty node web-a" in node_event.note
    (group_event,) = w.recorder.reasons("ScaledDown", "web")
    assert group_event.related == "web-a"  # one Event per removed node
    # Nothing touches the Node or deletes anything: the lifecycle controller executes.
    assert not [c for c in w.kube.calls if c.verb not in ("patch",)]


async def test_a_node_no_longer_unneeded_loses_its_timer() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:59:00Z"})
    w.bound_pod("busy", "web-a", cpu="1500m")
    await controller(w).scale_down_once()
    assert UNNEEDED_SINCE_ANNOTATION not in annotations_of(w, "nodes", "web-a")
    assert drained(w) == []


async def test_a_whole_group_is_never_drained_in_one_pass() -> None:
    w = World()
    w.group("web", scaleDown={**FAST, "disruptionBudget": 2, "maxConcurrentDrains": 10})
    w.node("big", None, cpu="32", memory="64Gi")  # unmanaged, busiest: every small pod moves here
    w.bound_pod("hog", "big", cpu="8")
    for i in range(6):
        w.member(f"web-{i}", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"})
        w.bound_pod(f"app-{i}", f"web-{i}")
    c = controller(w)
    await c.scale_down_once()
    assert len(drained(w)) == 2
    # Next pass: the two being drained use the budget (no double counting, no new removals).
    await c.scale_down_once()
    assert len(drained(w)) == 2
    assert w.sample(UNREMOVABLE, {"reason": "DisruptionBudgetExhausted"}) == 4


async def test_fifty_empty_nodes_with_default_settings_are_all_requested_in_one_pass() -> None:
    w = World()
    w.group("web", max_nodes=50)  # scale-down defaults: unneededTime 10m, budget 10%, 1 drain
    names = [f"web-{i:02}" for i in range(50)]
    for name in names:
        w.member(name, "web")
    c = controller(w)
    await c.scale_down_once()
    assert drained(w) == []  # the timers start
    await w.clock.advance(599)
    await c.scale_down_once()
    assert drained(w) == []
    await w.clock.advance(1)
    await c.scale_down_once()
    assert drained(w) == names
    assert w.sample("vpsie_autoscaler_scale_down_total", {"nodegroup": "web", "reason": "Empty"}) == 50
    assert len(w.recorder.reasons("ScaleDown")) == 50  # one per Node, on the Node
    (bulk,) = w.recorder.reasons("ScaledDown", "web")  # one for the bulk, on the NodeGroup
    assert bulk.note.startswith("removing 50 empty nodes of NodeGroup web at once: web-00, web-01,")
    assert "and 40 more" in bulk.note
    assert w.kube.writes("patch", "nodegroups") == []  # the NodeGroup controller writes status
    decision = c.decisions.latest("web")
    assert decision is not None
    assert decision.text == bulk.note
    # The next pass: all 50 are leaving; nothing more, and no Event that they "stay".
    await c.scale_down_once()
    assert len(w.recorder.reasons("ScaledDown")) == 1
    assert w.recorder.reasons("ScaleDownBlocked") == []


async def test_empty_nodes_beyond_the_bulk_cap_go_in_the_next_pass_quietly() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    for i in range(5):
        w.member(f"web-{i}", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"})
    c = controller(w, settings=ScaleDownSettings(max_empty_bulk_delete=3))
    await c.scale_down_once()
    assert len(drained(w)) == 3
    assert w.sample(UNREMOVABLE, {"reason": "MaxEmptyBulkDelete"}) == 2
    assert w.recorder.reasons("ScaleDownBlocked") == []  # transient: the next pass takes them
    await c.scale_down_once()
    assert len(drained(w)) == 5
    notes = [e.note for e in w.recorder.reasons("ScaledDown", "web")]
    assert notes[0].startswith("removing 3 empty nodes of NodeGroup web at once")
    assert notes[1].startswith("removing 2 empty nodes of NodeGroup web at once")


async def test_a_zero_budget_freezes_the_group_even_for_empty_nodes() -> None:
    w = World()
    w.group("web", scaleDown={**FAST, "disruptionBudget": 0})
    w.member("web-a", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"})
    await controller(w).scale_down_once()
    assert drained(w) == []
    (event,) = w.recorder.reasons("ScaleDownBlocked", "web-a")
    assert "allows no removal, not even of empty nodes" in event.note


async def test_never_below_min_nodes() -> None:
    w = World()
    w.group("web", min_nodes=2, scaleDown=FAST)
    for i in range(3):
        w.member(f"web-{i}", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"})
    c = controller(w)
    await c.scale_down_once()
    await c.scale_down_once()
    assert len(drained(w)) == 1
    assert w.sample(UNREMOVABLE, {"reason": "AtMinSize"}) == 2
    assert w.recorder.reasons("ScaleDownBlocked")


async def test_a_pdb_keeps_the_node_and_the_event_says_why_once() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web")
    w.member("web-b", "web")
    w.bound_pod("guarded", "web-a", cpu="100m", labels={"app": "guarded"})
    w.add(
        "poddisruptionbudgets",
        {
            "metadata": {"name": "guard", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0},
        },
    )
    c = controller(w)
    await c.scale_down_once()
    await w.clock.advance(61)
    await c.scale_down_once()
    await c.scale_down_once()
    assert "web-a" not in drained(w)
    events = w.recorder.reasons("ScaleDownBlocked", "web-a")
    assert len(events) == 1
    assert "PodDisruptionBudget guard allows no disruption" in events[0].note
    assert w.sample(UNREMOVABLE, {"reason": "PodBlocksEviction"}) == 1


async def test_a_node_without_vpsienode_is_reported_loudly_not_removed() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.node("stray", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"})
    await controller(w).scale_down_once()
    assert w.sample(UNREMOVABLE, {"reason": "NoVPSieNode"}) == 1
    (event,) = w.recorder.reasons("NoVPSieNode", "stray")
    assert event.type == "Warning"


async def test_the_vpsienode_is_found_by_status_node_name_or_hostname() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    old = {UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"}
    w.vpsienode("web-x1", "web", node_name="node-by-status")
    w.node("node-by-status", "web", annotations=old)
    w.vpsienode("web-x2", "web")  # no status.nodeName: hostname is the Node name
    w.node("web-x2", "web", annotations=old)
    c = controller(w)
    await c.scale_down_once()
    assert drained(w) == ["web-x1", "web-x2"]  # both empty: in bulk


async def test_stale_taints_are_removed_but_not_from_nodes_being_drained() -> None:
    w = World()
    w.group("web", scaleDown={"enabled": False})
    w.member("ready", "web", taints=[TAINT])
    w.vpsienode("draining", "web", phase="Draining", node_name="draining")
    w.node("draining", "web", taints=[TAINT])
    w.vpsienode("requested", "web", node_name="requested", annotations={DRAIN_REQUESTED_ANNOTATION: "x"})
    w.node("requested", "web", taints=[TAINT])
    w.node("orphan", None, taints=[TAINT, {"key": "other", "effect": "NoSchedule"}])
    await controller(w).scale_down_once()

    def taint_keys(name: str) -> list[str]:
        obj = w.stores["nodes"].get(name)
        assert obj is not None
        return [t["key"] for t in obj["spec"]["taints"]]

    assert taint_keys("ready") == []
    assert taint_keys("draining") == [TO_BE_DELETED_TAINT]
    assert taint_keys("requested") == [TO_BE_DELETED_TAINT]
    assert taint_keys("orphan") == ["other"]
    assert {e.name for e in w.recorder.reasons("StaleTaintRemoved")} == {"ready", "orphan"}


async def test_a_group_above_max_is_left_to_its_single_owner_the_nodegroup_controller() -> None:
    w = World()
    w.group("web", min_nodes=1, max_nodes=1, scaleDown=FAST)
    w.member("web-a", "web", cpu="2")
    w.bound_pod("busy-a", "web-a", cpu="1800m")
    w.member("web-b", "web", cpu="2")
    w.bound_pod("busy-b", "web-b", cpu="1800m")
    w.vpsienode("web-new1", "web", phase="Provisioning", created="2026-11-27T08:58:00Z")
    plan = await controller(w).scale_down_once()
    # Busy nodes stay busy: scale-down plans no "above maxNodes" removal of its own (the NodeGroup
    # controller requests those drains; a second requester would remove the surplus twice).
    assert plan.removals == ()
    assert {plan.blocked["web-a"].code, plan.blocked["web-b"].code} == {"NotUnderutilized"}
    assert drained(w) == []
    assert w.kube.writes("patch", "vpsienodes") == []


async def test_dry_run_changes_nothing_and_reports_everything_once() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web", annotations={UNNEEDED_SINCE_ANNOTATION: "2026-11-27T08:00:00Z"})
    w.member("web-b", "web")
    w.member("web-c", "web", taints=[TAINT])
    c = controller(w, dry_run=True)
    await c.scale_down_once()
    await c.scale_down_once()
    assert w.kube.calls == []
    assert drained(w) == []
    assert w.recorder.reasons("StaleTaintRemoved")[0].note.startswith("dry-run: ")
    (removal,) = w.recorder.reasons("ScaleDown")
    assert removal.note.startswith("dry-run: removing empty node")
    assert w.sample("vpsie_autoscaler_scale_down_total", {"nodegroup": "web", "reason": "Empty"}) == 1
    decision = c.decisions.latest("web")
    assert decision is not None
    assert decision.text.startswith("dry-run: ")


async def test_run_loops_every_scan_interval() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web")
    w.member("web-b", "web")
    c = controller(w, scan_interval=30.0)
    task = asyncio.ensure_future(c.run())
    try:
        await w.clock.advance(0)
        assert UNNEEDED_SINCE_ANNOTATION in annotations_of(w, "nodes", "web-a")
        assert drained(w) == []
        await w.clock.advance(30)
        await w.clock.advance(30)
        assert drained(w) == ["web-a", "web-b"]
    finally:
        task.cancel()


async def test_a_crashing_pass_does_not_stop_the_loop() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web")
    c = controller(w, scan_interval=5.0)
    real_build = c.builder.build
    failures = [RuntimeError("bug")]

    def flaky_build(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_build(*args, **kwargs)

    c.builder.build = flaky_build  # type: ignore[method-assign]
    task = asyncio.ensure_future(c.run())
    try:
        await w.clock.advance(0)
        assert c.passes == 0
        await w.clock.advance(5)
        assert c.passes == 1
        assert UNNEEDED_SINCE_ANNOTATION in annotations_of(w, "nodes", "web-a")
    finally:
        task.cancel()


async def test_nodes_excluded_on_purpose_or_busy_get_no_event_but_count_in_the_gauge() -> None:
    w = World()
    w.group("off", scaleDown={"enabled": False})
    w.member("off-a", "off")
    w.group("web", scaleDown=FAST)
    w.member("web-busy", "web")
    w.bound_pod("busy", "web-busy", cpu="1500m")
    await controller(w).scale_down_once()
    assert w.recorder.reasons("ScaleDownBlocked") == []
    assert w.sample(UNREMOVABLE, {"reason": "ScaleDownDisabled"}) == 1
    assert w.sample(UNREMOVABLE, {"reason": "NotUnderutilized"}) == 1


async def test_protected_nodes_stay_each_with_its_reason_in_the_gauge_and_an_event() -> None:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-protected", "web", annotations={"autoscaler.vpsie.com/protected": "true"})
    w.member("web-policy", "web", annotations={"autoscaler.vpsie.com/scale-down": "disabled"})
    w.member("web-hours", "web", annotations={"autoscaler.vpsie.com/scale-down-allowed-hours": "9 to 5"})
    w.member("web-free", "web")
    c = controller(w)
    await c.scale_down_once()
    await w.clock.advance(61)
    await c.scale_down_once()
    assert drained(w) == ["web-free"]
    assert w.sample(UNREMOVABLE, {"reason": "NodeProtected"}) == 1
    assert w.sample(UNREMOVABLE, {"reason": "ScaleDownDisabledAnnotation"}) == 1
    assert w.sample(UNREMOVABLE, {"reason": "InvalidAllowedHours"}) == 1
    protected = w.recorder.reasons("ScaleDownBlocked", "web-protected")
    assert len(protected) == 1
    assert protected[0].type == "Normal"
    assert "autoscaler.vpsie.com/protected=true" in protected[0].note
    bad = w.recorder.reasons("ScaleDownBlocked", "web-hours")
    assert len(bad) == 1
    assert bad[0].type == "Warning"
    assert "'9 to 5' cannot be read" in bad[0].note
    assert (
        "autoscaler.vpsie.com/scale-down=disabled"
        in w.recorder.reasons("ScaleDownBlocked", "web-policy")[0].note
    )
