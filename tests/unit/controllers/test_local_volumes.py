"""The snapshot joins bound pods with the PVC and PV caches: a pod on a local volume keeps its node."""

from __future__ import annotations

from typing import Any

from tests.unit.controllers.fakes import Store, World
from vpsie_autoscaler.controllers.cluster_state import SnapshotBuilder
from vpsie_autoscaler.scaling import plan_scale_down, reasons

FAST = {"unneededTime": "0s", "delayAfterScaleUp": "0s"}


def builder(w: World, pvcs: Store | None, pvs: Store | None) -> SnapshotBuilder:
    return w.builder(pvcs=pvcs, pvs=pvs)


def world(volume_spec: dict[str, Any]) -> tuple[World, Store, Store]:
    w = World()
    w.group("web", scaleDown=FAST)
    w.member("web-a", "web")
    w.member("web-b", "web", cpu="8")
    w.bound_pod("busy", "web-b", cpu="5")  # web-b stays, and has room for db-0
    pod = w.bound_pod("db-0", "web-a")
    pod["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}]
    pvcs, pvs = Store(), Store()
    pvcs.put({"metadata": {"name": "data-db-0", "namespace": "default"}, "spec": {"volumeName": "pv-1"}})
    pvs.put({"metadata": {"name": "pv-1"}, "spec": volume_spec})
    return w, pvcs, pvs


AFFINITY = {
    "required": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["web-a"]}]}
        ]
    }
}


def test_a_pod_on_a_local_volume_keeps_its_node_and_says_which_volume() -> None:
    w, pvcs, pvs = world({"local": {"path": "/mnt/ssd"}, "nodeAffinity": AFFINITY})
    snap = builder(w, pvcs, pvs).build(w.clock.now())
    plan = plan_scale_down(snap.nodes, snap.groups, snap.pdbs, now=snap.now)
    assert "web-a" not in [r.node for r in plan.removals]
    reason = plan.blocked["web-a"]
    assert reason.detail == reasons.LOCAL_PERSISTENT_VOLUME
    assert "data-db-0: PersistentVolume pv-1 is a local volume of this node" in reason.message


def test_a_volume_that_follows_the_pod_does_not_keep_the_node() -> None:
    zonal = {
        "required": {
            "nodeSelectorTerms": [
                {
                    "matchExpressions": [
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z1"]}
                    ]
                }
            ]
        }
    }
    w, pvcs, pvs = world({"csi": {"driver": "x", "volumeHandle": "v"}, "nodeAffinity": zonal})
    snap = builder(w, pvcs, pvs).build(w.clock.now())
    plan = plan_scale_down(snap.nodes, snap.groups, snap.pdbs, now=snap.now)
    assert "web-a" in [r.node for r in plan.removals]


def test_the_binding_is_read_again_on_every_build() -> None:
    """A claim bound after the pod was parsed (the pod's resourceVersion did not change) still counts."""
    w, pvcs, pvs = world({"local": {"path": "/mnt/ssd"}})
    pvcs.put({"metadata": {"name": "data-db-0", "namespace": "default"}, "spec": {}})  # not bound yet
    b = builder(w, pvcs, pvs)
    first = b.build(w.clock.now())
    assert not any(p.local_claims for n in first.nodes for p in n.pods)
    pvcs.put({"metadata": {"name": "data-db-0", "namespace": "default"}, "spec": {"volumeName": "pv-1"}})
    second = b.build(w.clock.now())
    assert [p.local_claims for n in second.nodes for p in n.pods if p.claims] == [
        ("data-db-0: PersistentVolume pv-1 is a local volume of this node",)
    ]
