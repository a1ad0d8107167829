"""New VPSieNodes carry everything needed to create, find and delete their instance after a crash."""

import random

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode

GROUP = {
    "apiVersion": "autoscaler.vpsie.com/v1alpha1",
    "kind": "NodeGroup",
    "metadata": {"name": "General-Pool"},
    "spec": {
        "minNodes": 0,
        "maxNodes": 5,
        "managed": {"clusterIdentifier": "c-1", "nodeGroupId": 7, "sizeId": 57},
        "template": {
            "labels": {"workload": "web"},
            "taints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
        },
    },
}


def test_new_node_has_a_valid_hostname_its_group_label_and_a_copy_of_the_template() -> None:
    group = NodeGroup.from_k8s(GROUP)
    node = new_vpsienode(group, rng=random.Random(1))
    assert node.metadata.name == node.spec.hostname
    assert node.spec.hostname.startswith("general-pool-")
    assert node.metadata.labels[NODEGROUP_LABEL] == "General-Pool"
    assert node.spec.node_group == "General-Pool"
    assert node.spec.managed == group.spec.managed
    assert node.spec.vm is None
    assert node.spec.labels == {"workload": "web", NODEGROUP_LABEL: "General-Pool"}
    assert [t.key for t in node.spec.taints] == ["dedicated"]


def test_two_nodes_of_one_group_get_different_hostnames() -> None:
    group = NodeGroup.from_k8s(GROUP)
    rng = random.Random(7)
    assert new_vpsienode(group, rng=rng).spec.hostname != new_vpsienode(group, rng=rng).spec.hostname


def test_creation_body_round_trips_and_has_no_status() -> None:
    body = creation_body(new_vpsienode(NodeGroup.from_k8s(GROUP), rng=random.Random(3)))
    assert "status" not in body
    assert body["kind"] == "VPSieNode"
    assert VPSieNode.from_k8s(body).spec.hostname == body["spec"]["hostname"]
