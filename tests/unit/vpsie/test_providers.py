"""The stateless NodeProvider contract for managed node groups and plain VMs, against the simulator.

A provider reads and mutates and remembers nothing: ``launch`` sends one create and reports a typed
outcome (Done, NotDone, Unknown), ``delete`` targets one instance by identifier, ``list`` reports what
VPSie has. What the simulator received (its request log) and what it holds (its state) are the
evidence: a lost answer must be reported Unknown exactly when the mutation did happen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, cast

import pytest

from tests.support.vpsie import drive, make_client, running_simulator
from tests.unit.vpsie.test_contract import ADVANCED_PLAN
from vpsie_autoscaler.cloudsim.app import LOGIN_PATH, Simulator
from vpsie_autoscaler.cloudsim.config import (
    DEFAULT_CLUSTER,
    DEFAULT_DATACENTER,
    DEFAULT_OS,
    DEFAULT_PROJECT,
    SimConfig,
)
from vpsie_autoscaler.cloudsim.faults import FaultKind, FaultSpec
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.bootstrap import decode_user_data, parse_kubelet_flags
from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClient
from vpsie_autoscaler.vpsie.managed import ManagedKubernetesProvider
from vpsie_autoscaler.vpsie.models import K8sClusterDetail, K8sNodeGroup
from vpsie_autoscaler.vpsie.provider import (
    CreateRequest,
    Instance,
    InstanceState,
    ManagedSource,
    MutationResult,
    NodeProvider,
    Outcome,
    Taint,
    VMSource,
)
from vpsie_autoscaler.vpsie.vms import VMProvider

BOOT = 5.0
DELETE = 2.0
ADD_NODE = "*/add/slave/group/*"
NODE_DELETE = "*/delete/slave*"
VM_PATH = "/apps/v2/vm"
OWNER_TAGS = ("vpsie-autoscaler:cluster=uid-1", "vpsie-autoscaler:nodegroup=web")


def vm_source(prefix: str = "web-") -> VMSource:
    return VMSource(
        hostname_prefix=prefix,
        resource_identifier=ADVANCED_PLAN,
        os_identifier=DEFAULT_OS,
        dc_identifier=DEFAULT_DATACENTER,
        project_identifier=DEFAULT_PROJECT,
        tags=("k8s",),
    )


WEB = vm_source()


async def managed_source(client: VPSieClient) -> ManagedSource:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    return ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=group.id, group_name=group.group_name)


class Log:
    """The simulator's request log from a point on (the log in-process is what ``/_sim/requests`` serves)."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.start = len(sim.requests)

    def entries(self) -> list[dict[str, Any]]:
        return [r for r in list(self.sim.requests)[self.start :] if r["path"] != LOGIN_PATH]

    def calls(self) -> list[tuple[str, str]]:
        return [(str(r["method"]), str(r["path"])) for r in self.entries()]

    def mutations(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.calls() if m != "GET"]


def workers(sim: Simulator) -> list[Any]:
    return [n for n in sim.state.nodes.values() if n.group_id is not None]


def all_reduce_calls(sim: Simulator) -> list[dict[str, Any]]:
    return [r for r in sim.requests if "reduce" in str(r["path"])]


def lost(kind: FaultKind, method: str, path: str, **kw: Any) -> FaultSpec:
    return FaultSpec(kind=kind, method=method, path=path, **kw)


# --- managed: launch ---------------------------------------------------------------------------------


async def test_managed_launch_is_done_and_the_node_appears_after_boot(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    log = Log(sim)
    result = await provider.launch(CreateRequest(hostname="web-abc12", source=source))
    assert result == MutationResult(Outcome.DONE)
    assert result.sent
    # One add-node and nothing else: no read before the launch, no retry after it.
    assert [m for m, p in log.calls()] == ["POST"]
    assert "/add/slave/group/" in log.calls()[0][1]
    assert await provider.list(source) == []  # VPSie lists a node only once it has booted
    await sim_clock.advance(BOOT)
    [instance] = await provider.list(source)
    assert instance.state is InstanceState.RUNNING
    assert instance.hostname.startswith("HEL-Kubernetes-49ab-slave-")  # VPSie names it, not us
    assert instance.node_name == instance.hostname.lower()


@pytest.mark.parametrize(
    "fault",
    [
        lost(FaultKind.REPLY_LOST, "POST", ADD_NODE, lost_as="502"),
        lost(FaultKind.REPLY_LOST, "POST", ADD_NODE, lost_as="504"),
        lost(FaultKind.REPLY_LOST, "POST", ADD_NODE, lost_as="504_json"),
        lost(FaultKind.REPLY_LOST, "POST", ADD_NODE, lost_as="reset"),
    ],
    ids=lambda f: f"reply_lost-{f.lost_as}",
)
async def test_a_lost_add_node_answer_is_unknown_and_the_node_exists(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, fault: FaultSpec
) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    sim.faults.add(fault)
    log = Log(sim)
    result = await provider.launch(CreateRequest(hostname="web-abc12", source=source))
    assert result.outcome is Outcome.UNKNOWN
    assert result.sent
    assert result.error is not None
    assert len(log.mutations()) == 1  # never asked twice
    assert len(workers(sim)) == 1  # VPSie did add the node
    await sim_clock.advance(BOOT)
    assert len(await provider.list(source)) == 1


@asynccontextmanager
async def short_timeout_client(
    config: SimConfig, sim_clock: FakeClock
) -> AsyncIterator[tuple[Simulator, VPSieClient, FakeClock]]:
    """A simulator and a client that gives up after 1 s (a late answer parks on the sim's clock).

    Setup calls go through ``drive``: under load one of them may time out too, and its retry back-off
    sleeps on the client's fake clock, which only ``drive`` moves."""
    client_clock = FakeClock()
    async with running_simulator(config, clock=sim_clock) as (sim, url):
        try:
            async with make_client(url, client_clock, request_timeout=1.0) as client:
                yield sim, client, client_clock
        finally:
            await sim_clock.advance(3600)  # release the late answers so the server can stop


async def test_a_late_add_node_answer_is_unknown_and_the_node_exists(
    sim_config: SimConfig, sim_clock: FakeClock
) -> None:
    async with short_timeout_client(sim_config, sim_clock) as (sim, client, client_clock):
        provider = ManagedKubernetesProvider(client)
        source = await drive(client_clock, managed_source(client))
        sim.faults.add(lost(FaultKind.LATE_REPLY, "POST", ADD_NODE, seconds=60))
        log = Log(sim)
        result = await provider.launch(CreateRequest(hostname="web-abc12", source=source))
        assert result.outcome is Outcome.UNKNOWN
        assert isinstance(result.error, errors.VPSieTimeout)
        assert len(workers(sim)) == 1
        assert len(log.mutations()) <= 1  # the request was sent once (logged once it is answered)


@pytest.mark.parametrize(
    "fault",
    [
        FaultSpec(kind=FaultKind.ERROR, method="POST", path=ADD_NODE, status=422, message="Invalid group"),
        FaultSpec(kind=FaultKind.ERROR, method="POST", path=ADD_NODE, status=400),
        FaultSpec(kind=FaultKind.ERROR_200, method="POST", path=ADD_NODE, message="Resource is locked"),
        FaultSpec(kind=FaultKind.RATE_LIMIT, method="POST", path=ADD_NODE, retry_after=5),
    ],
    ids=["error-422", "error-400", "error_200", "rate_limit"],
)
async def test_a_refused_add_node_is_not_done_and_adds_nothing(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, fault: FaultSpec
) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    sim.faults.add(fault)
    log = Log(sim)
    result = await provider.launch(CreateRequest(hostname="web-abc12", source=source))
    assert result.outcome is Outcome.NOT_DONE
    assert not result.sent
    assert result.detail  # says why
    assert len(log.mutations()) == 1  # refusals are not retried by the provider
    assert workers(sim) == []


async def test_an_add_node_answered_with_a_server_error_counts_as_sent(
    client: VPSieClient, sim: Simulator
) -> None:
    """A 5xx may come from a backend that failed after acting: unknown, never asked again."""
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    sim.faults.add(FaultSpec(kind=FaultKind.ERROR, method="POST", path=ADD_NODE, status=500))
    log = Log(sim)
    result = await provider.launch(CreateRequest(hostname="web-abc12", source=source))
    assert result.outcome is Outcome.UNKNOWN
    assert len(log.mutations()) == 1


async def test_with_the_circuit_open_a_launch_is_not_done_and_nothing_is_sent(
    client: VPSieClient, sim: Simulator
) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    for _ in range(client.config.breaker_failure_threshold):
        client.breaker.record_failure()
    log = Log(sim)
    result = await provider.launch(CreateRequest(hostname="web-abc12", source=source))
    assert result.outcome is Outcome.NOT_DONE
    assert isinstance(result.error, errors.CircuitOpen)
    assert log.calls() == []
    assert workers(sim) == []


# --- managed: delete and list --------------------------------------------------------------------------


async def two_running_workers(
    provider: ManagedKubernetesProvider, source: ManagedSource, sim_clock: FakeClock
) -> list[Instance]:
    for name in ("web-aaaaa", "web-bbbbb"):
        assert (await provider.launch(CreateRequest(hostname=name, source=source))).outcome is Outcome.DONE
    await sim_clock.advance(BOOT)
    nodes = await provider.list(source)
    assert len(nodes) == 2
    return nodes


async def test_managed_delete_removes_exactly_the_given_node_and_never_reduces(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, mode: str
) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    first, second = await two_running_workers(provider, source, sim_clock)
    log = Log(sim)
    result = await provider.delete(second)
    if mode == "strict":
        # The SDK node shape carries no identifier: nothing can be targeted, so nothing is sent
        # (VPSie choosing a victim with reduce is never an option).
        assert second.identifier is None
        assert result.outcome is Outcome.NOT_DONE
        assert log.mutations() == []
        assert all_reduce_calls(sim) == []
        return
    assert result.outcome is Outcome.DONE
    [(method, path)] = log.mutations()
    assert method == "DELETE"
    assert "reduce" not in path
    await sim_clock.advance(DELETE)
    assert [i.hostname for i in await provider.list(source)] == [first.hostname]
    assert all_reduce_calls(sim) == []


async def test_deleting_a_managed_node_that_is_already_gone_is_done(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, mode: str
) -> None:
    if mode == "strict":
        pytest.skip("the SDK node shape has no identifier to delete by")
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    _, victim = await two_running_workers(provider, source, sim_clock)
    assert (await provider.delete(victim)).outcome is Outcome.DONE
    await sim_clock.advance(DELETE)
    assert victim.hostname not in {i.hostname for i in await provider.list(source)}
    assert victim.identifier not in sim.state.nodes  # VPSie no longer knows it
    log = Log(sim)
    again = await provider.delete(victim)
    assert again.outcome is Outcome.DONE
    assert [m for m, _ in log.mutations()] == ["DELETE"]
    assert len(await provider.list(source)) == 1
    assert all_reduce_calls(sim) == []


async def test_a_lost_managed_delete_answer_is_unknown_and_the_node_goes(
    client: VPSieClient, client_clock: FakeClock, sim: Simulator, sim_clock: FakeClock, mode: str
) -> None:
    if mode == "strict":
        pytest.skip("the SDK node shape has no identifier to delete by")
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    keep, victim = await two_running_workers(provider, source, sim_clock)
    sim.faults.add(lost(FaultKind.REPLY_LOST, "DELETE", NODE_DELETE, lost_as="504"))
    result = await drive(client_clock, provider.delete(victim))
    assert result.outcome is Outcome.UNKNOWN
    await sim_clock.advance(DELETE)
    assert [i.hostname for i in await provider.list(source)] == [keep.hostname]
    assert all_reduce_calls(sim) == []


async def test_a_managed_node_without_identifier_is_not_deleted(client: VPSieClient, sim: Simulator) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    log = Log(sim)
    ghost = Instance(hostname="x-slave-0000", source=source, state=InstanceState.RUNNING)
    result = await provider.delete(ghost)
    assert result.outcome is Outcome.NOT_DONE
    assert log.calls() == []


async def two_groups_with_a_node_each(
    client: VPSieClient, provider: ManagedKubernetesProvider, sim_clock: FakeClock
) -> tuple[ManagedSource, ManagedSource]:
    """The default cluster's group (8 GiB nodes) and a HighMem one (32 GiB), one booted node each."""
    first = await managed_source(client)
    other = await client.create_node_group(DEFAULT_CLUSTER, "ng-highmem", 61)
    assert other is not None
    second = ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=other.id)
    await provider.launch(CreateRequest(hostname="web-aaaaa", source=first))
    await provider.launch(CreateRequest(hostname="big-aaaaa", source=second))
    await sim_clock.advance(BOOT)
    return first, second


async def test_managed_list_keeps_groups_apart(client: VPSieClient, sim_clock: FakeClock, mode: str) -> None:
    """With several groups a node is attributed by group id or size; the bare SDK shape has neither,
    so in strict mode no node is attributed to any group (never to the wrong one)."""
    provider = ManagedKubernetesProvider(client)
    first, second = await two_groups_with_a_node_each(client, provider, sim_clock)
    one, two = await provider.list(first), await provider.list(second)
    if mode == "strict":
        assert (one, two) == ([], [])
        return
    assert [i.ram_mb for i in one] == [8192]
    assert [i.ram_mb for i in two] == [32768]
    assert one[0].hostname != two[0].hostname


async def test_managed_owner_tags_are_none(client: VPSieClient, sim_clock: FakeClock) -> None:
    provider = ManagedKubernetesProvider(client)
    source = await managed_source(client)
    await provider.launch(CreateRequest(hostname="web-aaaaa", source=source))
    await sim_clock.advance(BOOT)
    [node] = await provider.list(source)
    assert await provider.owner_tags(node) is None


class ShapeClient:
    """Answers cluster detail and groups in a given node shape (no simulator needed)."""

    def __init__(self, nodes: list[dict[str, object]]) -> None:
        self.nodes = nodes
        self.group_reads = 0

    async def get_k8s_cluster(self, cluster_identifier: str) -> K8sClusterDetail:
        return K8sClusterDetail.model_validate({"identifier": cluster_identifier, "nodes": self.nodes})

    async def list_node_groups(self, cluster_identifier: str) -> list[K8sNodeGroup]:
        self.group_reads += 1
        return [
            K8sNodeGroup(id=1, group_name="small", cpu=2, ram=4096, ssd=80),
            K8sNodeGroup(id=2, group_name="big", cpu=8, ram=16384, ssd=320),
        ]


SIZED_NODES: list[dict[str, object]] = [
    {"identifier": "a", "hostname": "c-slave-aaaa", "role": "slave", "cpu": 2, "ram": 4096, "disk": 80},
    {"identifier": "b", "hostname": "c-slave-bbbb", "role": "slave", "cpu": "8", "ram": 16384, "disk": 320},
    {"identifier": "m", "hostname": "c-master", "role": "master", "cpu": 2, "ram": 4096, "disk": 80},
]


async def test_without_group_ids_nodes_are_attributed_by_size_and_groups_are_read_once_a_minute() -> None:
    now = [0.0]
    shape = ShapeClient(SIZED_NODES)
    provider = ManagedKubernetesProvider(cast(VPSieClient, shape), monotonic=lambda: now[0])
    small = await provider.list(ManagedSource(cluster_identifier="c", group_id=1))
    big = await provider.list(ManagedSource(cluster_identifier="c", group_id=2))
    assert [i.hostname for i in small] == ["c-slave-aaaa"]
    assert [i.hostname for i in big] == ["c-slave-bbbb"]
    assert shape.group_reads == 1
    now[0] = 61.0
    await provider.list(ManagedSource(cluster_identifier="c", group_id=1))
    assert shape.group_reads == 2


async def test_listing_a_group_that_does_not_exist_is_not_found() -> None:
    provider = ManagedKubernetesProvider(cast(VPSieClient, ShapeClient(SIZED_NODES)))
    with pytest.raises(errors.NotFound):
        await provider.list(ManagedSource(cluster_identifier="c", group_id=99))


async def test_providers_refuse_the_other_source_kind(client: VPSieClient) -> None:
    with pytest.raises(TypeError):
        await ManagedKubernetesProvider(client).list(WEB)
    with pytest.raises(TypeError):
        await VMProvider(client).list(ManagedSource(cluster_identifier="c", group_id=1))


# --- VMs ----------------------------------------------------------------------------------------------


async def test_vm_launch_sends_hostname_ownership_tags_labels_and_taints(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    labels = MappingProxyType({"pool": "web"})
    taints = (Taint(key="dedicated", value="web", effect="NoSchedule"),)
    log = Log(sim)
    result = await provider.launch(
        CreateRequest(hostname="web-7f3k2", source=WEB, labels=labels, taints=taints, tags=OWNER_TAGS)
    )
    assert result.outcome is Outcome.DONE
    assert log.calls() == [("POST", VM_PATH)]  # nothing read first, sent once
    [pending] = await provider.list(WEB)
    assert (pending.hostname, pending.state, pending.identifier) == ("web-7f3k2", InstanceState.PENDING, None)
    await sim_clock.advance(BOOT)
    [running] = await provider.list(WEB)
    assert running.state is InstanceState.RUNNING
    assert running.identifier is not None
    assert sorted(await client.get_vm_tags(running.identifier)) == sorted(("k8s", *OWNER_TAGS))
    assert await provider.owner_tags(running) == frozenset(("k8s", *OWNER_TAGS))
    [vm] = sim.state.vms.values()
    assert parse_kubelet_flags(decode_user_data(vm.user_data)) == (dict(labels), list(taints))


async def test_a_vm_hostname_must_carry_the_group_prefix(client: VPSieClient, sim: Simulator) -> None:
    log = Log(sim)
    with pytest.raises(ValueError, match="prefix"):
        await VMProvider(client).launch(CreateRequest(hostname="db-abc12", source=WEB))
    assert log.calls() == []


async def make_vm(client: VPSieClient, hostname: str) -> None:
    await client.create_vm(
        VMCreate(
            resource_identifier=ADVANCED_PLAN,
            os_identifier=DEFAULT_OS,
            dc_identifier=DEFAULT_DATACENTER,
            hostname=hostname,
            project_identifier=DEFAULT_PROJECT,
        )
    )


async def test_vm_list_shows_only_vms_named_exactly_prefix_and_five_characters(
    client: VPSieClient, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    await provider.launch(CreateRequest(hostname="web-abc12", source=WEB))
    await provider.launch(CreateRequest(hostname="web-api-xyz98", source=vm_source("web-api-")))
    for name in ("web-foo", "web-abc123", "web-ab_12", "myweb-abc12"):
        await make_vm(client, name)
    await provider.launch(CreateRequest(hostname="WEB-QQQQ1", source=WEB))  # VPSie keeps the case
    listed_pending = {i.hostname for i in await provider.list(WEB)}
    await sim_clock.advance(BOOT)
    listed = {i.hostname for i in await provider.list(WEB)}
    assert listed == listed_pending == {"web-abc12", "WEB-QQQQ1"}
    assert {i.hostname for i in await provider.list(vm_source("web-api-"))} == {"web-api-xyz98"}


async def test_vm_delete_targets_the_identifier_and_a_second_delete_is_done(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    for name in ("web-aaaaa", "web-bbbbb"):
        await provider.launch(CreateRequest(hostname=name, source=WEB))
    await sim_clock.advance(BOOT)
    by_name = {i.hostname: i for i in await provider.list(WEB)}
    victim = by_name["web-bbbbb"]
    log = Log(sim)
    assert (await provider.delete(victim)).outcome is Outcome.DONE
    assert log.mutations() == [("DELETE", VM_PATH)]
    await sim_clock.advance(DELETE)
    assert [i.hostname for i in await provider.list(WEB)] == ["web-aaaaa"]
    assert (await provider.delete(victim)).outcome is Outcome.DONE


async def test_a_pending_vm_is_not_deleted(client: VPSieClient, sim: Simulator) -> None:
    provider = VMProvider(client)
    await provider.launch(CreateRequest(hostname="web-early", source=WEB))
    [pending] = await provider.list(WEB)
    assert pending.identifier is None
    log = Log(sim)
    result = await provider.delete(pending)
    assert result.outcome is Outcome.NOT_DONE
    assert isinstance(result.error, errors.InstanceNotReady)
    assert log.mutations() == []
    assert await provider.owner_tags(pending) is None


@pytest.mark.parametrize("lost_as", ["502", "504", "reset"])
async def test_a_lost_vm_create_answer_is_unknown_and_the_vm_exists(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, lost_as: str
) -> None:
    provider = VMProvider(client)
    sim.faults.add(FaultSpec(kind=FaultKind.REPLY_LOST, method="POST", path=VM_PATH, lost_as=lost_as))
    log = Log(sim)
    result = await provider.launch(CreateRequest(hostname="web-lost1", source=WEB))
    assert result.outcome is Outcome.UNKNOWN
    assert log.mutations() == [("POST", VM_PATH)]
    await sim_clock.advance(BOOT)
    assert [i.hostname for i in await provider.list(WEB)] == ["web-lost1"]


async def test_a_late_vm_create_answer_is_unknown_and_the_vm_exists(
    sim_config: SimConfig, sim_clock: FakeClock
) -> None:
    async with short_timeout_client(sim_config, sim_clock) as (sim, client, client_clock):
        provider = VMProvider(client)
        await drive(client_clock, provider.list(WEB))  # logs in before the fault
        sim.faults.add(FaultSpec(kind=FaultKind.LATE_REPLY, method="POST", path=VM_PATH, seconds=60))
        result = await provider.launch(CreateRequest(hostname="web-late1", source=WEB))
        assert result.outcome is Outcome.UNKNOWN
        assert [vm.hostname for vm in sim.state.vms.values()] == ["web-late1"]


async def running_vm(provider: VMProvider, sim_clock: FakeClock, hostname: str) -> Instance:
    await provider.launch(CreateRequest(hostname=hostname, source=WEB))
    await sim_clock.advance(BOOT)
    [vm] = [i for i in await provider.list(WEB) if i.hostname == hostname]
    assert vm.identifier is not None
    return vm


async def test_a_lost_vm_delete_answer_is_unknown_and_the_vm_goes(
    client: VPSieClient, client_clock: FakeClock, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    vm = await running_vm(provider, sim_clock, "web-gone1")
    sim.faults.add(FaultSpec(kind=FaultKind.REPLY_LOST, method="DELETE", path=VM_PATH, lost_as="502"))
    result = await drive(client_clock, provider.delete(vm))
    assert result.outcome is Outcome.UNKNOWN
    assert sim.state.vms[vm.identifier or ""].delete_at is not None
    await sim_clock.advance(DELETE)
    assert await provider.list(WEB) == []


async def test_a_late_vm_delete_answer_is_unknown_and_the_vm_goes(
    sim_config: SimConfig, sim_clock: FakeClock
) -> None:
    async with short_timeout_client(sim_config, sim_clock) as (sim, client, client_clock):
        provider = VMProvider(client)
        vm = await drive(client_clock, running_vm(provider, sim_clock, "web-gone2"))
        sim.faults.add(FaultSpec(kind=FaultKind.LATE_REPLY, method="DELETE", path=VM_PATH, seconds=60))
        result = await drive(client_clock, provider.delete(vm))
        assert result.outcome is Outcome.UNKNOWN
        assert sim.state.vms[vm.identifier or ""].delete_at is not None


async def test_a_refused_vm_create_is_not_done_and_creates_nothing(
    client: VPSieClient, sim: Simulator
) -> None:
    provider = VMProvider(client)
    sim.faults.add(FaultSpec(kind=FaultKind.ERROR_200, method="POST", path=VM_PATH, message="Out of stock"))
    result = await provider.launch(CreateRequest(hostname="web-nope1", source=WEB))
    assert result.outcome is Outcome.NOT_DONE
    assert sim.state.vms == {}


async def test_a_stopped_vm_is_reported_stopped(client: VPSieClient, sim_clock: FakeClock) -> None:
    provider = VMProvider(client)
    vm = await running_vm(provider, sim_clock, "web-stop1")
    await client.stop_vm(vm.identifier or "")
    [stopped] = await provider.list(WEB)
    assert stopped.state is InstanceState.STOPPED


async def test_list_account_reports_every_vm_of_the_account(
    client: VPSieClient, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    await provider.launch(CreateRequest(hostname="web-abc12", source=WEB))
    await make_vm(client, "someone-elses-vm")
    await sim_clock.advance(BOOT)
    listed = await provider.list_account(WEB)
    assert {i.hostname for i in listed} == {"web-abc12", "someone-elses-vm"}
    assert all(i.identifier for i in listed)


def test_both_providers_satisfy_the_node_provider_protocol(client: VPSieClient) -> None:
    providers: list[NodeProvider] = [ManagedKubernetesProvider(client), VMProvider(client)]  # checked by mypy

    def methods() -> Iterator[str]:
        yield from ("launch", "delete", "list", "owner_tags")

    for provider in providers:
        for name in methods():
            assert callable(getattr(provider, name))
