"""Every fault kind of the simulator, and how the client's retries, breaker and errors meet it.

The refusing kinds leave the state untouched; ``reply_lost`` and ``late_reply`` carry out a create,
delete or reduce and then hide or delay its answer, on every mutating route."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support import vpsie as support
from tests.unit.vpsie.conftest import API_TOKEN, base_url, drive, make_client
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import DEFAULT_CLUSTER, Delays, SimConfig
from vpsie_autoscaler.cloudsim.faults import FaultKind, FaultSpec
from vpsie_autoscaler.cloudsim.state import Node
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.breaker import BreakerState
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.retry import RetryPolicy

DC_PATH = "/apps/v2/datacenter"
NO_RETRY = RetryPolicy(max_retries=0)


def calls(sim: Simulator, path: str, method: str = "GET") -> list[int]:
    return [int(r["status"]) for r in sim.requests if r["path"] == path and r["method"] == method]


async def test_5xx_on_a_read_is_retried_until_it_succeeds(
    client: VPSieClient, sim: Simulator, client_clock: FakeClock
) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.ERROR, path=DC_PATH, status=503, times=2))
    assert await drive(client_clock, client.list_datacenters())
    assert calls(sim, DC_PATH) == [503, 503, 200]
    assert client.metrics.retries.labels(operation="list_datacenters")._value.get() == 2


async def test_html_502_is_a_server_error_once_retries_are_spent(
    client: VPSieClient, sim: Simulator, client_clock: FakeClock
) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.HTML_502, path=DC_PATH))
    with pytest.raises(errors.ServerError, match="non-JSON") as exc:
        await drive(client_clock, client.list_datacenters())
    assert exc.value.status == 502
    assert calls(sim, DC_PATH) == [502] * 4


async def test_429_waits_for_retry_after(
    client: VPSieClient, sim: Simulator, client_clock: FakeClock
) -> None:
    await client.list_datacenters()  # log in first
    sim.faults.add(FaultSpec(kind=FaultKind.RATE_LIMIT, path=DC_PATH, retry_after=7, times=1))
    started = client_clock.monotonic()
    assert await drive(client_clock, client.list_datacenters())
    assert client_clock.monotonic() - started >= 7
    assert calls(sim, DC_PATH) == [200, 429, 200]


async def test_429_with_a_long_retry_after_is_handed_to_the_caller(
    client: VPSieClient, sim: Simulator, client_clock: FakeClock
) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.RATE_LIMIT, path=DC_PATH, retry_after=600))
    with pytest.raises(errors.RateLimited) as exc:
        await drive(client_clock, client.list_datacenters())
    assert exc.value.retry_after == 600
    assert calls(sim, DC_PATH) == [429]


async def test_http_200_with_error_true_fails_and_is_not_retried(client: VPSieClient, sim: Simulator) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.ERROR_200, path=DC_PATH, message="Resource is locked"))
    with pytest.raises(errors.BusinessRuleError, match="Resource is locked") as exc:
        await client.list_datacenters()
    assert exc.value.status == 200
    assert calls(sim, DC_PATH) == [200]
    assert client.metrics.requests.labels(operation="list_datacenters", code="200_error")._value.get() == 1


async def test_quota_message_is_classified_as_quota(client: VPSieClient, sim: Simulator) -> None:
    sim.config.max_workers_per_cluster = 0
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    with pytest.raises(errors.BusinessRuleError) as exc:
        await client.add_node(DEFAULT_CLUSTER, group.id)
    assert exc.value.error_class is errors.ErrorClass.QUOTA


async def test_a_create_is_never_retried(client: VPSieClient, sim: Simulator) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.ERROR, path="/apps/v2/vm", method="POST", status=500, times=1))
    with pytest.raises(errors.ServerError):
        await client.create_vm(vm_request("asg-once-1"))
    assert calls(sim, "/apps/v2/vm", "POST") == [500]


async def test_add_node_is_never_retried(client: VPSieClient, sim: Simulator) -> None:
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    path = f"/apps/v2/k8s/cluster/byId/{DEFAULT_CLUSTER}/add/slave/group/{group.id}"
    sim.faults.add(FaultSpec(kind=FaultKind.HTML_502, path=path, times=1))
    with pytest.raises(errors.ServerError):
        await client.add_node(DEFAULT_CLUSTER, group.id)
    assert calls(sim, path, "POST") == [502]


async def test_never_boot_vm_stays_pending(client: VPSieClient, sim: Simulator, sim_clock: FakeClock) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.NEVER_BOOT, path="/apps/v2/vm", method="POST"))
    await client.create_vm(vm_request("asg-stuck-1"))
    await sim_clock.advance(3600)
    assert [p.data.hostname for p in await client.list_pending_vms()] == ["asg-stuck-1"]
    assert await client.list_vms() == []


async def test_never_boot_node_never_appears(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    sim.faults.add(FaultSpec(kind=FaultKind.NEVER_BOOT, path="*/add/slave/group/*"))
    [group] = await client.list_node_groups(DEFAULT_CLUSTER)
    await client.add_node(DEFAULT_CLUSTER, group.id)
    await sim_clock.advance(3600)
    assert [n for n in (await client.get_k8s_cluster(DEFAULT_CLUSTER)).nodes if n.is_worker] == []


async def test_latency_beyond_the_request_timeout_is_a_timeout(sim_config: SimConfig) -> None:
    sim = Simulator(sim_config, clock=RealClock(), seed=1)
    sim.faults.add(FaultSpec(kind=FaultKind.LATENCY, path=DC_PATH, seconds=2.0))
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with make_client(server, FakeClock(), request_timeout=0.2, retry=NO_RETRY) as client:
            with pytest.raises(errors.VPSieTimeout):
                await client.list_datacenters()
            assert client.breaker.state is BreakerState.CLOSED  # one timeout is below the threshold
    finally:
        await server.close()


async def test_breaker_opens_after_repeated_failures_and_recovers(
    server: TestServer, sim: Simulator, client_clock: FakeClock
) -> None:
    async with make_client(server, client_clock, retry=NO_RETRY) as client:
        await check_breaker(client, sim, client_clock)


async def check_breaker(client: VPSieClient, sim: Simulator, client_clock: FakeClock) -> None:
    await client.list_datacenters()
    fault = sim.faults.add(FaultSpec(kind=FaultKind.ERROR, path=DC_PATH, status=500))
    for _ in range(5):
        with pytest.raises(errors.ServerError):
            await client.list_datacenters()
    assert client.breaker.state is BreakerState.OPEN
    before = len(sim.requests)
    with pytest.raises(errors.CircuitOpen) as exc:
        await client.list_datacenters()
    assert exc.value.retry_after > 0
    assert len(sim.requests) == before  # refused without calling VPSie
    sim.faults.remove(fault.id)
    await client_clock.advance(30)
    assert await client.list_datacenters()  # the half-open probe succeeds
    assert client.breaker.state.value == BreakerState.CLOSED.value


async def test_client_side_rate_limit_paces_requests(server: TestServer, sim: Simulator) -> None:
    clock = FakeClock()
    async with make_client(server, clock, rate_limit_per_minute=60, rate_limit_burst=2) as client:
        await drive(clock, client.list_datacenters())  # login + call use the burst
        started = clock.monotonic()
        await drive(clock, client.list_datacenters())
        await drive(clock, client.list_datacenters())
        assert clock.monotonic() - started == pytest.approx(2.0, abs=0.1)
        assert client.metrics.rate_limited_wait._value.get() == pytest.approx(2.0, abs=0.1)


async def test_faults_can_be_changed_at_run_time_through_the_admin_endpoint(
    server: TestServer, client: VPSieClient, sim: Simulator
) -> None:
    async with aiohttp.ClientSession() as s:
        spec = {"kind": "error_200", "path": DC_PATH, "message": "Maintenance"}
        async with s.post(base_url(server) + "/_sim/faults", json=spec) as r:
            assert r.status == 201
            fault_id = (await r.json())["id"]
        with pytest.raises(errors.BusinessRuleError, match="Maintenance"):
            await client.list_datacenters()
        async with s.get(base_url(server) + "/_sim/state") as r:
            state = await r.json()
            assert [f["id"] for f in state["faults"]] == [fault_id]
        async with s.delete(base_url(server) + f"/_sim/faults/{fault_id}") as r:
            assert r.status == 200
        assert await client.list_datacenters()
        async with s.post(base_url(server) + "/_sim/faults", json={"kind": "bogus"}) as r:
            assert r.status == 400


async def test_probability_faults_are_reproducible_with_a_seed(sim_config: SimConfig) -> None:
    def pattern() -> list[int]:
        sim = Simulator(sim_config, seed=42)
        sim.faults.add(FaultSpec(kind=FaultKind.ERROR, probability=0.5))
        return [len(sim.faults.trigger("GET", "/x")) for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert 0 < sum(first) < 20


# --- faults around a served mutation: the change happens, the client does not learn it -----------

LATE_SECONDS = 0.6  # the simulator's late answer ...
CLIENT_TIMEOUT = 0.15  # ... comes after the client has given up
ANSWER_TIMEOUT = 10.0  # a bound for answers that do come (loaded CI cores are slow, not wrong)
AUTH = {"Vpsie-Auth": API_TOKEN}
LOST_REPLIES = ["502", "504", "504_json", "reset"]
REFUSALS = [
    FaultSpec(kind=FaultKind.ERROR, status=500),
    FaultSpec(kind=FaultKind.ERROR, status=503),
    FaultSpec(kind=FaultKind.HTML_502),
    FaultSpec(kind=FaultKind.ERROR_200, message="Resource is locked"),
    FaultSpec(kind=FaultKind.RATE_LIMIT, retry_after=3),
]


@dataclass
class Mutation:
    """One mutating route: the request to send and how the state shows it was carried out."""

    method: str
    path: str
    body: dict[str, Any] | None
    applied: Callable[[], bool]


def worker(sim: Simulator) -> Node:
    group = next(iter(sim.state.groups.values()))
    return sim.state.add_node(DEFAULT_CLUSTER, group.id)


def setup_mutation(sim: Simulator, route: str) -> Mutation:
    """Prepare the state ``route`` needs (a worker, a VM) and describe its request."""
    state = sim.state
    k8s = f"/apps/v2/k8s/cluster/byId/{DEFAULT_CLUSTER}"
    group = next(iter(state.groups.values()))
    if route == "add_node":
        before = len(state.nodes)
        return Mutation(
            "POST", f"{k8s}/add/slave/group/{group.id}", None, lambda: len(state.nodes) == before + 1
        )
    if route == "delete_node":
        node = worker(sim)
        return Mutation(
            "DELETE",
            f"{k8s}/delete/slave",
            {"identifier": node.identifier},
            lambda: node.delete_at is not None,
        )
    if route == "reduce":
        node = worker(sim)
        return Mutation(
            "DELETE", f"{k8s}/reduce/slave", {"groupId": group.id}, lambda: node.delete_at is not None
        )
    if route == "create_vm":
        body = vm_request("asg-lost-1").body("proc-1")
        return Mutation(
            "POST",
            VM_PATH,
            body,
            lambda: [v.hostname for v in state.vms.values()] == ["asg-lost-1"],
        )
    assert route == "delete_vm"
    vm = state.create_vm(vm_request("asg-doomed-1").body("proc-2"))
    body = {"vmIdentifier": vm.identifier, "deleteStatistic": {"reason": "scale-down", "note": ""}}
    return Mutation("DELETE", VM_PATH, body, lambda: vm.delete_at is not None)


ROUTES = ["add_node", "delete_node", "reduce", "create_vm", "delete_vm"]
VM_PATH = "/apps/v2/vm"


@pytest.fixture
async def live() -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator on the real clock (a late answer really waits) whose instances boot at once."""
    config = support.sim_config(delays=Delays(pending_seconds=0, boot_seconds=0, delete_seconds=60))
    async with support.running_simulator(config, clock=RealClock()) as running:
        yield running


async def send(base: str, mutation: Mutation, *, within: float = CLIENT_TIMEOUT) -> aiohttp.ClientResponse:
    timeout = aiohttp.ClientTimeout(total=within)
    async with (
        aiohttp.ClientSession(headers=AUTH, timeout=timeout) as s,
        s.request(mutation.method, base + mutation.path, json=mutation.body) as r,
    ):
        await r.read()
        return r


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("lost_as", LOST_REPLIES)
async def test_reply_lost_applies_the_mutation_and_hides_the_answer(
    live: tuple[Simulator, str], route: str, lost_as: str
) -> None:
    sim, base = live
    mutation = setup_mutation(sim, route)
    assert not mutation.applied()
    spec = {"kind": "reply_lost", "method": mutation.method, "path": mutation.path, "lost_as": lost_as}
    sim.faults.add(FaultSpec.model_validate(spec))
    if lost_as == "reset":
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await send(base, mutation, within=ANSWER_TIMEOUT)
    else:
        r = await send(base, mutation, within=ANSWER_TIMEOUT)
        assert r.status == (502 if lost_as == "502" else 504)
        assert r.content_type == ("application/json" if lost_as == "504_json" else "text/html")
    assert mutation.applied()
    first, *resent = [
        e for e in sim.requests if e["path"] == mutation.path and e["method"] == mutation.method
    ]
    assert first["lost"] == 200
    assert first["status"] == {"502": 502, "504": 504, "504_json": 504, "reset": 0}[lost_as]
    # aiohttp itself sends a DELETE (an idempotent method) once more after a dropped connection
    assert len(resent) == (1 if lost_as == "reset" and mutation.method == "DELETE" else 0)


async def test_a_reduce_whose_connection_drops_is_sent_again_by_aiohttp(live: tuple[Simulator, str]) -> None:
    """A hazard the simulator makes visible: the resent reduce removes a second node."""
    sim, base = live
    mutation = setup_mutation(sim, "reduce")
    second = worker(sim)
    sim.faults.add(FaultSpec(kind=FaultKind.REPLY_LOST, path=mutation.path, lost_as="reset", times=1))
    r = await send(base, mutation, within=ANSWER_TIMEOUT)
    assert r.status == 200  # the resent request was answered
    assert mutation.applied()
    assert second.delete_at is not None
    assert [e["status"] for e in sim.requests if e["path"] == mutation.path] == [0, 200]


@pytest.mark.parametrize("route", ROUTES)
async def test_late_reply_applies_the_mutation_before_the_client_gives_up(
    live: tuple[Simulator, str], route: str
) -> None:
    sim, base = live
    mutation = setup_mutation(sim, route)
    sim.faults.add(
        FaultSpec(kind=FaultKind.LATE_REPLY, method=mutation.method, path=mutation.path, seconds=LATE_SECONDS)
    )
    with pytest.raises(TimeoutError):
        await send(base, mutation)
    assert mutation.applied()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda f: f"{f.kind.value}-{f.status}")
async def test_refusing_faults_leave_the_state_untouched(
    live: tuple[Simulator, str], route: str, refusal: FaultSpec
) -> None:
    sim, base = live
    mutation = setup_mutation(sim, route)
    version = sim.state.version
    sim.faults.add(refusal.model_copy(update={"method": mutation.method, "path": mutation.path}))
    r = await send(base, mutation, within=ANSWER_TIMEOUT)  # a refusal answers: no need to hurry it
    assert r.status in {200, 429, 500, 502, 503}
    assert not mutation.applied()
    assert sim.state.version == version


async def test_the_client_sees_a_lost_create_as_a_transport_error_and_a_late_one_as_a_timeout(
    live: tuple[Simulator, str],
) -> None:
    sim, base = live
    sim.faults.add(
        FaultSpec(kind=FaultKind.REPLY_LOST, method="POST", path=VM_PATH, lost_as="reset", times=1)
    )
    sim.faults.add(FaultSpec(kind=FaultKind.LATE_REPLY, path="*/add/slave/group/*", seconds=LATE_SECONDS))
    sim.faults.add(FaultSpec(kind=FaultKind.REPLY_LOST, path="*/delete/slave", lost_as="504", times=1))
    async with support.make_client(
        base, FakeClock(), request_timeout=CLIENT_TIMEOUT, retry=NO_RETRY
    ) as client:
        with pytest.raises(errors.ServerError, match="transport error"):
            await client.create_vm(vm_request("asg-unsure-1"))
        assert [v.hostname for v in await client.list_vms()] == ["asg-unsure-1"]
        [group] = await client.list_node_groups(DEFAULT_CLUSTER)
        with pytest.raises(errors.VPSieTimeout):
            await client.add_node(DEFAULT_CLUSTER, group.id)
        [node] = [n for n in sim.state.nodes.values() if n.group_id == group.id]
        with pytest.raises(errors.ServerError) as exc:
            await client.delete_node(DEFAULT_CLUSTER, node.identifier)
        assert exc.value.status == 504
        assert node.delete_at is not None


async def test_reply_lost_on_a_read_is_an_error_and_late_reply_a_delay(live: tuple[Simulator, str]) -> None:
    sim, base = live
    sim.faults.add(FaultSpec(kind=FaultKind.REPLY_LOST, path=DC_PATH, times=1))
    sim.faults.add(FaultSpec(kind=FaultKind.LATE_REPLY, path="/apps/v2/projects", seconds=0.05))
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(base + DC_PATH) as r:
            assert r.status == 502
        async with s.get(base + DC_PATH) as r:
            assert r.status == 200
        async with s.get(base + "/apps/v2/projects") as r:
            assert r.status == 200


async def test_reply_lost_leaves_unknown_routes_and_missing_tokens_alone(live: tuple[Simulator, str]) -> None:
    sim, base = live
    sim.faults.add(FaultSpec(kind=FaultKind.REPLY_LOST, lost_as="reset"))
    async with aiohttp.ClientSession() as s:
        async with s.get(base + DC_PATH) as r:
            assert r.status == 401
        async with s.get(base + "/apps/v2/nowhere", headers=AUTH) as r:
            assert r.status == 404


async def test_new_kinds_are_accepted_by_the_admin_endpoint(live: tuple[Simulator, str]) -> None:
    sim, base = live
    mutation = setup_mutation(sim, "create_vm")
    async with aiohttp.ClientSession() as s:
        spec = {"kind": "reply_lost", "method": "POST", "path": VM_PATH, "lost_as": 504, "times": 1}
        async with s.post(base + "/_sim/faults", json=spec) as r:
            assert r.status == 201
            assert (await r.json())["lost_as"] == "504"
        async with s.post(base + "/_sim/faults", json={"kind": "reply_lost", "lost_as": "418"}) as r:
            assert r.status == 400
        late = {"kind": "late_reply", "path": "/apps/v2/projects", "seconds": 0.01}
        async with s.post(base + "/_sim/faults", json=late) as r:
            assert r.status == 201
    assert (await send(base, mutation, within=ANSWER_TIMEOUT)).status == 504
    assert mutation.applied()
    assert [f.kind for f in sim.faults.all()] == [FaultKind.REPLY_LOST, FaultKind.LATE_REPLY]
