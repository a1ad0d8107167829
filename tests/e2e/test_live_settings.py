"""AutoscalerSettings applied live, end to end: the expander chain and dry-run are changed on the running
autoscaler through the ``default`` object, and the next scale-up decision follows each change (no
restart); removing a field returns to the flag.

Two NodeGroups can hold the test pods: ``dear`` (High Memory plans, $90, priority 10) and ``cheap``
(Standard plans, $20, priority 0). The flag chain ``priority,least-waste`` picks ``dear``; the chain
``least-cost`` set in the object picks ``cheap``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import API_GROUP, E2E, HIGHMEM, STANDARD, JsonObj, bare_pod, nodegroup

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SETTINGS = f"{API_GROUP}/autoscalersettings"
APPLIED_S = 30.0
SCALE_UP_S = 60.0
DRY_RUN_S = 30.0


@pytest.fixture
def settings_object(e2e: E2E) -> Iterator[str]:
    """The cluster-scoped singleton, removed after the test (the cluster outlives it)."""
    e2e.client.delete(f"{SETTINGS}/default")
    yield f"{SETTINGS}/default"
    e2e.client.delete(f"{SETTINGS}/default")


def applied(e2e: E2E, path: str, generation_at_least: int, contains: str) -> JsonObj:
    def ok(obj: JsonObj) -> bool:
        cond: JsonObj = next(
            (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Applied"), {}
        )
        return (
            cond.get("status") == "True"
            and (cond.get("observedGeneration") or 0) >= generation_at_least
            and contains in cond.get("message", "")
        )

    found: JsonObj = e2e.wait(
        lambda: e2e.client.get_or_none(path) or {}, ok, timeout=APPLIED_S, what=f"Applied: {contains}"
    )
    return found


def group_of_new_records(e2e: E2E, seen: set[str]) -> list[str]:
    return [v["spec"]["nodeGroup"] for v in e2e.vpsienodes() if v["metadata"]["name"] not in seen]


def test_expander_and_dry_run_changed_live_drive_the_next_decision(e2e: E2E, settings_object: str) -> None:
    scaler = e2e.autoscaler()
    e2e.apply_nodegroup(nodegroup("dear", HIGHMEM, max_nodes=3, priority=10))
    e2e.apply_nodegroup(nodegroup("cheap", STANDARD, max_nodes=3, priority=0))

    # The expander chain, changed on the running process: least-cost picks the cheap group.
    obj: dict[str, Any] = {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "AutoscalerSettings",
        "metadata": {"name": "default"},
        "spec": {"expander": ["least-cost"]},
    }
    e2e.client.create(SETTINGS, obj)
    applied(e2e, settings_object, 1, "expander least-cost (settings)")
    e2e.apply_pod(bare_pod("first", "live", cpu="1"))
    records = e2e.wait(e2e.vpsienodes, lambda vs: len(vs) == 1, timeout=SCALE_UP_S, what="first record")
    assert records[0]["spec"]["nodeGroup"] == "cheap"
    seen = {v["metadata"]["name"] for v in records}

    # Dry-run switched on live: the next decision is reported, nothing is created.
    e2e.client.merge_patch(settings_object, {"spec": {"dryRun": True}})
    applied(e2e, settings_object, 2, "dry-run on (settings)")
    assert scaler.metric("vpsie_autoscaler_dry_run") == 1
    e2e.apply_pod(bare_pod("second", "live", cpu="3"))  # fits only the High Memory plans (4 cpu)
    [event, *_] = e2e.wait_event(reason="TriggeredScaleUp", regarding="second", kind="Pod", timeout=DRY_RUN_S)
    assert "dear" in event["note"]
    assert group_of_new_records(e2e, seen) == [], "dry-run (set live) created a VPSieNode"
    assert len(e2e.sim.add_node_requests()) == 1, "dry-run (set live) called VPSie"

    # Dry-run removed from the object: back to the flag (off), and the pending pod gets its node.
    e2e.client.merge_patch(settings_object, {"spec": {"dryRun": None}})
    applied(e2e, settings_object, 3, "dry-run off (flag)")
    assert scaler.metric("vpsie_autoscaler_dry_run") == 0
    new = e2e.wait(
        lambda: group_of_new_records(e2e, seen), bool, timeout=SCALE_UP_S, what="record after dry-run"
    )
    assert new == ["dear"]
    # Leave no pod of this test pending: until the namespace is gone it would count in the next
    # scenario (its test_1 saw four pending pods for a three-replica deployment).
    for name in ("first", "second"):
        e2e.delete_pod(name)  # waits until the pod is gone
