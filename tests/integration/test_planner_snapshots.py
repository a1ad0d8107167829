"""The planners on what a real API server and scheduler produce: objects as stored (defaulted,
with server formats), a pod the real scheduler found Unschedulable, a Node kwok keeps Ready.

The point: our snapshots parse real JSON, our predicates agree with the scheduler's verdict, and the
plans are the ones the unit tests promise for the same shapes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hack.devcluster.client import DevKubeClient, find_condition
from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL, make_kwok_node
from tests.integration.crds import install_crds
from vpsie_autoscaler.api import NodeGroup
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.scaling import (
    GroupTemplate,
    NodeInfo,
    PodInfo,
    nodes_from_k8s,
    plan_scale_down,
    plan_scale_up,
    reasons,
)
from vpsie_autoscaler.scaling.predicates import check
from vpsie_autoscaler.scaling.scaleup import TRIGGERED

pytestmark = pytest.mark.cluster

NODE_READY_S = 30.0
POD_S = 90.0
VM = {"resourceIdentifier": "plan-1", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}


def bare_pod(ns: str, name: str, cpu: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {OWNER_LABEL: ns},
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:1",
                    "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}},
                }
            ],
        },
    }


def scheduled_condition(client: DevKubeClient, ns: str, name: str) -> dict[str, object]:
    obj = client.wait_for(
        f"/api/v1/namespaces/{ns}/pods/{name}",
        lambda p: find_condition(p, "PodScheduled") is not None,
        timeout=POD_S,
        what=f"the scheduler's verdict on pod {name}",
    )
    assert obj is not None
    return obj


def test_planners_on_real_objects(k8s_cluster: ClusterHandle, k8s_namespace: str) -> None:
    client, ns = k8s_cluster.client, k8s_namespace
    install_crds(client)
    group_name = f"g-{ns}"[:63]
    ng_obj = client.create(
        "/apis/autoscaler.vpsie.com/v1alpha1/nodegroups",
        {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "NodeGroup",
            "metadata": {"name": group_name},
            "spec": {
                "minNodes": 0,
                "maxNodes": 3,
                "vm": VM,
                "template": {"labels": {OWNER_LABEL: ns}, "resources": {"cpu": "4", "memory": "8Gi"}},
            },
        },
    )
    try:
        node_name = f"{ns}-n1"
        client.create_node(
            make_kwok_node(
                node_name, cpu="1", memory="2Gi", labels={OWNER_LABEL: ns, NODEGROUP_LABEL: group_name}
            )
        )
        client.wait_node_ready(node_name, timeout=NODE_READY_S)

        # A pod the real scheduler cannot place, and one it can.
        client.create(f"/api/v1/namespaces/{ns}/pods", bare_pod(ns, "big", "1500m"))
        client.create(f"/api/v1/namespaces/{ns}/pods", bare_pod(ns, "small", "100m"))
        big = scheduled_condition(client, ns, "big")
        cond = find_condition(big, "PodScheduled")
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
        client.wait_for(
            f"/api/v1/namespaces/{ns}/pods/small",
            lambda p: p is not None and p.get("status", {}).get("phase") == "Running",
            timeout=POD_S,
            what="pod small Running",
        )

        # Our predicates agree with the scheduler about the existing node.
        node_raw = client.get(f"/api/v1/nodes/{node_name}")
        pods_raw = client.list_objects(f"/api/v1/namespaces/{ns}/pods")
        (node,) = nodes_from_k8s([node_raw], pods_raw)
        assert isinstance(node, NodeInfo)
        assert node.ready
        assert node.group == group_name
        pending = PodInfo.from_k8s(big)
        verdict = check(pending, node)
        assert verdict is not None
        assert verdict.code == reasons.INSUFFICIENT_RESOURCE

        # Scale-up from the stored NodeGroup: one new node for the pending pod.
        group = GroupTemplate.from_nodegroup(NodeGroup.from_k8s(ng_obj), size=1)
        plan = plan_scale_up([pending], [group], now=datetime.now(UTC))
        assert plan.pods[0].status == TRIGGERED
        (increase,) = plan.increases
        assert (increase.group, increase.nodes, increase.to_size) == (group_name, 1, 2)

        # Scale-down of the real node: its bare pod has no controller, so it must stay.
        down = plan_scale_down([node], [group], now=datetime.now(UTC))
        assert down.removals == ()
        assert down.blocked[node_name].code == reasons.POD_BLOCKS_EVICTION
        assert down.blocked[node_name].detail == reasons.NOT_REPLICATED
    finally:
        client.delete(f"/apis/autoscaler.vpsie.com/v1alpha1/nodegroups/{group_name}")
