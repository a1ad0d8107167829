"""The Go system's cluster auto-discovery, end to end: a managed NodeGroup that names only its VPSie node
group finds its VPSie cluster by matching that cluster's nodes to this cluster's Nodes (among two
clusters of the account), takes its size from the VPSie group, and scales; a sizeId that disagrees with
the VPSie group is a condition and an Event.

The simulated account holds two managed clusters. Ours already has one worker, which the simulator's
bridge registers as a Node here; the other one's nodes are not Nodes of this cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.e2e.harness import (
    ADVANCED,
    E2E,
    HIGHMEM,
    NODEGROUPS,
    SIM_CLUSTER_ID,
    SIM_CLUSTER_NAME,
    STANDARD,
    CloudSim,
    JsonObj,
    nodegroup,
    sim_config,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

OTHER_CLUSTER_ID = "5c1d7e90-3a2b-4c5d-8e9f-0a1b2c3d4e5f"
OTHER_CLUSTER_NAME = "AMS-Kubernetes-e2e2"
DISCOVERY_S = 60.0
SCALE_UP_S = 90.0
NODE_S = 30.0


def two_clusters_sim(e2e: E2E) -> CloudSim:
    """Replace the test's simulator with one whose account holds our cluster (one Standard worker
    already running) and another cluster with a worker of its own."""
    e2e.sim.stop()
    workdir = e2e.workdir / "two-clusters"
    workdir.mkdir()
    sim = CloudSim(workdir, e2e.kubeconfig)
    config: dict[str, Any] = sim_config()
    ours = config["clusters"][0]
    for group in ours["groups"]:
        group["nodes"] = 1 if group["name"] == STANDARD.name else 0
    config["clusters"].append(
        {
            "name": OTHER_CLUSTER_NAME,
            "identifier": OTHER_CLUSTER_ID,
            "groups": [{"name": "GRP-Elsewhere", "size": ADVANCED.size_id, "nodes": 0}],
        }
    )
    sim.config_path.write_text(yaml.safe_dump(config))
    e2e.sim = sim.start()
    return sim


def managed_only_by_name(name: str, group: Any, **spec: Any) -> JsonObj:
    body = nodegroup(name, group, **spec)
    body["spec"]["managed"] = {"nodeGroupName": group.name}
    return body


def condition(group: JsonObj, kind: str) -> JsonObj:
    return next((c for c in (group.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def test_a_nodegroup_without_cluster_and_size_discovers_them_and_scales(e2e: E2E) -> None:
    sim = two_clusters_sim(e2e)
    e2e.wait(
        e2e.sim_nodes, lambda nodes: len(nodes) == 1, timeout=NODE_S, what="our cluster's worker as a Node"
    )
    e2e.autoscaler()

    e2e.apply_nodegroup(managed_only_by_name("discovered", ADVANCED, min_nodes=1, max_nodes=2))
    group = e2e.wait(
        lambda: e2e.get_nodegroup("discovered"),
        lambda g: (g.get("status") or {}).get("managed"),
        timeout=DISCOVERY_S,
        what="status.managed of the discovered group",
    )
    found = group["status"]["managed"]
    assert found["clusterIdentifier"] == SIM_CLUSTER_ID
    assert found["clusterName"] == SIM_CLUSTER_NAME
    assert found["clusterFrom"] == "nodes"
    assert found["sizeId"] == ADVANCED.size_id
    assert condition(group, "SourceResolved")["status"] == "True"
    # minNodes: a node is added to the discovered cluster's VPSie group, and joins.
    e2e.wait(
        lambda: sim.add_node_requests(ADVANCED),
        bool,
        timeout=SCALE_UP_S,
        what="add-node in the discovered group",
    )
    e2e.wait(
        lambda: e2e.group_nodes("discovered"), lambda nodes: len(nodes) == 1, timeout=SCALE_UP_S,
        what="the new node of the discovered group",
    )  # fmt: skip
    assert not [
        r for r in sim.requests() if OTHER_CLUSTER_ID in str(r.get("path")) and r.get("method") != "GET"
    ]

    # A sizeId that disagrees with the VPSie group: reported, and the VPSie group's size is what is used.
    wrong = managed_only_by_name("wrong-size", STANDARD, max_nodes=2)
    wrong["spec"]["managed"]["sizeId"] = HIGHMEM.size_id
    e2e.apply_nodegroup(wrong)
    e2e.wait_nodegroup_event("wrong-size", "SizeMismatch", timeout=DISCOVERY_S)
    group = e2e.get_nodegroup("wrong-size")
    mismatch = condition(group, "SizeMismatch")
    assert mismatch["status"] == "True"
    assert str(HIGHMEM.size_id) in mismatch["message"]
    assert str(STANDARD.size_id) in mismatch["message"]
    assert group["status"]["managed"]["sizeId"] == STANDARD.size_id


def test_a_missing_vpsie_group_is_created_a_second_of_the_same_size_is_refused_and_delete_removes_it(
    e2e: E2E,
) -> None:
    e2e.sim.stop()
    workdir = e2e.workdir / "standard-only"
    workdir.mkdir()
    sim = CloudSim(workdir, e2e.kubeconfig, groups=(STANDARD,))
    e2e.sim = sim.start()
    e2e.autoscaler()

    created = nodegroup("created", ADVANCED, min_nodes=1, max_nodes=2)
    created["spec"]["managed"] = {
        "clusterIdentifier": SIM_CLUSTER_ID,
        "nodeGroupName": "GRP-Created-e2e",
        "sizeId": ADVANCED.size_id,
        "groupDeletionPolicy": "Delete",
    }
    e2e.apply_nodegroup(created)
    e2e.wait_nodegroup_event("created", "VPSieGroupCreated", timeout=DISCOVERY_S)
    found = e2e.get_nodegroup("created")["status"]["managed"]
    assert (found["nodeGroupName"], found["sizeId"], found["created"]) == (
        "GRP-Created-e2e",
        ADVANCED.size_id,
        True,
    )
    groups = sim.state()["clusters"][0]["groups"]
    assert [g["boxsize_id"] for g in groups if g["group_name"] == "GRP-Created-e2e"] == [ADVANCED.size_id]
    e2e.wait(
        lambda: e2e.group_nodes("created"), lambda nodes: len(nodes) == 1, timeout=SCALE_UP_S,
        what="minNodes in the created VPSie group",
    )  # fmt: skip

    # VPSie keeps one group per size: a second group of the same size is a clear condition, never sent.
    twin = nodegroup("twin", ADVANCED, max_nodes=1)
    twin["spec"]["managed"] = {"clusterIdentifier": SIM_CLUSTER_ID, "nodeGroupName": "GRP-Twin-e2e",
                               "sizeId": ADVANCED.size_id}  # fmt: skip
    e2e.apply_nodegroup(twin)
    e2e.wait_nodegroup_event("twin", "GroupCreateRefused", timeout=DISCOVERY_S)
    refused = condition(e2e.get_nodegroup("twin"), "SourceResolved")
    assert refused["status"] == "False"
    assert "GRP-Created-e2e" in refused["message"]
    assert len([r for r in sim.requests() if r.get("path") == "/apps/v2/k8s/cluster/add/group"]) == 1

    # groupDeletionPolicy Delete: the NodeGroup's nodes go first, then the VPSie group it created.
    e2e.client.delete(f"{NODEGROUPS}/created")
    e2e.wait(
        lambda: [g["group_name"] for g in sim.state()["clusters"][0]["groups"]],
        lambda names: "GRP-Created-e2e" not in names,
        timeout=SCALE_UP_S,
        what="the created VPSie group deleted with its NodeGroup",
    )
