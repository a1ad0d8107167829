"""Flexible plans and headroom end to end: the autoscaler process, the simulated VPSie cloud (plain
VMs and a managed cluster; the default catalogue: Standard 2 cpu / 4 GiB $20, Professional 8 cpu /
16 GiB $80 a month) and the real control plane and scheduler.

Which plan a node got is read where a user reads it: the Node's ``node.kubernetes.io/instance-type``
and capacity (the simulator's bridge gives each VM its plan's), and the VPSieNode's plan.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Final

import pytest

from tests.e2e.harness import (
    API_GROUP,
    E2E,
    JOIN_S,
    STANDARD,
    bare_pod,
    deployment,
    nodegroup,
    vm_nodegroup,
)
from vpsie_autoscaler.cloudsim.config import SimConfig

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCALE_UP_S: Final = 90.0
RESTORE_S: Final = 20.0  # "within seconds": a bound pod triggers the re-plan; the VM boots in ~5 s
INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
PLANS: Final = {p.nickname: p.identifier for p in SimConfig().plans}
FLEXIBLE: Final = {"sizes": [PLANS["Standard"], PLANS["Professional"]]}
SIZES: Final = {p.nickname: p.id for p in SimConfig().plans}
ADD_GROUP: Final = "/apps/v2/k8s/cluster/add/group"


def flexible_group(name: str, **spec: Any) -> dict[str, Any]:
    body = vm_nodegroup(name, STANDARD, max_nodes=6)
    body["spec"].update(spec)
    return body


def node_plans(e2e: E2E, group: str) -> Counter[str]:
    return Counter(n["metadata"]["labels"].get(INSTANCE_TYPE, "") for n in e2e.group_nodes(group))


def test_an_8_cpu_pod_gets_an_8_cpu_node_and_small_pods_get_2_cpu_nodes(e2e: E2E) -> None:
    e2e.apply_nodegroup(flexible_group("fx-big", plans=FLEXIBLE))
    e2e.autoscaler()
    e2e.apply_deployment(deployment("big", 1, cpu="7500m", memory="1Gi"))
    [pod] = e2e.wait_pods_running("big", 1, timeout=SCALE_UP_S)
    node = e2e.client.get(f"/api/v1/nodes/{e2e.node_of(pod)}")
    assert node["metadata"]["labels"][INSTANCE_TYPE] == "Professional"
    assert node["status"]["capacity"]["cpu"] == "8"

    e2e.apply_deployment(deployment("small", 3, cpu="1500m", memory="1Gi"))
    e2e.wait_pods_running("small", 3, timeout=SCALE_UP_S)
    assert node_plans(e2e, "fx-big") == Counter({"Professional": 1, "Standard": 3})
    plans = Counter(vn["spec"]["vm"]["resourceIdentifier"] for vn in e2e.live_vpsienodes("fx-big"))
    assert plans == Counter({PLANS["Professional"]: 1, PLANS["Standard"]: 3})


def test_a_managed_group_gets_an_8_cpu_node_in_a_vpsie_group_of_that_size_made_once(e2e: E2E) -> None:
    """The managed cluster has VPSie groups of 2 and 4 cpu only: the 8-cpu size gets its own VPSie node
    group (VPSie keeps one per size), created once; small pods still get 2-cpu nodes of the group's own
    VPSie group."""
    body = nodegroup("mfx", STANDARD, max_nodes=6)
    body["spec"]["plans"] = {"sizes": [str(SIZES["Standard"]), str(SIZES["Professional"])]}
    e2e.apply_nodegroup(body)
    e2e.autoscaler()
    e2e.apply_deployment(deployment("mbig", 1, cpu="7500m", memory="1Gi"))
    [pod] = e2e.wait_pods_running("mbig", 1, timeout=SCALE_UP_S)
    node = e2e.client.get(f"/api/v1/nodes/{e2e.node_of(pod)}")
    assert node["metadata"]["labels"][INSTANCE_TYPE] == "Professional"
    assert node["status"]["capacity"]["cpu"] == "8"

    e2e.apply_deployment(deployment("msmall", 3, cpu="1500m", memory="1Gi"))
    e2e.wait_pods_running("msmall", 3, timeout=SCALE_UP_S)
    e2e.wait(  # pods may start on a Node before its record has bound it and labelled it
        lambda: node_plans(e2e, "mfx"),
        lambda plans: plans == Counter({"Professional": 1, "Standard": 3}),
        timeout=JOIN_S,
        what="1 Professional and 3 Standard nodes in mfx",
    )
    groups = {g["group_name"]: g for g in e2e.sim.state()["clusters"][0]["groups"]}
    assert groups["mfx-size-58"]["boxsize_id"] == SIZES["Professional"]
    assert len([r for r in e2e.sim.requests() if r.get("path") == ADD_GROUP]) == 1
    names = {g["id"]: name for name, g in groups.items()}
    workers = Counter(names[w["group_id"]] for w in e2e.sim.workers())
    assert workers == Counter({"mfx-size-58": 1, STANDARD.name: 3})
    sizes = Counter(vn["spec"].get("planSizeId") for vn in e2e.live_vpsienodes("mfx"))
    assert sizes == Counter({SIZES["Professional"]: 1, None: 3})


def test_the_cheaper_mix_when_both_fit(e2e: E2E) -> None:
    """An 8-cpu pod and two 900m pods: one Professional and one Standard ($100) beat two
    Professional nodes ($160); both would hold them."""
    e2e.apply_nodegroup(flexible_group("fx-mix", plans=FLEXIBLE))
    e2e.autoscaler()
    e2e.apply_pod(bare_pod("mix-big", "mix", cpu="7500m", memory="1Gi"))
    e2e.apply_pod(bare_pod("mix-a", "mix", cpu="900m", memory="256Mi"))
    e2e.apply_pod(bare_pod("mix-b", "mix", cpu="900m", memory="256Mi"))
    e2e.wait_pods_running("mix", 3, timeout=SCALE_UP_S)
    assert node_plans(e2e, "fx-mix") == Counter({"Professional": 1, "Standard": 1})
    [scaled, *_] = e2e.wait_nodegroup_event("fx-mix", "ScaledUp")
    assert "cheapest mix of plans" in scaled["note"], scaled["note"]


def test_headroom_of_2_cpu_is_restored_within_seconds_after_pods_take_it(e2e: E2E) -> None:
    body = vm_nodegroup("fx-spare", STANDARD, max_nodes=4)
    body["spec"]["headroom"] = {"cpu": "2"}
    e2e.apply_nodegroup(body)
    e2e.autoscaler()
    # No pod at all: the headroom alone orders the first (empty) node.
    e2e.wait(lambda: e2e.group_nodes("fx-spare"), lambda ns: len(ns) == 1, timeout=SCALE_UP_S, what="1 node")
    e2e.wait_vpsienodes("fx-spare", lambda vns: len(vns) == 1, timeout=10, what="1 record")

    e2e.apply_deployment(deployment("taker", 1, cpu="1500m", memory="256Mi"))
    e2e.wait_pods_running("taker", 1, timeout=30)  # it runs at once: on the spare node
    taken = time.monotonic()
    e2e.wait(
        lambda: e2e.group_nodes("fx-spare"),
        lambda ns: len(ns) == 2,
        timeout=RESTORE_S,
        what="the headroom's replacement node",
    )
    print(f"headroom restored (new Node registered) {time.monotonic() - taken:.1f}s after a pod took it")
    e2e.wait(
        lambda: e2e.get_nodegroup("fx-spare").get("status", {}),
        lambda st: st.get("headroom") == "2 cpu: held",
        timeout=RESTORE_S,
        what="status.headroom '2 cpu: held'",
    )
    assert len(e2e.live_vpsienodes("fx-spare")) == 2


def test_dry_run_reports_the_plan_choice(e2e: E2E) -> None:
    e2e.apply_nodegroup(flexible_group("fx-dry", plans=FLEXIBLE))
    e2e.autoscaler(dry_run=True)
    e2e.apply_deployment(deployment("dry", 1, cpu="7500m", memory="1Gi"))
    events = e2e.wait(
        lambda: e2e.nodegroup_events("fx-dry", "ScaledUp"),
        bool,
        timeout=30,
        what="ScaledUp (dry-run) on fx-dry",
    )
    note = events[0]["note"]
    assert note.startswith("dry-run"), note
    assert "plans: 1 x Professional" in note, note
    assert e2e.vpsienodes("fx-dry") == []


def test_cluster_headroom_set_live_orders_a_spare_node_and_removing_it_lets_it_go(e2e: E2E) -> None:
    """``AutoscalerSettings`` ``spec.headroom`` on the running autoscaler: 2 spare cpu across the
    NodeGroups, with no pod at all, makes one node; a pod taking the room makes another; the field
    removed, the idle spare node is scaled down."""
    settings = f"{API_GROUP}/autoscalersettings/default"
    e2e.client.delete(settings)
    try:
        body = vm_nodegroup("fx-cluster", STANDARD, max_nodes=4)
        e2e.apply_nodegroup(body)
        e2e.autoscaler()
        obj = {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "AutoscalerSettings",
            "metadata": {"name": "default"},
            "spec": {"headroom": {"cpu": "1500m"}},
        }
        e2e.client.create(f"{API_GROUP}/autoscalersettings", obj)
        e2e.wait(lambda: e2e.group_nodes("fx-cluster"), lambda ns: len(ns) == 1, timeout=SCALE_UP_S,
                 what="the spare node the cluster headroom orders")  # fmt: skip
        e2e.apply_deployment(deployment("cl-taker", 1, cpu="1500m", memory="256Mi"))
        e2e.wait_pods_running("cl-taker", 1, timeout=30)  # at once: on the spare node
        e2e.wait(lambda: e2e.group_nodes("fx-cluster"), lambda ns: len(ns) == 2, timeout=SCALE_UP_S,
                 what="the headroom ordered again after a pod took it")  # fmt: skip
        e2e.client.merge_patch(settings, {"spec": {"headroom": None}})
        e2e.wait(lambda: e2e.live_vpsienodes("fx-cluster"), lambda vs: len(vs) == 1, timeout=SCALE_UP_S,
                 what="the idle spare node scaled down once the headroom is removed")  # fmt: skip
    finally:
        e2e.client.delete(settings)
