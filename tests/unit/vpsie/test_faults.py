"""Every fault kind of the simulator, and how the client's retries, breaker and errors meet it."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import base_url, drive, make_client
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.breaker import BreakerState
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.retry import RetryPolicy
from vpsie_autoscaler.vpsie.sim.app import Simulator
from vpsie_autoscaler.vpsie.sim.config import DEFAULT_CLUSTER, SimConfig
from vpsie_autoscaler.vpsie.sim.faults import FaultKind, FaultSpec

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
