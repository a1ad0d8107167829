"""The NodeGroup controller is the single writer of NodeGroup status: scale-up and scale-down hand it
their decisions, and it derives ``lastScaleUpTime`` and ``desiredNodes`` from the VPSieNodes."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from tests.unit.controllers.test_invalid_objects import Lifecycle, nodegroup, vpsienode
from vpsie_autoscaler.controllers.decisions import DecisionLog
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupReconciler
from vpsie_autoscaler.runtime.controller import Request


def reconciler(env: Lifecycle, decisions: DecisionLog) -> NodeGroupReconciler:
    return env.nodegroups(dataclasses.replace(env.deps(), decisions=decisions))


def status(env: Lifecycle, name: str) -> dict[str, object]:
    obj = env.get("nodegroups", name)
    assert obj is not None
    return dict(obj.get("status") or {})


async def test_a_recorded_scale_up_decision_reaches_status_through_the_nodegroup_controller() -> None:
    env, decisions = Lifecycle(), DecisionLog()
    env.put(nodegroup("web", finalizer=True))
    env.put(vpsienode("web-a", "web"))
    asked: list[str] = []
    decisions.on_record(asked.append)
    ng = reconciler(env, decisions)
    await ng.reconcile(Request("web"))
    assert status(env, "web").get("lastDecision") is None
    at = env.world.clock.now() + timedelta(seconds=1)
    decisions.record("web", "scale-up web: 1 -> 3 (+2) for 4 pending pod(s)", by="scaleup", at=at)
    assert asked == ["web"]  # the NodeGroup controller is asked to reconcile at once
    await ng.reconcile(Request("web"))
    assert status(env, "web")["lastDecision"] == "scale-up web: 1 -> 3 (+2) for 4 pending pod(s)"
    # Folded once: a later decision of its own is not overwritten by the older recorded one.
    await ng.reconcile(Request("web"))
    assert status(env, "web")["lastDecision"] == "scale-up web: 1 -> 3 (+2) for 4 pending pod(s)"


async def test_last_scale_up_time_is_the_newest_creation_of_a_non_adopted_vpsienode() -> None:
    env, decisions = Lifecycle(), DecisionLog()
    env.put(nodegroup("web", finalizer=True))
    old, new, adopted = vpsienode("web-a", "web"), vpsienode("web-b", "web"), vpsienode("web-c", "web")
    old["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    new["metadata"]["creationTimestamp"] = "2026-01-02T00:00:00Z"
    adopted["metadata"]["creationTimestamp"] = "2026-01-03T00:00:00Z"
    adopted["spec"]["adopt"] = {"identifier": "id-c", "hostname": "web-c"}
    for obj in (old, new, adopted):
        env.put(obj)
    await reconciler(env, decisions).reconcile(Request("web"))
    st = status(env, "web")
    assert st["lastScaleUpTime"] == "2026-01-02T00:00:00Z"
    assert st["desiredNodes"] == 3
    # Never goes back: with the newest record gone, the time stays.
    env.informers["vpsienodes"].store.delete(new)
    await reconciler(env, decisions).reconcile(Request("web"))
    assert status(env, "web")["lastScaleUpTime"] == "2026-01-02T00:00:00Z"


async def test_a_creation_the_cache_never_shows_is_given_up_after_a_minute_of_the_injected_clock() -> None:
    env, decisions = Lifecycle(), DecisionLog()
    env.put(nodegroup("web", min_nodes=1, finalizer=True))
    ng = reconciler(env, decisions)
    await ng.reconcile(Request("web"))
    (first,) = env.api.writes("vpsienodes", "create")
    # The watch never delivers it: the group waits instead of creating again...
    unseen = env.get("vpsienodes", first[2])
    assert unseen is not None
    env.informers["vpsienodes"].store.delete(unseen)
    await ng.reconcile(Request("web"))
    assert len(env.api.writes("vpsienodes", "create")) == 1
    # ...for a minute of the controller's clock, then counts from the cache again.
    await env.world.clock.advance(61.0)
    await ng.reconcile(Request("web"))
    assert len(env.api.writes("vpsienodes", "create")) == 2
