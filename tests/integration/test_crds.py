"""The generated CRDs on a real API server: valid objects are accepted and defaulted, invalid ones
are refused with the rule's message (the table in tests/unit/api/nodegroup_cases.py, which the models
refuse too), the source of a NodeGroup and the spec of a VPSieNode cannot change, and what the API
server stores parses back into the models."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from hack.devcluster.client import ApiError, DevKubeClient
from hack.devcluster.cluster import ClusterHandle
from tests.integration.crds import install_crds
from tests.unit.api.nodegroup_cases import (
    ACCEPTED,
    IMMUTABLE,
    MUTABLE,
    REFUSED,
    Case,
    Transition,
    patched,
)
from vpsie_autoscaler.api import NodeGroup, NodeGroupSpec, VPSieNode
from vpsie_autoscaler.api.nodegroup import MSG_NAME_LENGTH, MSG_ONE_SOURCE, update_violations
from vpsie_autoscaler.api.vpsienode import MSG_PHASE_KEYS, MSG_SPEC_IMMUTABLE
from vpsie_autoscaler.scaling import membership

pytestmark = pytest.mark.cluster

BASE = "/apis/autoscaler.vpsie.com/v1alpha1"
NG = f"{BASE}/nodegroups"
VN = f"{BASE}/vpsienodes"
STATUS_UNPROCESSABLE = 422
VM = {"resourceIdentifier": "plan-1", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}
MANAGED = {"clusterIdentifier": "c-1", "nodeGroupName": "workers", "sizeId": 3}


@pytest.fixture(scope="module")
def client(k8s_cluster: ClusterHandle) -> DevKubeClient:
    install_crds(k8s_cluster.client)
    return k8s_cluster.client


@pytest.fixture
def name(client: DevKubeClient) -> Iterator[str]:
    """A unique object name; whatever was created under it is deleted afterwards."""
    value = f"t-{secrets.token_hex(4)}"
    yield value
    client.delete(f"{NG}/{value}")
    client.delete(f"{VN}/{value}")


def nodegroup(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {"minNodes": 1, "maxNodes": 3, "vm": VM, **spec},
    }


def refused(client: DevKubeClient, path: str, body: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as exc:
        client.create(path, body)
    assert exc.value.status == STATUS_UNPROCESSABLE, exc.value
    return exc.value.message


def test_discovery_serves_short_names_and_status_subresources(client: DevKubeClient) -> None:
    resources = {r["name"]: r for r in client.get(BASE)["resources"]}
    assert resources["nodegroups"]["shortNames"] == ["ng"]
    assert resources["vpsienodes"]["shortNames"] == ["vn"]
    assert not resources["nodegroups"]["namespaced"]
    assert "nodegroups/status" in resources
    assert "vpsienodes/status" in resources


def test_valid_nodegroup_is_accepted_and_defaulted_by_the_server(client: DevKubeClient, name: str) -> None:
    created = client.create(NG, nodegroup(name, scaleUp={"enabled": False}))
    spec = created["spec"]
    assert spec["scaleUp"] == {"enabled": False, "priority": 0}  # explicit false kept
    assert spec["scaleDown"]["enabled"] is True
    # Left unset so the live settings' scaleDownDefaults (else the flags) apply: not defaulted here.
    assert "unneededTime" not in spec["scaleDown"]
    assert "utilizationThreshold" not in spec["scaleDown"]
    assert "delayAfterScaleUp" not in spec["scaleDown"]
    assert spec["scaleDown"]["disruptionBudget"] == "10%"
    assert spec["provisioning"]["backoff"] == {"initial": "1m", "max": "15m"}
    parsed = NodeGroup.from_k8s(created)
    assert parsed.spec == NodeGroupSpec.model_validate(nodegroup(name, scaleUp={"enabled": False})["spec"])
    # What the controller would write back is accepted and means the same (explicit false included).
    again = client.request("PUT", f"{NG}/{name}", parsed.to_k8s())
    assert NodeGroup.from_k8s(again).spec == parsed.spec
    assert again["spec"]["scaleUp"]["enabled"] is False


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.id)
def test_invalid_nodegroups_are_refused_with_a_clear_message(
    client: DevKubeClient, name: str, case: Case
) -> None:
    body = nodegroup(name)
    body["spec"] = patched(case.patch)
    assert case.server in refused(client, NG, body)


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.id)
def test_edge_cases_are_accepted_and_parse(client: DevKubeClient, name: str, case: Case) -> None:
    body = nodegroup(name)
    body["spec"] = patched(case.patch)
    created = client.create(NG, body)
    assert NodeGroup.from_k8s(created).spec == NodeGroupSpec.model_validate(body["spec"])


@pytest.mark.parametrize("change", IMMUTABLE, ids=lambda t: t.id)
def test_the_source_of_an_existing_group_cannot_change(
    client: DevKubeClient, name: str, change: Transition
) -> None:
    body = nodegroup(name)
    body["spec"] = change.old
    created = client.create(NG, body)
    with pytest.raises(ApiError) as exc:
        client.request("PUT", f"{NG}/{name}", {**created, "spec": change.new})
    assert exc.value.status == STATUS_UNPROCESSABLE, exc.value
    assert change.message in exc.value.message
    old, new = NodeGroupSpec.model_validate(change.old), NodeGroupSpec.model_validate(change.new)
    assert update_violations(old, new) == [change.message]


@pytest.mark.parametrize("change", MUTABLE, ids=lambda t: t.id)
def test_the_rest_of_the_source_may_change(client: DevKubeClient, name: str, change: Transition) -> None:
    body = nodegroup(name)
    body["spec"] = change.old
    created = client.create(NG, body)
    updated = client.request("PUT", f"{NG}/{name}", {**created, "spec": change.new})
    assert NodeGroup.from_k8s(updated).spec == NodeGroupSpec.model_validate(change.new)


def test_nodegroup_name_must_fit_a_label_value(client: DevKubeClient) -> None:
    long_name = "g" * 64
    try:
        assert MSG_NAME_LENGTH in refused(client, NG, nodegroup(long_name))
    finally:
        client.delete(f"{NG}/{long_name}")


def test_status_is_a_subresource(client: DevKubeClient, name: str) -> None:
    client.create(NG, nodegroup(name))
    # A status sent with the main resource is ignored ...
    client.merge_patch(f"{NG}/{name}", {"status": {"desiredNodes": 7}})
    assert client.get(f"{NG}/{name}").get("status", {}).get("desiredNodes", 0) == 0
    # ... and written through /status.
    cond = {
        "type": "Ready",
        "status": "True",
        "reason": "Active",
        "message": "",
        "lastTransitionTime": "2026-11-27T09:00:00Z",
    }
    client.merge_patch(f"{NG}/{name}/status", {"status": {"desiredNodes": 2, "conditions": [cond]}})
    ng = NodeGroup.from_k8s(client.get(f"{NG}/{name}"))
    assert ng.status.desired_nodes == 2
    assert ng.status.condition("Ready") is not None


def vpsienode(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "VPSieNode",
        "metadata": {"name": name},
        "spec": {"nodeGroup": "web", "hostname": name, "vm": VM, "labels": {"pool": "web"}},
    }


def test_vpsienode_spec_is_immutable_and_status_validated(client: DevKubeClient, name: str) -> None:
    created = client.create(VN, vpsienode(name))
    assert VPSieNode.from_k8s(created).spec.hostname == name
    with pytest.raises(ApiError) as exc:
        client.merge_patch(f"{VN}/{name}", {"spec": {"hostname": "other-name"}})
    assert MSG_SPEC_IMMUTABLE in exc.value.message
    with pytest.raises(ApiError) as exc:
        client.merge_patch(f"{VN}/{name}/status", {"status": {"phase": "Booting"}})
    assert "Unsupported value" in exc.value.message
    with pytest.raises(ApiError) as exc:
        client.merge_patch(
            f"{VN}/{name}/status", {"status": {"phaseTimestamps": {"Booting": "2026-11-27T09:00:00Z"}}}
        )
    assert MSG_PHASE_KEYS in exc.value.message
    ok = client.merge_patch(
        f"{VN}/{name}/status",
        {"status": {"phase": "Provisioning", "phaseTimestamps": {"Pending": "2026-11-27T09:00:00Z"}}},
    )
    assert membership.in_flight(VPSieNode.from_k8s(ok))


def test_vpsienode_needs_exactly_one_source(client: DevKubeClient, name: str) -> None:
    body = vpsienode(name)
    body["spec"]["managed"] = MANAGED
    assert MSG_ONE_SOURCE in refused(client, VN, body)
