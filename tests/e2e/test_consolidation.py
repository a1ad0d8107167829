"""Consolidation end to end: the autoscaler as a real process, the simulated VPSie cloud, the real
control plane and scheduler.

VPSie groups of the simulated managed cluster: Standard (2 cpu / 4 GiB, $20/month), Advanced (4 / 8,
$40) and HighMem (4 / 32, $90). Nodes are made by ``minNodes`` first (consolidation off), then the
group is opened to consolidation, so what changes afterwards is consolidation's doing alone
(scale-down is disabled on these groups).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.e2e.harness import (
    ADVANCED,
    CLUSTER_SCOPED_EVENTS_NS,
    E2E,
    NODEGROUPS,
    STANDARD,
    JsonObj,
    deployment,
    nodegroup,
    pod_disruption_budget,
)
from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

NODES_S = 120.0
CONSOLIDATE_S = 240.0  # one drain per PDB disruption, each a scan, an eviction, a new pod and a delete
ON: dict[str, Any] = {"enabled": True, "consolidateAfter": "0s"}


def group(name: str, vpsie: Any, *, nodes: int, max_nodes: int = 6) -> JsonObj:
    body = nodegroup(name, vpsie, min_nodes=nodes, max_nodes=max_nodes, scale_down_enabled=False)
    body["spec"]["consolidation"] = {"enabled": False}
    return body


def open_to_consolidation(e2e: E2E, name: str) -> None:
    e2e.client.merge_patch(f"{NODEGROUPS}/{name}", {"spec": {"minNodes": 0, "consolidation": ON}})


def wait_nodes(e2e: E2E, name: str, count: int) -> None:
    e2e.wait(lambda: e2e.group_nodes(name), lambda n: len(n) == count, timeout=NODES_S, what=f"{count} nodes")


class RunningWatch:
    """Samples the Running pods of an app until stopped: the fewest seen, and how often it looked."""

    def __init__(self, e2e: E2E, app: str) -> None:
        self.e2e, self.app = e2e, app
        self.fewest = 1 << 30
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.fewest = min(self.fewest, len(self.e2e.running_pods(self.app)))
            self.samples += 1
            self._stop.wait(0.2)

    def __enter__(self) -> RunningWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def drain_requested(e2e: E2E, group_name: str) -> list[str]:
    return [
        v["metadata"]["name"]
        for v in e2e.vpsienodes(group_name)
        if DRAIN_REQUESTED_ANNOTATION in (v["metadata"].get("annotations") or {})
    ]


def test_six_nodes_at_thirty_percent_become_two_with_every_pod_running(e2e: E2E) -> None:
    e2e.apply_nodegroup(group("c1-advanced", ADVANCED, nodes=6))
    scaler = e2e.autoscaler()
    wait_nodes(e2e, "c1-advanced", 6)
    web = deployment("web", 6, cpu="1200m", memory="256Mi")  # 30 % of a 4-cpu node each
    web["spec"]["template"]["spec"]["topologySpreadConstraints"] = [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchLabels": {"app": "web"}}}
    ]  # fmt: skip
    e2e.apply_deployment(web)
    e2e.apply_pdb(pod_disruption_budget("web-pdb", "web", min_available=4))
    e2e.wait_pods_running("web", 6, timeout=NODES_S)
    assert len({e2e.node_of(p) for p in e2e.running_pods("web")}) == 6

    started = time.monotonic()
    with RunningWatch(e2e, "web") as watch:
        open_to_consolidation(e2e, "c1-advanced")
        e2e.wait(lambda: e2e.live_vpsienodes("c1-advanced"), lambda v: len(v) == 2, timeout=CONSOLIDATE_S,
                 what="six nodes consolidated to two")  # fmt: skip
        e2e.wait_pods_running("web", 6, timeout=NODES_S)
    print(f"6 -> 2 nodes in {time.monotonic() - started:.0f}s; fewest Running pods seen {watch.fewest} "
          f"in {watch.samples} samples")  # fmt: skip
    assert watch.fewest >= 4, "the PodDisruptionBudget (minAvailable 4) was violated"
    # A record leaves the live set when its deletion starts; its instance goes at VPSie a moment later.
    e2e.wait(lambda: e2e.sim.workers(ADVANCED), lambda w: len(w) == 2, timeout=NODES_S,
             what="the removed nodes' instances gone at VPSie")  # fmt: skip
    assert scaler.metric_sum("vpsie_autoscaler_scale_down_total", {"reason": "ConsolidateDelete"}) == 4


def test_a_cheaper_plan_replaces_an_expensive_node_and_a_full_node_is_never_touched(e2e: E2E) -> None:
    e2e.apply_nodegroup(group("c2-advanced", ADVANCED, nodes=2))
    e2e.apply_nodegroup(group("c2-standard", STANDARD, nodes=0, max_nodes=2))
    e2e.autoscaler()
    wait_nodes(e2e, "c2-advanced", 2)
    e2e.apply_deployment(deployment("full", 1, cpu="3500m", memory="256Mi"))
    e2e.wait_pods_running("full", 1, timeout=NODES_S)
    # 600m: more than the full node has left, less than a Standard node: a Standard node is cheaper.
    e2e.apply_deployment(deployment("small", 1, cpu="600m", memory="256Mi", anti_affinity_to="full"))
    [small] = e2e.wait_pods_running("small", 1, timeout=NODES_S)
    [full] = e2e.running_pods("full")
    full_node, old_node = e2e.node_of(full), e2e.node_of(small)

    open_to_consolidation(e2e, "c2-advanced")
    e2e.wait(lambda: e2e.group_nodes("c2-standard"), lambda n: len(n) == 1, timeout=NODES_S,
             what="the cheaper replacement joined")  # fmt: skip
    e2e.wait(
        lambda: {n["metadata"]["name"] for n in e2e.group_nodes("c2-advanced")},
        lambda n: n == {full_node},
        timeout=CONSOLIDATE_S,
        what=f"{old_node} replaced",
    )
    [moved] = e2e.wait_pods_running("small", 1, timeout=NODES_S)
    assert e2e.node_of(moved) == e2e.group_nodes("c2-standard")[0]["metadata"]["name"]
    [still] = e2e.running_pods("full")
    assert still["metadata"]["uid"] == full["metadata"]["uid"], "the fully used node's pod was moved"
    assert full_node not in drain_requested(e2e, "c2-advanced")
    notes = " ".join(str(ev.get("note", "")) for ev in e2e.events(CLUSTER_SCOPED_EVENTS_NS) + e2e.events())
    assert "ConsolidateReplace" in notes or "replacing" in notes


def test_dry_run_shows_the_plan_and_changes_nothing(e2e: E2E) -> None:
    e2e.apply_nodegroup(group("c3-advanced", ADVANCED, nodes=2))
    builder = e2e.autoscaler("builder")
    wait_nodes(e2e, "c3-advanced", 2)
    builder.stop()
    e2e.apply_deployment(deployment("light", 2, cpu="300m", memory="128Mi"))
    e2e.wait_pods_running("light", 2, timeout=NODES_S)
    before = sorted(v["metadata"]["name"] for v in e2e.vpsienodes())
    pods_before = sorted(p["metadata"]["uid"] for p in e2e.running_pods("light"))

    scaler = e2e.autoscaler("dry", dry_run=True)
    open_to_consolidation(e2e, "c3-advanced")

    mine = {n["metadata"]["uid"] for n in e2e.group_nodes("c3-advanced")}

    def announced() -> list[JsonObj]:
        # Node Events outlive their test, and the simulator reuses hostnames: this test's nodes by uid.
        return [
            ev
            for ns in (CLUSTER_SCOPED_EVENTS_NS, e2e.namespace)
            for ev in e2e.events(ns, reason="Consolidating")
            if ev.get("regarding", {}).get("uid") in mine
        ]

    [event, *_] = e2e.wait(announced, bool, timeout=NODES_S, what="a dry-run consolidation Event")
    print(f"dry-run plan: {event['note']}")
    assert str(event["note"]).startswith("dry-run: ")
    # The Event is announced as the action starts: a real run would have written by now.
    e2e.wait(lambda: scaler.metric("vpsie_autoscaler_consolidation_projected_savings_hourly") or 0.0,
             lambda v: v > 0, timeout=30, what="projected savings reported")  # fmt: skip
    assert sorted(v["metadata"]["name"] for v in e2e.vpsienodes()) == before
    assert drain_requested(e2e, "c3-advanced") == []
    assert sorted(p["metadata"]["uid"] for p in e2e.running_pods("light")) == pods_before
