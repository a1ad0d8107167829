"""Caches → planner inputs: counting, the Node → VPSieNode lookup, and plan capacity from the
VPSie catalogue (read from the real simulator, cached, never on the hot path)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.vpsie import make_client, running_simulator, sim_config
from tests.unit.controllers.fakes import TAINT, StubCatalogue, World
from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.cloudsim.config import DEFAULT_CLUSTER, DEFAULT_DATACENTER, DEFAULT_OS
from vpsie_autoscaler.controllers.catalogue import CatalogueClient, PlanCatalogue, capacity_of
from vpsie_autoscaler.controllers.cluster_state import is_unschedulable
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.errors import ServerError

ADVANCED = "7d0c1f3e-9b2a-11ee-8c90-0050569c68dc"  # simulator plan: 4 cpu, 8192 MB, 160 GB, $40/month


def test_counting_follows_the_documented_rules() -> None:
    w = World()
    w.group("web")
    w.member("ready", "web")  # Ready with a Ready Node
    w.vpsienode("joining", "web", phase="Joining", node_name="joining")
    w.node("joining", "web", ready=False, vpsienode="joining")  # registered, not Ready yet
    w.vpsienode("pending", "web", phase="Pending")  # no Node yet
    w.vpsienode("draining", "web", phase="Draining", node_name="draining")
    w.node("draining", "web", vpsienode="draining", taints=[TAINT])
    w.vpsienode("failed", "web", phase="Failed")
    w.vpsienode("requested", "web", node_name="requested", annotations={DRAIN_REQUESTED_ANNOTATION: "t"})
    w.node("requested", "web", vpsienode="requested")
    w.node("unclaimed", "web")  # labelled with the group, no VPSieNode: exists, so it counts
    snap = w.builder().build(w.clock.now())
    group = snap.group("web")
    assert group is not None
    assert (group.size, group.in_flight, group.deleting) == (4, 2, 3)
    deleting = {n.name for n in snap.nodes if n.deleting}
    assert deleting == {"draining", "requested"}
    assert {n.name for n in snap.in_flight_nodes} == {"joining", "pending"}
    assert [n.name for n in snap.virtual_nodes] == ["pending"]
    assert snap.usage.nodes == 6  # five Nodes plus the VPSieNode without one


def test_node_to_vpsienode_lookup_uses_label_then_status_then_hostname() -> None:
    w = World()
    w.group("web")
    w.vpsienode("by-label", "web")
    w.node("n1", "web", vpsienode="by-label")
    w.vpsienode("by-status", "web", node_name="n2")
    w.node("n2", "web")
    w.vpsienode("n3", "web")  # hostname n3
    w.node("N3".lower(), "web")
    w.node("nobody", "web")
    snap = w.builder().build(w.clock.now())
    found = {node: vn.name for node, vn in snap.node_vpsienode.items()}
    assert found == {"n1": "by-label", "n2": "by-status", "n3": "n3"}


def test_unschedulable_means_the_schedulers_verdict_only() -> None:
    w = World()
    pod = w.pending_pod("p")
    assert is_unschedulable(pod)
    gated = w.pending_pod("gated")
    gated["status"]["conditions"][0]["reason"] = "SchedulingGated"
    assert not is_unschedulable(gated)
    bound = w.bound_pod("b", "n1")
    assert not is_unschedulable(bound)
    deleting = w.pending_pod("d")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not is_unschedulable(deleting)


def test_an_invalid_nodegroup_is_reported_not_fatal() -> None:
    w = World()
    bad = w.group("bad")
    bad["spec"]["minNodes"] = 5
    bad["spec"]["maxNodes"] = 1
    w.group("good")
    snap = w.builder().build(w.clock.now())
    assert [g.name for g in snap.groups] == ["good"]
    assert "minNodes must be less than or equal to maxNodes" in snap.group_errors["bad"]


def test_capacity_units() -> None:
    assert capacity_of(4, 8192, 160) == {"cpu": 4, "memory": "8192Mi", "ephemeral-storage": "160Gi"}
    assert capacity_of(None, 0, None) == {}


def vm_group() -> NodeGroup:
    return NodeGroup.from_k8s(
        {
            "metadata": {"name": "vms"},
            "spec": {
                "minNodes": 0,
                "maxNodes": 3,
                "vm": {
                    "resourceIdentifier": ADVANCED,
                    "osIdentifier": DEFAULT_OS,
                    "dcIdentifier": DEFAULT_DATACENTER,
                    "projectId": "p",
                },
            },
        }
    )


def managed_group(name: str) -> NodeGroup:
    return NodeGroup.from_k8s(
        {
            "metadata": {"name": "managed"},
            "spec": {
                "minNodes": 0,
                "maxNodes": 3,
                "managed": {"clusterIdentifier": DEFAULT_CLUSTER, "nodeGroupName": name, "sizeId": 57},
            },
        }
    )


async def test_plan_capacity_from_the_simulated_catalogue() -> None:
    clock = FakeClock()
    async with running_simulator(sim_config()) as (_, url), make_client(url, clock) as client:
        catalogue = PlanCatalogue(client, clock)
        vms, managed = vm_group(), managed_group("GRP-Advanced-c745")
        assert catalogue.facts(vms) is None  # never fetched on the hot path: only marked wanted
        assert catalogue.facts(managed) is None
        await catalogue.refresh()
        vm_facts = catalogue.facts(vms)
        assert vm_facts is not None
        assert vm_facts.capacity == {"cpu": 4, "memory": "8192Mi", "ephemeral-storage": "160Gi"}
        assert vm_facts.hourly_price == pytest.approx(40 / 730)
        managed_facts = catalogue.facts(managed)
        assert managed_facts is not None
        assert managed_facts.capacity == {"cpu": 4, "memory": "8192Mi", "ephemeral-storage": "160Gi"}

        missing = managed_group("no-such-group")
        catalogue.facts(missing)
        await catalogue.refresh()
        assert catalogue.facts(missing) is None
        assert catalogue.error(missing) == "the source's plan was not found in the VPSie catalogue"


class Flaky:
    """A catalogue client that can be switched off (VPSie down)."""

    def __init__(self, inner: CatalogueClient) -> None:
        self.inner = inner
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ServerError("VPSie is down", operation="list_plans")

    async def list_node_groups(self, cluster_identifier: str) -> list[models.K8sNodeGroup]:
        self._check()
        return await self.inner.list_node_groups(cluster_identifier)

    async def list_k8s_offers(self, dc_identifier: str) -> list[models.K8sOffer]:
        self._check()
        return await self.inner.list_k8s_offers(dc_identifier)

    async def list_plans(
        self, dc_identifier: str, os_identifier: str, category_identifier: str = ""
    ) -> list[models.Plan]:
        self._check()
        return await self.inner.list_plans(dc_identifier, os_identifier, category_identifier)


async def test_a_catalogue_outage_keeps_the_last_good_facts() -> None:
    clock = FakeClock()
    async with running_simulator(sim_config()) as (_, url), make_client(url, clock) as client:
        flaky = Flaky(client)
        catalogue = PlanCatalogue(flaky, clock)
        vms = vm_group()
        catalogue.facts(vms)
        await catalogue.refresh()
        flaky.down = True
        await catalogue.refresh()
        facts = catalogue.facts(vms)
        assert facts is not None
        assert facts.capacity["cpu"] == 4
        assert catalogue.error(vms) == "list_plans: VPSie is down"


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_the_refresher_fetches_a_new_group_at_once_and_retries_failures() -> None:
    clock = FakeClock()
    stub = StubCatalogue([models.Plan(identifier=ADVANCED, cpu=4, ram=8192, ssd=160, price=40.0)])
    catalogue = PlanCatalogue(stub, clock)
    changes: list[int] = []
    catalogue.on_change(lambda: changes.append(1))
    task = asyncio.ensure_future(catalogue.run())
    try:
        await _settle()
        stub.down = True
        catalogue.want_object(vm_group().to_k8s())  # the NodeGroup informer saw a new group
        await _settle()
        assert stub.calls == 1
        assert catalogue.facts(vm_group()) is None
        stub.down = False
        await clock.advance(29)
        assert stub.calls == 1
        await clock.advance(1)  # RETRY_SECONDS after the failure
        assert catalogue.facts(vm_group()) is not None
        assert changes == [1]  # scale-up is told to re-plan
        calls = stub.calls
        await clock.advance(269)  # no refetch until the full refresh, 300 s after the last one
        assert stub.calls == calls
        await clock.advance(2)
        assert stub.calls == calls + 1
        assert changes == [1]  # same facts: no re-plan
    finally:
        task.cancel()


def test_parsed_pods_are_reused_only_while_their_resource_version_is_unchanged() -> None:
    w = World()
    w.group("web")
    w.member("n1", "web")
    pod = w.bound_pod("p", "n1", cpu="500m")
    pod["metadata"]["resourceVersion"] = "1"
    builder = w.builder()
    first = builder.build(w.clock.now())
    again = builder.build(w.clock.now())
    assert first.nodes[0].pods[0] is again.nodes[0].pods[0]
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "1500m"
    pod["metadata"]["resourceVersion"] = "2"
    changed = builder.build(w.clock.now())
    assert changed.nodes[0].requested["cpu"] == 1500
