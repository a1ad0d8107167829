"""Issue 5's eight end-to-end scenarios: the autoscaler as a real process, the simulated VPSie cloud,
the real control plane and scheduler.

Nodes come from VPSie groups of the simulated managed cluster (``tests/e2e/harness.py``): Standard
(2 cpu / 4 GiB, $20/month), Advanced (4 / 8, $40) and HighMem (4 / 32, $90). Pods are sized so the
number of nodes they need is unambiguous (a 3-cpu pod fills an Advanced node).
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import (
    ADVANCED,
    CLUSTER_SCOPED_EVENTS_NS,
    E2E,
    HIGHMEM,
    NODES,
    STANDARD,
    add_node_path,
    bare_pod,
    deployment,
    nodegroup,
    one_to_one,
    phase_of,
    pod_disruption_budget,
)
from vpsie_autoscaler.api.labels import TO_BE_DELETED_TAINT
from vpsie_autoscaler.scaling.reasons import INSUFFICIENT_RESOURCE

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCALE_UP_S = 90.0  # batch window + add-node + boot + join + scheduling, with room for a loaded machine
SCALE_DOWN_S = 90.0
EVENT_S = 30.0
FALLBACK_S = 20.0  # "the next group takes over within seconds"
FILL_ADVANCED = "3"  # cpu: one such pod per Advanced (4 cpu) node


def test_1_deployment_needing_three_nodes_gets_exactly_three_and_runs(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("s1-advanced", ADVANCED, max_nodes=6))
    e2e.autoscaler()
    start = time.monotonic()
    e2e.apply_deployment(deployment("web", 3, cpu=FILL_ADVANCED, memory="1Gi"))

    pods = e2e.wait_pods_running("web", 3, timeout=SCALE_UP_S)
    print(f"3 pods Running on 3 new nodes after {time.monotonic() - start:.1f}s")

    assert len({e2e.node_of(p) for p in pods}) == 3
    assert len(e2e.live_vpsienodes("s1-advanced")) == 3
    assert len(e2e.sim.workers(ADVANCED)) == 3
    assert len(e2e.sim.add_node_requests(ADVANCED)) == 3, "one add-node call per node, no more"
    e2e.wait_vpsienodes(
        "s1-advanced", lambda vns: {phase_of(v) for v in vns} == {"Ready"}, timeout=30, what="all Ready"
    )
    one_to_one(e2e, "s1-advanced")
    e2e.wait_event(reason="TriggeredScaleUp", kind="Pod")
    e2e.wait_nodegroup_event("s1-advanced", "ScaledUp")
    e2e.wait(
        lambda: e2e.get_nodegroup("s1-advanced").get("status", {}),
        lambda s: s.get("readyNodes") == 3,
        timeout=30,
        what="NodeGroup status readyNodes=3",
    )


def test_2_pods_no_group_can_hold_get_not_trigger_scale_up_and_no_node(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("s2-advanced", ADVANCED, max_nodes=6))
    scaler = e2e.autoscaler()
    e2e.apply_deployment(deployment("huge", 1, cpu="16", memory="1Gi"))

    [event, *_] = e2e.wait_event(reason="NotTriggerScaleUp", kind="Pod", timeout=EVENT_S)
    note = event["note"]
    assert "s2-advanced" in note, f"the Event names each group and its reason: {note!r}"
    assert INSUFFICIENT_RESOURCE in note, f"a 16-cpu pod does not fit a 4-cpu node: {note!r}"
    assert scaler.metric("vpsie_autoscaler_unschedulable_pods") == 1
    assert e2e.vpsienodes() == []
    assert e2e.sim.add_node_requests() == []
    assert e2e.sim_nodes() == []
    assert e2e.running_pods("huge") == []


@pytest.mark.parametrize(
    ("expander", "chosen", "other", "nodes"),
    [
        # HighMem has the higher priority: the priority expander picks it (one node holds both pods).
        ("priority", "s3-highmem", "s3-standard", 1),
        # Same groups, same priorities: two Standard nodes ($40) beat one HighMem node ($90).
        ("least-cost", "s3-standard", "s3-highmem", 2),
    ],
)
def test_3_expanders_choose_as_configured(
    e2e: E2E, expander: str, chosen: str, other: str, nodes: int
) -> None:
    e2e.apply_nodegroup(nodegroup("s3-standard", STANDARD, max_nodes=4, priority=0))
    e2e.apply_nodegroup(nodegroup("s3-highmem", HIGHMEM, max_nodes=4, priority=10))
    e2e.autoscaler(expander=expander)
    e2e.apply_deployment(deployment("web", 2, cpu="1500m", memory="1Gi"))

    e2e.wait_pods_running("web", 2, timeout=SCALE_UP_S)
    assert len(e2e.live_vpsienodes(chosen)) == nodes
    assert e2e.vpsienodes(other) == [], f"{expander} must not grow {other}"
    [scaled_up, *_] = e2e.wait_nodegroup_event(chosen, "ScaledUp")
    assert e2e.nodegroup_events(other, "ScaledUp") == []
    assert scaled_up["type"] == "Normal"


def test_4_empty_nodes_go_after_unneeded_time_never_below_min(e2e: E2E) -> None:
    e2e.apply_nodegroup(
        nodegroup(
            "s4-advanced", ADVANCED, min_nodes=1, max_nodes=5, unneeded_time="10s", delay_after_scale_up="5s"
        )
    )
    scaler = e2e.autoscaler()
    e2e.apply_deployment(deployment("web", 3, cpu=FILL_ADVANCED, memory="1Gi"))
    e2e.wait_pods_running("web", 3, timeout=SCALE_UP_S)
    assert len(e2e.live_vpsienodes("s4-advanced")) == 3

    shrink = time.monotonic()
    e2e.scale_deployment("web", 0)
    e2e.wait(
        lambda: e2e.live_vpsienodes("s4-advanced"),
        lambda vns: len(vns) == 1,
        timeout=SCALE_DOWN_S,
        what="scale-down to minNodes=1",
    )
    took = time.monotonic() - shrink
    print(f"2 empty nodes removed {took:.1f}s after the workload shrank (unneededTime 10s)")
    assert took >= 10, "nodes went before unneededTime"
    # Instances are deleted in the cloud (not left billing) and their Nodes are gone.
    e2e.wait(
        lambda: e2e.sim.workers(ADVANCED, include_deleting=True),
        lambda w: len(w) == 1,
        timeout=30,
        what="1 instance left in the cloud",
    )
    e2e.wait(e2e.sim_nodes, lambda n: len(n) == 1, timeout=30, what="1 Node left")
    e2e.wait(
        lambda: e2e.get_nodegroup("s4-advanced").get("status", {}).get("conditions", []),
        lambda conds: any(c["type"] == "AtMinCapacity" and c["status"] == "True" for c in conds),
        timeout=30,
        what="AtMinCapacity=True",
    )
    assert len(e2e.live_vpsienodes("s4-advanced")) == 1, "never below minNodes"
    assert scaler.metric_sum("vpsie_autoscaler_scale_down_total", {"nodegroup": "s4-advanced"}) == 2


def test_5_pdb_forbidding_eviction_keeps_the_node_and_the_event_says_why(e2e: E2E) -> None:
    e2e.apply_nodegroup(
        nodegroup(
            "s5-advanced", ADVANCED, max_nodes=4, delay_after_scale_up="1s", max_graceful_termination="5s"
        )
    )
    e2e.autoscaler()
    # Two busy nodes (62% cpu: not candidates), one filler pod each.
    for name in ("filler-a", "filler-b"):
        e2e.apply_pod(bare_pod(name, "filler", cpu="2500m", anti_affinity_to="filler"))
    e2e.wait_pods_running("filler", 2, timeout=SCALE_UP_S)
    e2e.apply_deployment(deployment("guarded", 1, cpu="200m"))
    e2e.apply_pdb(pod_disruption_budget("guarded-pdb", "guarded", min_available=1))
    [guarded] = e2e.wait_pods_running("guarded", 1, timeout=SCALE_UP_S)
    node = e2e.node_of(guarded)
    # The guarded pod's node loses its filler: 5% used, and the pod would fit on the other node, so
    # only the PodDisruptionBudget keeps the node.
    [filler] = [p for p in e2e.pods("filler") if e2e.node_of(p) == node]
    e2e.delete_pod(filler["metadata"]["name"])

    def pdb_events() -> list[dict[str, object]]:
        # Node events live in a shared namespace: only this test's pod and PDB count (an earlier test of
        # the same cluster may have left a "…guarded-pdb" event of its own).
        evs = e2e.events() + e2e.events(CLUSTER_SCOPED_EVENTS_NS)
        mine = f"{e2e.namespace}/guarded-"
        return [
            ev for ev in evs if "guarded-pdb" in str(ev.get("note", "")) and mine in str(ev.get("note", ""))
        ]

    [event, *_] = e2e.wait(pdb_events, bool, timeout=SCALE_DOWN_S, what="an Event naming the PDB")
    print(f"blocked by the PDB: {event['reason']}: {event['note']}")
    e2e.wait(
        lambda: e2e.client.get(f"{NODES}/{node}"),
        lambda n: not any(t["key"] == TO_BE_DELETED_TAINT for t in n["spec"].get("taints") or []),
        timeout=30,
        what=f"{node} without our scale-down taint",
    )
    [still] = e2e.running_pods("guarded")
    assert e2e.node_of(still) == node
    assert node in {n["metadata"]["name"] for n in e2e.group_nodes("s5-advanced")}
    assert len(e2e.sim.workers(ADVANCED)) == 2


def test_6_sigkill_in_the_middle_of_a_scale_up_leaves_no_duplicate_and_no_orphan(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("s6-advanced", ADVANCED, max_nodes=6))
    scaler = e2e.autoscaler()
    e2e.apply_deployment(deployment("web", 3, cpu=FILL_ADVANCED, memory="1Gi"))

    # Kill the leader the moment VPSie has been asked for the first node, before it has booted.
    e2e.wait(e2e.sim.add_node_requests, bool, timeout=SCALE_UP_S, what="the first add-node call")
    scaler.kill9()
    asked_before_kill = len(e2e.sim.add_node_requests())
    scaler.start()
    scaler.wait_ready()
    scaler.wait_leader()

    e2e.wait_pods_running("web", 3, timeout=SCALE_UP_S)
    workers = e2e.sim.workers(ADVANCED)
    vns = e2e.live_vpsienodes("s6-advanced")
    print(f"{asked_before_kill} add-node call(s) before SIGKILL; {len(e2e.sim.add_node_requests())} in total")
    assert len(workers) == 3, f"duplicate instances: {[w['hostname'] for w in workers]}"
    assert len(vns) == 3
    assert len(e2e.sim.add_node_requests(ADVANCED)) == 3
    one_to_one(e2e, "s6-advanced")
    claimed = {vn["status"]["nodeName"] for vn in e2e.live_vpsienodes("s6-advanced")}
    assert {w["hostname"].lower() for w in e2e.sim.workers(ADVANCED)} == claimed, "orphan instance"


def test_7_vpsie_failures_back_off_the_group_and_the_next_group_takes_over(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("s7-primary", ADVANCED, max_nodes=4, priority=10))
    e2e.apply_nodegroup(nodegroup("s7-fallback", HIGHMEM, max_nodes=4, priority=0))
    scaler = e2e.autoscaler()
    gid = e2e.sim.group_id(ADVANCED)
    e2e.sim.add_fault(
        kind="error_200", path=add_node_path(gid), method="POST", message="Size is out of stock"
    )
    e2e.apply_deployment(deployment("web", 2, cpu="1500m", memory="1Gi"))

    e2e.wait_vpsienodes(
        "s7-primary",
        lambda vns: any(phase_of(v) == "Failed" for v in vns),
        timeout=SCALE_UP_S,
        what="a Failed VPSieNode",
    )
    failed_at = time.monotonic()
    e2e.wait(
        lambda: e2e.get_nodegroup("s7-primary").get("status", {}).get("conditions", []),
        lambda conds: any(c["type"] == "Backoff" and c["status"] == "True" for c in conds),
        timeout=EVENT_S,
        what="s7-primary Backoff=True",
    )
    e2e.wait(
        lambda: e2e.live_vpsienodes("s7-fallback"), bool, timeout=FALLBACK_S, what="fallback group grows"
    )
    print(f"fallback VPSieNode {time.monotonic() - failed_at:.1f}s after the primary's failure")
    e2e.wait_pods_running("web", 2, timeout=SCALE_UP_S)
    assert e2e.sim.workers(ADVANCED) == [], "a refused create leaves nothing billed"
    status = e2e.get_nodegroup("s7-primary")["status"]
    assert status.get("backoffUntil")
    assert status.get("consecutiveFailures", 0) >= 1
    assert scaler.metric("vpsie_autoscaler_nodegroup_backoff", {"nodegroup": "s7-primary"}) == 1


def test_8_dry_run_reports_the_plan_and_changes_nothing(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup("s8-advanced", ADVANCED, min_nodes=1, max_nodes=5))
    scaler = e2e.autoscaler(dry_run=True)
    e2e.apply_deployment(deployment("web", 2, cpu=FILL_ADVANCED, memory="1Gi"))

    [event, *_] = e2e.wait_event(reason="TriggeredScaleUp", kind="Pod", timeout=EVENT_S)
    print(f"dry-run plan: {event['note']}")
    assert "s8-advanced" in event["note"]
    assert scaler.metric("vpsie_autoscaler_dry_run") == 1
    assert scaler.metric_sum("vpsie_autoscaler_scale_up_total", {"nodegroup": "s8-advanced"}) >= 1
    assert e2e.vpsienodes() == [], "dry-run created a VPSieNode"
    assert e2e.sim.add_node_requests() == [], "dry-run called VPSie"
    assert e2e.sim_nodes() == []
    assert e2e.running_pods("web") == []
