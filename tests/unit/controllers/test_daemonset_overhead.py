"""DaemonSet overhead in a group's node template: what the DaemonSets in the cache would run on a new
node is not room for pending pods (Karpenter counts it per NodePool)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.controllers.fakes import Store, World
from vpsie_autoscaler.controllers.cluster_state import SnapshotBuilder
from vpsie_autoscaler.scaling import plan_scale_up
from vpsie_autoscaler.scaling.resources import CPU


def daemonset(name: str, cpu: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "agent", "image": "agent:1", "resources": {"requests": {"cpu": cpu}}}
                    ],
                    **spec,
                },
            },
        },
    }


def builder(w: World, daemonsets: Store | None) -> SnapshotBuilder:
    return w.builder(daemonsets=daemonsets)


@pytest.mark.parametrize(
    ("daemonsets", "per_node", "nodes"),
    [
        ([], 4, 2),
        ([daemonset("agent", "1")], 3, 3),  # 1 of the 4 cpus goes to the agent: 8 pods need 3 nodes
        ([daemonset("agent", "500m"), daemonset("logs", "500m")], 3, 3),
        # A DaemonSet that would not land on the group's nodes takes nothing from them.
        ([daemonset("gpu", "1", nodeSelector={"accel": "gpu"})], 4, 2),
    ],
)
def test_a_daemonset_changes_how_many_pods_fit_per_new_node(
    daemonsets: list[dict[str, Any]], per_node: int, nodes: int
) -> None:
    w = World()
    w.group("web", cpu="4", memory="16Gi")
    for i in range(8):
        w.pending_pod(f"p{i}", cpu="1")
    store = Store()
    for ds in daemonsets:
        store.put(ds)
    snap = builder(w, store).build(w.clock.now())
    (group,) = snap.groups
    assert group.allocatable[CPU] == per_node * 1000
    plan = plan_scale_up(snap.pending_pods, snap.groups, now=snap.now)
    increase = plan.increase_for("web")
    assert increase is not None
    assert increase.nodes == nodes


def test_without_the_daemonset_cache_nothing_is_subtracted() -> None:
    w = World()
    w.group("web", cpu="4", memory="16Gi")
    (group,) = builder(w, None).build(w.clock.now()).groups
    assert group.allocatable[CPU] == 4000
