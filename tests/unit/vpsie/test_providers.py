"""The NodeProvider contract for managed node groups and plain VMs, against the simulator."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType
from typing import cast

import pytest
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import make_client
from tests.unit.vpsie.test_contract import ADVANCED_PLAN
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.bootstrap import decode_user_data, parse_kubelet_flags
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.managed import Claim, ManagedKubernetesProvider, MemoryClaimStore
from vpsie_autoscaler.vpsie.models import K8sClusterDetail, K8sNodeGroup
from vpsie_autoscaler.vpsie.provider import (
    CreateRequest,
    InstanceState,
    ManagedSource,
    NodeProvider,
    Taint,
    VMSource,
)
from vpsie_autoscaler.vpsie.sim.app import Simulator
from vpsie_autoscaler.vpsie.sim.config import (
    DEFAULT_CLUSTER,
    DEFAULT_DATACENTER,
    DEFAULT_OS,
    DEFAULT_PROJECT,
    SimConfig,
)
from vpsie_autoscaler.vpsie.sim.faults import FaultKind, FaultSpec
from vpsie_autoscaler.vpsie.vms import VMProvider

BOOT = 5.0
DELETE = 2.0


async def managed_source(client: VPSieClient) -> ManagedSource:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    return ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=group.id, group_name=group.group_name)


VM_SOURCE = VMSource(
    hostname_prefix="asg-general-",
    resource_identifier=ADVANCED_PLAN,
    os_identifier=DEFAULT_OS,
    dc_identifier=DEFAULT_DATACENTER,
    project_identifier=DEFAULT_PROJECT,
    tags=("k8s",),
)


# --- managed ---------------------------------------------------------------------------------------


async def test_managed_create_is_pending_under_the_requested_hostname_then_bound(
    client: VPSieClient, sim_clock: FakeClock
) -> None:
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    source = await managed_source(client)
    await provider.create(CreateRequest(hostname="ng-general-abc12", source=source))
    pending = await provider.get(source, "NG-GENERAL-ABC12")
    assert pending is not None
    assert (pending.state, pending.identifier) == (InstanceState.PENDING, None)
    await sim_clock.advance(BOOT)
    instance = await provider.get(source, "ng-general-abc12")
    assert instance is not None
    assert instance.state is InstanceState.RUNNING
    assert instance.hostname.startswith("HEL-Kubernetes-49ab-slave-")
    assert instance.node_name == instance.hostname.lower()
    assert instance.requested_hostname == "ng-general-abc12"
    assert await provider.get(source, instance.node_name) == instance
    assert [i.hostname for i in await provider.list(source)] == [instance.hostname]


async def test_managed_create_is_idempotent_by_hostname(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    source = await managed_source(client)
    request = CreateRequest(hostname="ng-general-once1", source=source)
    await provider.create(request)
    await provider.create(request)
    await sim_clock.advance(BOOT)
    await provider.create(request)
    assert len(sim.state.nodes) == 2  # the master and one worker


async def test_two_creates_bind_to_two_distinct_nodes(client: VPSieClient, sim_clock: FakeClock) -> None:
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    source = await managed_source(client)
    await provider.create(CreateRequest(hostname="ng-a", source=source))
    await sim_clock.advance(1)
    await provider.create(CreateRequest(hostname="ng-b", source=source))
    await sim_clock.advance(BOOT)
    a, b = await provider.get(source, "ng-a"), await provider.get(source, "ng-b")
    assert a is not None
    assert b is not None
    assert a.hostname != b.hostname
    assert {a.state, b.state} == {InstanceState.RUNNING}


async def test_managed_delete_removes_the_node_and_a_second_delete_succeeds(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, mode: str
) -> None:
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    source = await managed_source(client)
    await provider.create(CreateRequest(hostname="ng-del", source=source))
    await sim_clock.advance(BOOT)
    instance = await provider.get(source, "ng-del")
    assert instance is not None
    assert (instance.identifier is None) == (mode == "strict")  # the SDK node shape has no identifier
    await provider.delete(instance)
    await sim_clock.advance(DELETE)
    assert await provider.list(source) == []
    assert await provider.get(source, "ng-del") is None
    await provider.delete(instance)  # gone already: still a success


async def test_managed_delete_of_a_not_yet_created_node_asks_to_wait(
    client: VPSieClient, sim_clock: FakeClock
) -> None:
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    source = await managed_source(client)
    await provider.create(CreateRequest(hostname="ng-early", source=source))
    pending = await provider.get(source, "ng-early")
    assert pending is not None
    with pytest.raises(errors.InstanceNotReady):
        await provider.delete(pending)


async def test_managed_provider_keeps_groups_apart(
    client: VPSieClient, sim_clock: FakeClock, mode: str
) -> None:
    """With several groups, nodes are attributed by group id or size; the bare SDK shape has neither,
    so in strict mode nothing is attributed and the requests stay pending (never mis-bound)."""
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    first = await managed_source(client)
    other = await client.create_node_group(DEFAULT_CLUSTER, "ng-highmem", 61)
    assert other is not None
    second = ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=other.id)
    await provider.create(CreateRequest(hostname="ng-1", source=first))
    await provider.create(CreateRequest(hostname="ng-2", source=second))
    await sim_clock.advance(BOOT)
    [one] = await provider.list(first)
    [two] = await provider.list(second)
    if mode == "strict":
        assert (one.state, one.hostname, two.state, two.hostname) == (
            InstanceState.PENDING,
            "ng-1",
            InstanceState.PENDING,
            "ng-2",
        )
        return
    assert (one.requested_hostname, one.ram_mb) == ("ng-1", 8192)
    assert (two.requested_hostname, two.ram_mb) == ("ng-2", 32768)


async def test_managed_create_in_an_unknown_group_is_not_found(client: VPSieClient) -> None:
    provider = ManagedKubernetesProvider(client)
    with pytest.raises(errors.NotFound):
        await provider.create(
            CreateRequest(hostname="x", source=ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=1))
        )


async def test_providers_refuse_the_other_source_kind(client: VPSieClient) -> None:
    with pytest.raises(TypeError):
        await ManagedKubernetesProvider(client).list(VM_SOURCE)
    with pytest.raises(TypeError):
        await VMProvider(client).list(ManagedSource(cluster_identifier="c", group_id=1))


# --- VMs -------------------------------------------------------------------------------------------


async def test_vm_create_pending_then_running_with_labels_and_taints_in_boot_data(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    labels = MappingProxyType({"workload": "batch", "autoscaler.vpsie.com/nodegroup": "general"})
    taints = (
        Taint(key="dedicated", value="batch", effect="NoSchedule"),
        Taint(key="spot", effect="NoExecute"),
    )
    await provider.create(
        CreateRequest(hostname="asg-general-7f3k2", source=VM_SOURCE, labels=labels, taints=taints)
    )
    pending = await provider.get(VM_SOURCE, "ASG-GENERAL-7F3K2")
    assert pending is not None
    assert (pending.state, pending.identifier) == (InstanceState.PENDING, None)
    await sim_clock.advance(1)
    creating = await provider.get(VM_SOURCE, "asg-general-7f3k2")
    assert creating is not None
    assert creating.state is InstanceState.PENDING
    assert creating.identifier is not None
    await sim_clock.advance(BOOT)
    [running] = await provider.list(VM_SOURCE)
    assert (running.state, running.cpu, running.ram_mb, running.disk_gb) == (
        InstanceState.RUNNING,
        4,
        8192,
        160,
    )
    [vm] = sim.state.vms.values()
    got_labels, got_taints = parse_kubelet_flags(decode_user_data(vm.user_data))
    assert got_labels == dict(labels)
    assert got_taints == list(taints)
    assert vm.tags == ["k8s"]


async def test_vm_create_is_idempotent_by_hostname(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    request = CreateRequest(hostname="asg-general-idem1", source=VM_SOURCE)
    await provider.create(request)
    await provider.create(request)  # still pending
    await sim_clock.advance(BOOT)
    await provider.create(request)  # running
    assert len(sim.state.vms) == 1


async def test_vm_hostname_must_carry_the_group_prefix(client: VPSieClient) -> None:
    with pytest.raises(ValueError, match="prefix"):
        await VMProvider(client).create(CreateRequest(hostname="other-1", source=VM_SOURCE))


async def test_vm_list_only_shows_the_groups_vms(client: VPSieClient, sim_clock: FakeClock) -> None:
    provider = VMProvider(client)
    other = VMSource(**{**VM_SOURCE.__dict__, "hostname_prefix": "asg-gpu-"})
    await provider.create(CreateRequest(hostname="asg-general-1", source=VM_SOURCE))
    await provider.create(CreateRequest(hostname="asg-gpu-1", source=other))
    await sim_clock.advance(BOOT)
    assert [i.hostname for i in await provider.list(VM_SOURCE)] == ["asg-general-1"]


async def test_vm_delete_and_delete_again(client: VPSieClient, sim_clock: FakeClock) -> None:
    provider = VMProvider(client, delete_password="pw")
    await provider.create(CreateRequest(hostname="asg-general-del", source=VM_SOURCE))
    await sim_clock.advance(BOOT)
    instance = await provider.get(VM_SOURCE, "asg-general-del")
    assert instance is not None
    await provider.delete(instance)
    await sim_clock.advance(DELETE)
    assert await provider.list(VM_SOURCE) == []
    await provider.delete(instance)


async def test_vm_delete_while_pending_asks_to_wait(client: VPSieClient) -> None:
    provider = VMProvider(client)
    await provider.create(CreateRequest(hostname="asg-general-early", source=VM_SOURCE))
    pending = await provider.get(VM_SOURCE, "asg-general-early")
    assert pending is not None
    with pytest.raises(errors.InstanceNotReady):
        await provider.delete(pending)


async def test_stopped_vm_is_reported_stopped(client: VPSieClient, sim_clock: FakeClock) -> None:
    provider = VMProvider(client)
    await provider.create(CreateRequest(hostname="asg-general-stop", source=VM_SOURCE))
    await sim_clock.advance(BOOT)
    instance = await provider.get(VM_SOURCE, "asg-general-stop")
    assert instance is not None
    assert instance.identifier is not None
    await client.stop_vm(instance.identifier)
    stopped = await provider.get(VM_SOURCE, "asg-general-stop")
    assert stopped is not None
    assert stopped.state is InstanceState.STOPPED


# --- claims: crash safety and abandoned requests -----------------------------------------------------


async def test_a_persisted_claim_survives_a_restart_and_prevents_a_second_node(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    store = MemoryClaimStore()  # stands for a store that persists (e.g. in VPSieNode annotations)
    source = await managed_source(client)
    request = CreateRequest(hostname="ng-crash", source=source)
    await ManagedKubernetesProvider(client, clock=sim_clock, claims=store).create(request)
    # The process dies here; a new one starts with the same store before the node appeared.
    restarted = ManagedKubernetesProvider(client, clock=sim_clock, claims=store)
    pending = await restarted.get(source, "ng-crash")
    assert pending is not None
    assert pending.state is InstanceState.PENDING
    await restarted.create(request)  # the controller's "create unless found" finds the claim
    await sim_clock.advance(BOOT)
    instance = await restarted.get(source, "ng-crash")
    assert instance is not None
    assert instance.state is InstanceState.RUNNING
    assert len([n for n in sim.state.nodes.values() if n.group_id]) == 1
    assert store.claims["ng-crash"].bound == instance.node_name


def _in_doubt(store: MemoryClaimStore, hostname: str) -> None:
    """Turn a stored claim back into the write-ahead record a process leaves when it dies during add-node."""
    store.claims[hostname] = replace(store.claims[hostname], sent=False, bound=None)


async def test_a_claim_whose_add_node_never_happened_is_redone_not_adopted(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    store = MemoryClaimStore()
    source = await managed_source(client)
    # The dying leader wrote the claim for ng-lost (the group had no worker yet), then was killed
    # before add-node left the process.
    store.claims["ng-lost"] = Claim(
        requested="ng-lost",
        source=source,
        baseline=frozenset(),
        created=sim_clock.now(),
        sent=False,
    )
    restarted = ManagedKubernetesProvider(client, clock=sim_clock, claims=store)
    assert await restarted.get(source, "ng-lost") is None  # nothing to adopt: nobody asked VPSie
    await restarted.create(CreateRequest(hostname="ng-next", source=source))
    await sim_clock.advance(1)
    await restarted.create(CreateRequest(hostname="ng-lost", source=source))
    await sim_clock.advance(BOOT)
    nxt, lost = await restarted.get(source, "ng-next"), await restarted.get(source, "ng-lost")
    assert nxt is not None
    assert lost is not None
    assert nxt.hostname != lost.hostname  # ng-lost did not take the node asked for ng-next
    assert {nxt.state, lost.state} == {InstanceState.RUNNING}
    assert len([n for n in sim.state.nodes.values() if n.group_id]) == 2


async def test_a_claim_in_doubt_whose_add_node_reached_vpsie_binds_its_node_without_a_second_call(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    store = MemoryClaimStore()
    source = await managed_source(client)
    await ManagedKubernetesProvider(client, clock=sim_clock, claims=store).create(
        CreateRequest(hostname="ng-sent", source=source)
    )
    _in_doubt(store, "ng-sent")  # killed after VPSie took the call, before the answer was recorded
    await sim_clock.advance(BOOT)
    restarted = ManagedKubernetesProvider(client, clock=sim_clock, claims=store)
    await restarted.create(CreateRequest(hostname="ng-sent", source=source))
    instance = await restarted.get(source, "ng-sent")
    assert instance is not None
    assert instance.state is InstanceState.RUNNING
    assert len([n for n in sim.state.nodes.values() if n.group_id]) == 1
    assert store.claims["ng-sent"].bound == instance.node_name
    assert store.claims["ng-sent"].sent


async def test_a_node_that_never_appears_is_abandoned_after_the_grace(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.NEVER_BOOT, path="*/add/slave/group/*"))
    store = MemoryClaimStore()
    provider = ManagedKubernetesProvider(
        client, clock=sim_clock, claims=store, abandon_after=timedelta(minutes=30)
    )
    source = await managed_source(client)
    await provider.create(CreateRequest(hostname="ng-ghost", source=source))
    pending = await provider.get(source, "ng-ghost")
    assert pending is not None
    await sim_clock.advance(29 * 60)
    with pytest.raises(errors.InstanceNotReady):
        await provider.delete(pending)
    await sim_clock.advance(2 * 60)
    await provider.delete(pending)
    assert await provider.get(source, "ng-ghost") is None
    assert store.claims == {}


async def test_a_failed_add_node_leaves_no_claim(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    sim.faults.add(
        FaultSpec(kind=FaultKind.ERROR_200, path="*/add/slave/group/*", message="Resource is locked")
    )
    provider = ManagedKubernetesProvider(client, clock=sim_clock)
    source = await managed_source(client)
    with pytest.raises(errors.BusinessRuleError):
        await provider.create(CreateRequest(hostname="ng-refused", source=source))
    assert await provider.get(source, "ng-refused") is None


async def test_a_timed_out_add_node_keeps_its_claim(sim_config: SimConfig) -> None:
    sim = Simulator(sim_config, clock=RealClock(), seed=3)
    sim.faults.add(FaultSpec(kind=FaultKind.LATENCY, path="*/add/slave/group/*", seconds=1.0))
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with make_client(server, FakeClock(), request_timeout=0.3) as client:
            provider = ManagedKubernetesProvider(client)
            source = await managed_source(client)
            with pytest.raises(errors.VPSieTimeout):
                await provider.create(CreateRequest(hostname="ng-unsure", source=source))
            pending = await provider.get(source, "ng-unsure")
            assert pending is not None  # outcome unknown: never ask VPSie twice
            assert pending.state is InstanceState.PENDING
    finally:
        await server.close()


async def test_a_vm_stuck_in_pending_is_abandoned_after_the_grace(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.NEVER_BOOT, path="/apps/v2/vm", method="POST"))
    provider = VMProvider(client, clock=sim_clock, abandon_after=timedelta(minutes=30))
    await provider.create(CreateRequest(hostname="asg-general-ghost", source=VM_SOURCE))
    pending = await provider.get(VM_SOURCE, "asg-general-ghost")
    assert pending is not None
    with pytest.raises(errors.InstanceNotReady):
        await provider.delete(pending)
    await sim_clock.advance(31 * 60)
    await provider.delete(pending)


class ShapeClient:
    """Answers cluster detail and groups in a given node shape (no simulator needed)."""

    def __init__(self, nodes: list[dict[str, object]]) -> None:
        self.nodes = nodes

    async def get_k8s_cluster(self, cluster_identifier: str) -> K8sClusterDetail:
        return K8sClusterDetail.model_validate({"identifier": cluster_identifier, "nodes": self.nodes})

    async def list_node_groups(self, cluster_identifier: str) -> list[K8sNodeGroup]:
        return [
            K8sNodeGroup(id=1, group_name="small", cpu=2, ram=4096, ssd=80),
            K8sNodeGroup(id=2, group_name="big", cpu=8, ram=16384, ssd=320),
        ]


async def test_without_group_ids_nodes_are_attributed_by_size() -> None:
    """AS node shape: sizes but no group. One group per size makes the size a group key."""
    nodes: list[dict[str, object]] = [
        {"identifier": "a", "hostname": "c-slave-aaaa", "role": "slave", "cpu": 2, "ram": 4096, "disk": 80},
        {
            "identifier": "b",
            "hostname": "c-slave-bbbb",
            "role": "slave",
            "cpu": "8",
            "ram": 16384,
            "disk": 320,
        },
        {"identifier": "m", "hostname": "c-master", "role": "master", "cpu": 2, "ram": 4096, "disk": 80},
    ]
    provider = ManagedKubernetesProvider(cast(VPSieClient, ShapeClient(nodes)))
    small = await provider.list(ManagedSource(cluster_identifier="c", group_id=1))
    big = await provider.list(ManagedSource(cluster_identifier="c", group_id=2))
    assert [i.hostname for i in small] == ["c-slave-aaaa"]
    assert [i.hostname for i in big] == ["c-slave-bbbb"]


async def test_concurrent_creates_of_one_hostname_ask_vpsie_once(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    managed = ManagedKubernetesProvider(client, clock=sim_clock)
    vms = VMProvider(client)
    source = await managed_source(client)
    same_node = CreateRequest(hostname="ng-race", source=source)
    same_vm = CreateRequest(hostname="asg-general-race", source=VM_SOURCE)
    await asyncio.gather(
        *(managed.create(same_node) for _ in range(5)), *(vms.create(same_vm) for _ in range(5))
    )
    assert len([r for r in sim.requests if "/add/slave/" in str(r["path"])]) == 1
    assert len([r for r in sim.requests if r["path"] == "/apps/v2/vm" and r["method"] == "POST"]) == 1


def test_both_providers_satisfy_the_node_provider_protocol(client: VPSieClient) -> None:
    providers: list[NodeProvider] = [ManagedKubernetesProvider(client), VMProvider(client)]  # checked by mypy
    assert len(providers) == 2
