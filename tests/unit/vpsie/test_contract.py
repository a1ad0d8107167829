"""The client's whole contract against the simulator, in lenient and strict (SDK-shapes-only) mode."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import API_TOKEN, base_url, drive, make_client
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import DEFAULT_CLUSTER, DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClient

ADVANCED_PLAN = "7d0c1f3e-9b2a-11ee-8c90-0050569c68dc"
BOOT = 5.0


async def raw(
    server: TestServer, method: str, path: str, json: object = None
) -> tuple[int, dict[str, object]]:
    headers = {"Vpsie-Auth": API_TOKEN}
    url = base_url(server) + path
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, json=json) as r:
        reply: dict[str, object] = await r.json(content_type=None)
        return r.status, reply


def vm_request(hostname: str, **kw: object) -> VMCreate:
    return VMCreate(
        resource_identifier=ADVANCED_PLAN,
        os_identifier=DEFAULT_OS,
        dc_identifier=DEFAULT_DATACENTER,
        hostname=hostname,
        project_identifier=DEFAULT_PROJECT,
        **kw,  # type: ignore[arg-type]
    )


# --- managed Kubernetes ----------------------------------------------------------------------------


async def test_lists_clusters_with_their_summary(client: VPSieClient) -> None:
    clusters = await client.list_k8s_clusters()
    assert [c.cluster_name for c in clusters] == ["HEL-Kubernetes-49ab"]
    assert clusters[0].identifier == DEFAULT_CLUSTER
    assert clusters[0].manager_count == 1
    assert isinstance(clusters[0].price, float)


async def test_cluster_detail_lists_master_and_workers(client: VPSieClient) -> None:
    detail = await client.get_k8s_cluster(DEFAULT_CLUSTER)
    assert [n.is_worker for n in detail.nodes] == [False]
    assert detail.nodes[0].hostname.startswith("HEL-Kubernetes-49ab-master")


async def test_unknown_cluster_is_not_found(client: VPSieClient) -> None:
    with pytest.raises(errors.NotFound):
        await client.get_k8s_cluster("no-such-cluster")


async def test_node_groups_carry_size_and_numeric_id(client: VPSieClient) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    assert group.group_name == "GRP-Advanced-c745"
    assert (group.boxsize_id, group.cpu, group.ram, group.ssd, group.nodes_count) == (57, 4, 8192, 160, 0)


async def test_create_node_group_returns_the_group_found_by_name(client: VPSieClient) -> None:
    group = await client.create_node_group(DEFAULT_CLUSTER, "ng-highmem", 61)
    assert group is not None
    assert group.boxsize_id == 61
    assert group.ram == 32768


async def test_second_group_with_the_same_size_is_refused_with_the_known_message(client: VPSieClient) -> None:
    with pytest.raises(errors.DuplicateGroupSize) as exc:
        await client.create_node_group(DEFAULT_CLUSTER, "ng-again", 57)
    assert "has same selected Size" in exc.value.message
    assert exc.value.error_class is errors.ErrorClass.INVALID


async def test_added_node_appears_only_after_it_booted(client: VPSieClient, sim_clock: FakeClock) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    await client.add_node(DEFAULT_CLUSTER, group.id)
    assert [n for n in (await client.get_k8s_cluster(DEFAULT_CLUSTER)).nodes if n.is_worker] == []
    await sim_clock.advance(BOOT)
    workers = [n for n in (await client.get_k8s_cluster(DEFAULT_CLUSTER)).nodes if n.is_worker]
    assert len(workers) == 1
    assert workers[0].hostname.startswith("HEL-Kubernetes-49ab-slave-")
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    assert group.nodes_count == 1


async def test_adding_to_an_unknown_group_is_not_found(client: VPSieClient) -> None:
    with pytest.raises(errors.NotFound):
        await client.add_node(DEFAULT_CLUSTER, 999_999)


async def test_targeted_node_delete_removes_that_node(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    await client.add_node(DEFAULT_CLUSTER, group.id)
    await client.add_node(DEFAULT_CLUSTER, group.id)
    await sim_clock.advance(BOOT)
    victim = next(n for n in sim.state.nodes.values() if n.group_id == group.id)
    await client.delete_node(DEFAULT_CLUSTER, victim.identifier)
    await sim_clock.advance(2.0)
    names = [n.hostname for n in (await client.get_k8s_cluster(DEFAULT_CLUSTER)).nodes]
    assert victim.hostname not in names
    assert len([n for n in names if "-slave-" in n]) == 1
    with pytest.raises(errors.NotFound):
        await client.delete_node(DEFAULT_CLUSTER, victim.identifier)


async def test_reduce_removes_some_node_of_the_group(client: VPSieClient, sim_clock: FakeClock) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    await client.add_node(DEFAULT_CLUSTER, group.id)
    await sim_clock.advance(BOOT)
    await client.reduce_group(DEFAULT_CLUSTER, group.id)
    await sim_clock.advance(2.0)
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    assert group.nodes_count == 0


async def test_delete_node_group_needs_and_sends_a_delete_statistic(client: VPSieClient) -> None:
    group = await client.create_node_group(DEFAULT_CLUSTER, "ng-tmp", 55)
    assert group is not None
    assert group.identifier is not None
    await client.delete_node_group(group.identifier, reason="test")
    assert [g.group_name for g in await client.list_node_groups(DEFAULT_CLUSTER)] == ["GRP-Advanced-c745"]


async def test_k8s_offers_list_sizes_with_prices(client: VPSieClient) -> None:
    offers = await client.list_k8s_offers(DEFAULT_DATACENTER)
    by_id = {o.id: o for o in offers}
    assert by_id[57].cpu == 4
    assert by_id[57].price == 40.0


# --- plain VMs -------------------------------------------------------------------------------------


async def test_vm_goes_through_pending_then_creating_then_running(
    client: VPSieClient, sim_clock: FakeClock
) -> None:
    process_id = await client.create_vm(vm_request("asg-general-7f3k2", tags=("k8s",)))
    [pending] = await client.list_pending_vms()
    assert (pending.data.hostname, pending.data.process_id) == ("asg-general-7f3k2", process_id)
    assert await client.list_vms() == []
    await sim_clock.advance(1.0)
    [vm] = await client.list_vms()
    assert (vm.is_active, vm.power) == (0, 0)
    assert await client.list_pending_vms() == []
    await sim_clock.advance(BOOT)
    vm = await client.get_vm(vm.identifier)
    assert (vm.hostname, vm.is_active, vm.power, vm.cpu, vm.ram, vm.ssd) == (
        "asg-general-7f3k2",
        1,
        1,
        4,
        8192,
        160,
    )
    assert vm.project == 412
    assert vm.default_ip
    assert vm.private_ip


async def test_get_unknown_vm_is_not_found(client: VPSieClient) -> None:
    with pytest.raises(errors.NotFound):
        await client.get_vm("d41e5a70-0000-0000-0000-000000000000")


async def test_power_actions_switch_the_vm(client: VPSieClient, sim_clock: FakeClock) -> None:
    await client.create_vm(vm_request("asg-power-1"))
    await sim_clock.advance(BOOT)
    [vm] = await client.list_vms()
    await client.stop_vm(vm.identifier)
    assert (await client.get_vm(vm.identifier)).power == 0
    await client.start_vm(vm.identifier)
    await client.restart_vm(vm.identifier)
    assert (await client.get_vm(vm.identifier)).power == 1


async def test_vm_delete_removes_it_after_the_delay(client: VPSieClient, sim_clock: FakeClock) -> None:
    await client.create_vm(vm_request("asg-del-1"))
    await sim_clock.advance(BOOT)
    [vm] = await client.list_vms()
    await client.delete_vm(vm.identifier, password="", reason="test")
    await sim_clock.advance(2.0)
    assert await client.list_vms() == []


async def test_vm_routes_also_work_under_the_api_v2_prefix(
    server: TestServer, sim: Simulator, client_clock: FakeClock, sim_clock: FakeClock
) -> None:
    async with make_client(server, client_clock, vm_path="/api/v2/vm") as c:
        await c.create_vm(vm_request("asg-alt-1"))
        assert [p.data.hostname for p in await c.list_pending_vms()] == ["asg-alt-1"]
        await sim_clock.advance(BOOT)
        [vm] = await c.list_vms()
        assert (await c.get_vm(vm.identifier)).hostname == "asg-alt-1"
        await c.stop_vm(vm.identifier)
        await c.delete_vm(vm.identifier, password="", reason="test")
    paths = {r["path"] for r in sim.requests}
    assert {"/api/v2/vm", f"/api/v2/vm/{vm.identifier}", "/api/v2/vm/stop"} <= paths
    assert "/apps/v2/vm" not in paths


# --- quirks (raw HTTP, since the client never sends these mistakes) ---------------------------------


async def test_numeric_project_id_is_rejected(server: TestServer) -> None:
    body = vm_request("asg-bad-1").body("p1") | {"projectId": 412}
    status, reply = await raw(server, "POST", "/apps/v2/vm", json=body)
    assert status == 400
    assert reply["error"] is True
    assert "projectId" in str(reply["message"])


async def test_numeric_address_flags_are_silently_ignored(
    server: TestServer, client: VPSieClient, sim_clock: FakeClock
) -> None:
    body = vm_request("asg-flags-1").body("p1") | {"addPublicIpV4": 1, "addPrivateIp": 1}
    status, reply = await raw(server, "POST", "/apps/v2/vm", json=body)
    assert (status, reply["data"]) == (200, True)
    await sim_clock.advance(BOOT)
    [vm] = await client.list_vms()
    assert not vm.default_ip
    assert not vm.private_ip


async def test_vm_delete_without_delete_statistic_is_a_500(
    server: TestServer, client: VPSieClient, sim_clock: FakeClock
) -> None:
    await client.create_vm(vm_request("asg-500-1"))
    await sim_clock.advance(BOOT)
    [vm] = await client.list_vms()
    status, reply = await raw(server, "DELETE", "/apps/v2/vm", json={"vmIdentifier": vm.identifier})
    assert status == 500
    assert reply["error"] is True


async def test_unknown_route_is_404_not_found(server: TestServer) -> None:
    status, reply = await raw(server, "GET", "/apps/v2/nope")
    assert (status, reply) == (404, {"error": True, "code": 404, "message": "Not found"})


async def test_missing_token_is_401_please_authenticate(server: TestServer) -> None:
    async with aiohttp.ClientSession() as s, s.get(base_url(server) + "/apps/v2/k8s/cluster/all") as r:
        assert r.status == 401
        assert await r.json() == {"error": True, "code": 401, "message": "Please authenticate"}


async def test_bearer_header_alone_is_accepted(server: TestServer) -> None:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(base_url(server) + "/apps/v2/datacenter", headers=headers) as r,
    ):
        assert r.status == 200


# --- catalogue -------------------------------------------------------------------------------------


async def test_catalogue(client: VPSieClient) -> None:
    dcs = await client.list_datacenters()
    assert DEFAULT_DATACENTER in {d.identifier for d in dcs}
    categories = await client.list_plan_categories()
    assert {c.name for c in categories} == {"Shared CPU", "Compute Optimized"}
    plans = await client.list_plans(DEFAULT_DATACENTER, DEFAULT_OS)
    advanced = next(p for p in plans if p.identifier == ADVANCED_PLAN)
    assert (advanced.cpu, advanced.ram, advanced.ssd, advanced.price) == (4, 8192, 160, 40.0)
    shared = next(c for c in categories if c.name == "Shared CPU")
    assert all(p.id != 61 for p in await client.list_plans(DEFAULT_DATACENTER, DEFAULT_OS, shared.identifier))
    [project] = await client.list_projects()
    assert project.identifier == DEFAULT_PROJECT
    assert [k.name for k in await client.list_ssh_keys()] == ["ops"]
    assert [s.script_name for s in await client.list_scripts()] == ["k8s-join.sh"]


async def test_metrics_count_requests_by_operation_and_code(client: VPSieClient) -> None:
    await client.list_datacenters()
    with pytest.raises(errors.NotFound):
        await client.get_k8s_cluster("missing")
    requests = client.metrics.requests
    assert requests.labels(operation="list_datacenters", code="200")._value.get() == 1
    assert requests.labels(operation="get_k8s_cluster", code="404")._value.get() == 1
    assert requests.labels(operation="auth_login", code="200")._value.get() == 1


async def test_large_lists_arrive_whole(client: VPSieClient, sim: Simulator, sim_clock: FakeClock) -> None:
    for i in range(300):
        sim.state.create_vm(vm_request(f"asg-many-{i:03d}").body(f"p{i}"))
    await sim_clock.advance(BOOT)
    assert len(await client.list_vms()) == 300


async def test_an_oversized_body_is_refused(
    client: VPSieClient,
    sim: Simulator,
    sim_clock: FakeClock,
    client_clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vpsie_autoscaler.vpsie import client as client_module

    for i in range(20):
        sim.state.create_vm(vm_request(f"asg-big-{i:03d}").body(f"p{i}"))
    await sim_clock.advance(BOOT)
    await client.list_datacenters()  # log in while bodies are still allowed
    monkeypatch.setattr(client_module, "MAX_BODY_BYTES", 2000)
    with pytest.raises(errors.ServerError, match="over 2000 bytes"):
        await drive(client_clock, client.list_vms())  # retried like any 5xx, then reported
