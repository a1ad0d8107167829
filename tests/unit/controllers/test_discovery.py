"""A managed NodeGroup without clusterIdentifier or sizeId: the VPSie cluster is found by matching its
nodes to this cluster's Nodes (or taken from the setting or the vpsie-secret), the size from the VPSie
group; a disagreeing sizeId and two matching clusters are reported, never guessed or planned with."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.unit.controllers.test_invalid_objects import Lifecycle
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.controllers.cloud import Providers
from vpsie_autoscaler.controllers.discovery import (
    REASON_AMBIGUOUS,
    REASON_NO_MATCH,
    REASON_NO_NODES,
    REASON_RESOLVED,
    ClusterCandidate,
    NodeEvidence,
    match_cluster,
    node_evidence,
)
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupOptions, NodeGroupReconciler
from vpsie_autoscaler.runtime.clock import RealClock
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.credentials import SecretHints

Obj = dict[str, Any]
OURS, OTHER = "11111111-aaaa-4bbb-8ccc-000000000001", "22222222-aaaa-4bbb-8ccc-000000000002"
STANDARD, ADVANCED = 56, 57


def candidate(
    identifier: str, name: str, hosts: set[str], ips: frozenset[str] | set[str] = frozenset()
) -> ClusterCandidate:
    return ClusterCandidate(identifier, name, frozenset(h.lower() for h in hosts), frozenset(ips))


# --- matching (pure) -----------------------------------------------------------------------------------


def test_the_one_cluster_whose_node_is_a_node_here_is_found_whatever_the_case_of_its_hostname() -> None:
    ours = candidate(OURS, "HEL-Kubernetes-49ab", {"HEL-Kubernetes-49ab-slave-11cc"})
    other = candidate(OTHER, "AMS-Kubernetes-77ff", {"AMS-Kubernetes-77ff-slave-0001"})
    found = match_cluster([other, ours], NodeEvidence(frozenset({"hel-kubernetes-49ab-slave-11cc"})))
    assert (found.identifier, found.name, found.reason) == (OURS, "HEL-Kubernetes-49ab", REASON_RESOLVED)


def test_two_matching_clusters_are_an_ambiguity_naming_both_never_a_guess() -> None:
    a = candidate(OURS, "HEL-Kubernetes-49ab", {"shared-1", "shared-2"})
    b = candidate(OTHER, "AMS-Kubernetes-77ff", {"shared-1"})
    found = match_cluster([a, b], NodeEvidence(frozenset({"shared-1", "shared-2"})))
    assert found.identifier is None
    assert found.reason == REASON_AMBIGUOUS
    for part in (OURS, OTHER, "HEL-Kubernetes-49ab", "AMS-Kubernetes-77ff"):
        assert part in found.message


def test_host_names_decide_before_ip_addresses_which_repeat_across_private_networks() -> None:
    a = candidate(OURS, "a", {"a-slave-1"}, {"10.0.0.5"})
    b = candidate(OTHER, "b", {"b-slave-1"}, {"10.0.0.5"})
    evidence = NodeEvidence(frozenset({"a-slave-1"}), frozenset({"10.0.0.5"}))
    assert match_cluster([a, b], evidence).identifier == OURS
    # Without a host name match, an IP address found in one cluster only decides.
    c = candidate(OTHER, "c", {"c-slave-1"}, {"185.1.1.9"})
    assert match_cluster([a, c], NodeEvidence(addresses=frozenset({"10.0.0.5"}))).identifier == OURS


def test_no_match_and_no_nodes_say_what_to_set() -> None:
    a = candidate(OURS, "a", {"a-slave-1"})
    none = match_cluster([a], NodeEvidence(frozenset({"kind-worker"})))
    assert (none.identifier, none.reason) == (None, REASON_NO_MATCH)
    assert "clusterIdentifier" in none.message
    assert match_cluster([a], NodeEvidence()).reason == REASON_NO_NODES


def test_node_evidence_reads_names_hostname_labels_and_addresses() -> None:
    node = {
        "metadata": {"name": "Web-1", "labels": {"kubernetes.io/hostname": "web-1.example"}},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.7"},
                {"type": "Hostname", "address": "WEB-1.local"},
            ]
        },
    }
    evidence = node_evidence([node])
    assert evidence.hostnames == {"web-1", "web-1.example", "web-1.local"}
    assert evidence.addresses == {"10.0.0.7"}


HOSTS = st.sets(st.sampled_from([f"h{i}" for i in range(8)]), max_size=4)


@given(st.lists(HOSTS, min_size=0, max_size=4), HOSTS)
def test_a_cluster_is_named_only_when_no_other_cluster_shares_the_evidence(
    clusters: list[set[str]], here: set[str]
) -> None:
    candidates = [candidate(f"id-{i}", f"c{i}", hosts) for i, hosts in enumerate(clusters)]
    found = match_cluster(candidates, NodeEvidence(frozenset(here)))
    matching = [c.identifier for c in candidates if c.hostnames & here]
    if found.identifier is not None:
        assert matching == [found.identifier]
    else:
        assert len(matching) != 1
        if len(matching) > 1:
            assert found.reason == REASON_AMBIGUOUS
            assert all(m in found.message for m in matching)


# --- the NodeGroup controller against the simulator ------------------------------------------------------


@dataclass
class Env:
    env: Lifecycle
    sim: Simulator
    providers: Providers

    def reconciler(self, **options: Any) -> NodeGroupReconciler:
        return NodeGroupReconciler(
            self.env.deps(),
            providers=self.providers,
            vpsienodes=cast(SharedInformer, self.env.informers["vpsienodes"]),
            nodes=cast(SharedInformer, self.env.informers["nodes"]),
            nodegroups=cast(SharedInformer, self.env.informers["nodegroups"]),
            options=NodeGroupOptions(**options),
            rng=random.Random(1),
        )

    def kube_node(self, hostname: str) -> None:
        self.env.informers["nodes"].store.add({"kind": "Node", "metadata": {"name": hostname.lower()}})

    def worker_hostnames(self, cluster: str) -> list[str]:
        return [n.hostname for n in self.sim.state.nodes.values() if n.cluster == cluster and n.group_id]

    def status(self, name: str) -> Obj:
        obj = self.env.get("nodegroups", name)
        assert obj is not None
        return dict(obj.get("status") or {})

    def condition(self, name: str, type_: str) -> Obj:
        return next(c for c in self.status(name).get("conditions") or [] if c["type"] == type_)


def cluster(identifier: str, name: str, groups: list[tuple[str, int, int]]) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "name": name,
        "groups": [{"name": g, "size": size, "nodes": nodes} for g, size, nodes in groups],
    }


@asynccontextmanager
async def simulated(*clusters: dict[str, Any]) -> AsyncIterator[Env]:
    async with running_simulator(sim_config(clusters=list(clusters), delays={"boot_seconds": 0})) as (
        sim,
        url,
    ):
        client = VPSieClient(
            VPSieClientConfig(base_url=url, api_token=API_TOKEN),
            clock=RealClock(),
            registry=CollectorRegistry(),
        )
        async with client:
            yield Env(Lifecycle(), sim, Providers(client))


def managed_group(name: str, managed: Obj, *, min_nodes: int = 0) -> Obj:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {
            "name": name,
            "uid": f"ng-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "finalizers": ["autoscaler.vpsie.com/nodegroup"],
        },
        "spec": {"minNodes": min_nodes, "maxNodes": 5, "managed": managed, "template": {}},
    }


def created_records(env: Env) -> list[VPSieNode]:
    return [VPSieNode.from_k8s(o) for o in env.env.informers["vpsienodes"].store.list()]


async def test_a_group_without_cluster_and_size_finds_both_and_its_new_nodes_carry_them() -> None:
    async with simulated(
        cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 1), ("GRP-Advanced", ADVANCED, 0)]),
        cluster(OTHER, "AMS-Kubernetes-77ff", [("GRP-Standard", STANDARD, 1)]),
    ) as env:
        for host in env.worker_hostnames(OURS):
            env.kube_node(host)
        env.env.put(managed_group("web", {"nodeGroupName": "GRP-Advanced"}, min_nodes=1))
        await env.reconciler().reconcile(Request("web"))
        found = env.status("web")["managed"]
        assert found["clusterIdentifier"] == OURS
        assert found["clusterName"] == "HEL-Kubernetes-49ab"
        assert found["clusterFrom"] == "nodes"
        assert found["sizeId"] == ADVANCED
        assert env.condition("web", "SourceResolved")["status"] == "True"
        (record,) = created_records(env)  # minNodes: made from the resolved source
        assert record.spec.managed is not None
        assert (record.spec.managed.cluster_identifier, record.spec.managed.size_id) == (OURS, ADVANCED)
        assert env.env.world.recorder.reasons("SourceResolved", "web")  # a Normal Event
        # The planners see the same source.
        obj = env.env.get("nodegroups", "web")
        assert obj is not None
        effective = NodeGroup.from_k8s(obj).with_resolved_source().spec.managed
        assert effective is not None
        assert effective.cluster_identifier == OURS


async def test_two_clusters_with_nodes_here_are_a_condition_naming_both_and_nothing_is_created() -> None:
    async with simulated(
        cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 1)]),
        cluster(OTHER, "AMS-Kubernetes-77ff", [("GRP-Standard", STANDARD, 1)]),
    ) as env:
        for host in env.worker_hostnames(OURS) + env.worker_hostnames(OTHER):
            env.kube_node(host)
        env.env.put(managed_group("web", {"nodeGroupName": "GRP-Standard"}, min_nodes=1))
        await env.reconciler().reconcile(Request("web"))
        resolved = env.condition("web", "SourceResolved")
        assert (resolved["status"], resolved["reason"]) == ("False", REASON_AMBIGUOUS)
        assert "HEL-Kubernetes-49ab" in resolved["message"]
        assert "AMS-Kubernetes-77ff" in resolved["message"]
        assert env.condition("web", "Ready")["status"] == "False"
        assert "managed" not in env.status("web")
        assert created_records(env) == []


async def test_a_size_that_disagrees_with_the_vpsie_group_is_a_condition_and_an_event_and_never_planned() -> (
    None
):
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 0)])) as env:
        env.env.put(
            managed_group(
                "web",
                {"clusterIdentifier": OURS, "nodeGroupName": "GRP-Standard", "sizeId": ADVANCED},
                min_nodes=1,
            )
        )
        await env.reconciler().reconcile(Request("web"))
        mismatch = env.condition("web", "SizeMismatch")
        assert mismatch["status"] == "True"
        assert str(ADVANCED) in mismatch["message"]
        assert str(STANDARD) in mismatch["message"]
        assert env.env.world.recorder.reasons("SizeMismatch", "web")
        assert env.status("web")["managed"]["sizeId"] == STANDARD
        (record,) = created_records(env)
        assert record.spec.managed is not None
        assert record.spec.managed.size_id == STANDARD


async def test_the_setting_and_then_the_secret_hint_name_the_cluster_without_matching() -> None:
    async with simulated(
        cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 0)]),
        cluster(OTHER, "AMS-Kubernetes-77ff", [("GRP-Standard", STANDARD, 0)]),
    ) as env:
        env.env.put(managed_group("web", {"nodeGroupName": "GRP-Standard"}))
        await env.reconciler(cluster_identifier=OTHER).reconcile(Request("web"))
        assert env.status("web")["managed"]["clusterIdentifier"] == OTHER
        assert env.status("web")["managed"]["clusterFrom"] == "setting"
        env.env.put(managed_group("api", {"nodeGroupName": "GRP-Standard"}))
        env.providers.hints = SecretHints(cluster_identifier=OURS)
        await env.reconciler().reconcile(Request("api"))
        assert env.status("api")["managed"]["clusterFrom"] == "secret"
        assert env.status("api")["managed"]["clusterIdentifier"] == OURS
        assert not [r for r in env.sim.requests if r["path"].endswith("/cluster/all")]
