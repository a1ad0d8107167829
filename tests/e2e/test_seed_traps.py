"""Traps of VPSie's earlier Go autoscaler that show at process level, proven absent.

- instances left billing when their group goes (it leaked undiscovered creations and let the
  NodeGroup finalizer go while VPSieNodes were still terminating);
- the NodeGroup's labels and taints never applied to its nodes (a TODO in its joiner);
- scale-up running on every replica (its event-driven scale-up was not leader-gated);
- the scale-down timer kept in memory, so every restart started it again;
- desired below current never converging (lowering ``maxNodes`` under the current size).
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.e2e.harness import ADVANCED, E2E, NODEGROUPS, NODES, deployment, nodegroup, one_to_one
from vpsie_autoscaler.api.labels import UNNEEDED_SINCE_ANNOTATION

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCALE_UP_S = 90.0
SCALE_DOWN_S = 90.0
GONE_S = 60.0
FILL_ADVANCED = "3"
POOL_LABEL = "e2e.vpsie.com/pool"
DEDICATED_TAINT = {"key": "e2e.vpsie.com/dedicated", "value": "batch", "effect": "NoSchedule"}


def test_deleting_a_nodegroup_deletes_its_instances_in_vpsie(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("t-billing", ADVANCED, min_nodes=2, max_nodes=3))
    e2e.autoscaler()
    e2e.wait(
        lambda: e2e.live_vpsienodes("t-billing"),
        lambda vns: len(vns) == 2,
        timeout=SCALE_UP_S,
        what="minNodes=2 VPSieNodes",
    )
    e2e.wait(lambda: e2e.group_nodes("t-billing"), lambda n: len(n) == 2, timeout=SCALE_UP_S, what="2 Nodes")

    e2e.client.delete(f"{NODEGROUPS}/t-billing")
    e2e.client.wait_gone(f"{NODEGROUPS}/t-billing", timeout=GONE_S)
    # The NodeGroup went only after everything it owned: nothing left to bill, nothing left behind.
    assert e2e.sim.workers(include_deleting=True) == [] or all(
        w["phase"] == "deleting" for w in e2e.sim.workers(include_deleting=True)
    )
    e2e.wait(
        lambda: e2e.sim.workers(include_deleting=True), lambda w: not w, timeout=GONE_S, what="no instances"
    )
    assert e2e.vpsienodes("t-billing") == []
    e2e.wait(e2e.sim_nodes, lambda n: not n, timeout=GONE_S, what="no Nodes")


def test_nodegroup_labels_and_taints_are_applied_to_its_nodes(e2e: E2E) -> None:
    # The simulated VPSie group registers its nodes with no labels or taints of its own: whatever the
    # Node carries beyond the well-known labels was put there by the autoscaler.
    e2e.apply_nodegroup(
        nodegroup("t-template", ADVANCED, max_nodes=2, labels={POOL_LABEL: "batch"}, taints=[DEDICATED_TAINT])
    )
    e2e.autoscaler()
    toleration = {
        "key": DEDICATED_TAINT["key"],
        "operator": "Equal",
        "value": "batch",
        "effect": "NoSchedule",
    }
    e2e.apply_deployment(
        deployment("batch", 1, cpu="1", node_selector={POOL_LABEL: "batch"}, tolerations=[toleration])
    )

    [pod] = e2e.wait_pods_running("batch", 1, timeout=SCALE_UP_S)
    node = e2e.client.get(f"{NODES}/{e2e.node_of(pod)}")
    assert node["metadata"]["labels"].get(POOL_LABEL) == "batch"
    taints = [{k: t.get(k) for k in ("key", "value", "effect")} for t in node["spec"].get("taints") or []]
    assert DEDICATED_TAINT in taints
    one_to_one(e2e, "t-template")


def test_only_the_leader_scales_up_with_two_replicas(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("t-leader", ADVANCED, max_nodes=6))
    leader = e2e.autoscaler("replica-a")
    standby = e2e.autoscaler("replica-b", wait_leader=False)
    assert not standby.is_leader()
    e2e.apply_deployment(deployment("web", 2, cpu=FILL_ADVANCED, memory="1Gi"))

    e2e.wait_pods_running("web", 2, timeout=SCALE_UP_S)
    assert len(e2e.sim.add_node_requests(ADVANCED)) == 2, "one add-node per node: the standby asked too"
    assert len(e2e.live_vpsienodes("t-leader")) == 2
    assert leader.metric_sum("vpsie_autoscaler_scale_up_total") >= 1
    assert standby.metric_sum("vpsie_autoscaler_scale_up_total") == 0
    assert not standby.is_leader()
    one_to_one(e2e, "t-leader")


def test_unneeded_timer_survives_a_restart(e2e: E2E) -> None:
    unneeded = 20.0
    e2e.apply_nodegroup(
        nodegroup("t-timer", ADVANCED, max_nodes=3, unneeded_time=f"{unneeded:g}s", delay_after_scale_up="1s")
    )
    scaler = e2e.autoscaler()
    e2e.apply_deployment(deployment("web", 1, cpu=FILL_ADVANCED, memory="1Gi"))
    [pod] = e2e.wait_pods_running("web", 1, timeout=SCALE_UP_S)
    node = e2e.node_of(pod)
    e2e.scale_deployment("web", 0)

    def since() -> str | None:
        annotations = e2e.client.get(f"{NODES}/{node}")["metadata"].get("annotations") or {}
        value: str | None = annotations.get(UNNEEDED_SINCE_ANNOTATION)
        return value

    first = e2e.wait(since, bool, timeout=SCALE_DOWN_S, what=f"{UNNEEDED_SINCE_ANNOTATION} on {node}")
    marked = time.monotonic()
    # Half-way through the timer, the leader dies and a new process takes over.
    e2e.wait(
        lambda: time.monotonic() - marked,
        lambda t: t >= unneeded / 2,
        timeout=unneeded,
        what="half the timer",
    )
    scaler.kill9()
    scaler.start()
    scaler.wait_ready()
    assert since() == first, "the restarted autoscaler started the timer again"
    e2e.wait(
        lambda: e2e.live_vpsienodes("t-timer"), lambda vns: not vns, timeout=SCALE_DOWN_S, what="node removed"
    )
    removed_after = time.monotonic() - marked
    print(f"removed {removed_after:.1f}s after being marked unneeded at {first} (unneededTime {unneeded:g}s)")
    # Had the timer restarted, removal would come a full unneededTime after the restart (>= 30 s here).
    assert removed_after < unneeded * 1.5, "the timer restarted with the process"
    assert first is not None
    assert datetime.fromisoformat(first.replace("Z", "+00:00"))


def test_lowering_max_nodes_below_current_converges(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("t-max", ADVANCED, min_nodes=3, max_nodes=3))
    e2e.autoscaler()
    e2e.wait(lambda: e2e.group_nodes("t-max"), lambda n: len(n) == 3, timeout=SCALE_UP_S, what="3 Nodes")

    e2e.client.merge_patch(f"{NODEGROUPS}/t-max", {"spec": {"minNodes": 1, "maxNodes": 1}})
    e2e.wait(
        lambda: e2e.live_vpsienodes("t-max"),
        lambda vns: len(vns) == 1,
        timeout=SCALE_DOWN_S,
        what="maxNodes=1 enforced",
    )
    e2e.wait(
        lambda: e2e.sim.workers(ADVANCED, include_deleting=True),
        lambda w: len(w) == 1,
        timeout=GONE_S,
        what="1 instance left",
    )
    e2e.wait(
        lambda: e2e.get_nodegroup("t-max").get("status", {}),
        lambda s: s.get("currentNodes") == 1,
        timeout=30,
        what="status.currentNodes=1",
    )
