"""Metrics the Go autoscaler had: drain duration and pods evicted per drain (observed from the
VPSieNode phases and the pods leaving the node), and the hourly cost of a group priced by its plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.unit.controllers.test_invalid_objects import Lifecycle, nodegroup, vpsienode
from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.controllers.drainmetrics import DrainObserver
from vpsie_autoscaler.controllers.metrics import autoscaler_metrics
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.runtime.store import DeletedFinalStateUnknown


def record(
    phase: str = "Ready", *, requested: datetime | None = None, deleting: bool = False
) -> dict[str, Any]:
    """A VPSieNode; ``requested``: the time of its drain request (annotation)."""
    meta: dict[str, Any] = {"name": "web-a", "annotations": {}}
    if requested is not None:
        meta["annotations"][DRAIN_REQUESTED_ANNOTATION] = requested.isoformat()
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    return {"metadata": meta, "spec": {"nodeGroup": "web"}, "status": {"phase": phase, "nodeName": "web-a"}}


def pod(name: str, owner: str = "ReplicaSet", node: str = "web-a", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "ownerReferences": [{"kind": owner, "controller": True}], **meta},
        "spec": {"nodeName": node},
    }


REQUESTED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def observer() -> tuple[DrainObserver, CollectorRegistry, FakeClock]:
    registry, clock = CollectorRegistry(), FakeClock()
    return DrainObserver(autoscaler_metrics(registry), clock), registry, clock


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("end", "result"),
    [
        (lambda d: d.on_vpsienode_delete(record("Draining")), "success"),
        (lambda d: d.on_vpsienode_delete(DeletedFinalStateUnknown("web-a", record("Draining"))), "success"),
        (lambda d: d.on_vpsienode(record("Deleting", requested=REQUESTED)), "success"),
        (lambda d: d.on_vpsienode(record("Draining", requested=REQUESTED, deleting=True)), "success"),
        (lambda d: d.on_vpsienode(record("Ready")), "aborted"),  # the request withdrawn: DrainFailed
    ],
)
async def test_a_drain_is_timed_from_its_request_to_its_end(
    observer: tuple[DrainObserver, CollectorRegistry, FakeClock], end: Any, result: str
) -> None:
    drains, registry, clock = observer
    requested = clock.now() - timedelta(seconds=40)
    drains.on_vpsienode(record("Ready", requested=requested))
    drains.on_vpsienode_update(record(), record("Draining", requested=requested))  # the same drain
    await clock.advance(20)
    drains.on_pod_delete(pod("app-1"))
    drains.on_pod_delete(pod("app-2"))
    drains.on_pod_delete(DeletedFinalStateUnknown("x", pod("app-3")))
    drains.on_pod_delete(pod("agent", owner="DaemonSet"))  # never evicted
    drains.on_pod_delete(pod("static", annotations={"kubernetes.io/config.mirror": "x"}))
    drains.on_pod_delete(pod("elsewhere", node="web-b"))
    end(drains)
    assert drains.draining == 0
    labels = {"nodegroup": "web", "result": result}
    assert sample(registry, "vpsie_autoscaler_drain_duration_seconds_count", **labels) == 1
    assert sample(registry, "vpsie_autoscaler_drain_duration_seconds_sum", **labels) == pytest.approx(60)
    evicted = sample(registry, "vpsie_autoscaler_drain_evicted_pods_sum", nodegroup="web")
    assert evicted == (3 if result == "success" else 0)


def test_records_that_never_drain_are_not_observed(
    observer: tuple[DrainObserver, CollectorRegistry, FakeClock],
) -> None:
    drains, registry, _ = observer
    drains.on_vpsienode(record("Ready"))
    drains.on_vpsienode(record("Draining"))  # a drain nobody requested (its record is being deleted)
    drains.on_vpsienode_delete(record("Ready"))
    drains.on_vpsienode(record("Ready", requested=REQUESTED, deleting=True))  # deleted before it was seen
    assert drains.draining == 0
    assert (
        sample(registry, "vpsie_autoscaler_drain_duration_seconds_count", nodegroup="web", result="success")
        == 0
    )


@pytest.mark.parametrize(
    ("template_price", "plan_price", "cost"),
    [
        (None, 0.05, 0.10),  # priced by the plan: 2 nodes
        (0.5, 0.05, 1.0),  # the template's price wins
        (None, None, 0.0),  # plan not read yet
    ],
)
async def test_hourly_cost_comes_from_the_plan_when_the_template_has_no_price(
    template_price: float | None, plan_price: float | None, cost: float
) -> None:
    env = Lifecycle()
    group = nodegroup("web", finalizer=True)
    if template_price is not None:
        group["spec"]["template"]["hourlyPrice"] = template_price
    env.put(group)
    env.put(vpsienode("web-a", "web"))
    env.put(vpsienode("web-b", "web"))
    ng = env.nodegroups(env.deps())
    asked: list[str] = []

    def price(g: NodeGroup) -> float | None:
        asked.append(g.metadata.name)
        return plan_price

    ng.plan_price = price
    await ng.reconcile(Request("web"))
    assert env.world.sample("vpsie_autoscaler_nodegroup_hourly_cost", {"nodegroup": "web"}) == pytest.approx(
        cost
    )
    assert asked == ([] if template_price is not None else ["web"])
