"""The manager's start and stop order, readiness, and fatal loss of leadership."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.support.fake_apiserver import FakeApiServer, FakeLeases, ListWatch, list_body
from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import NODES
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.controller import Controller, FuncReconciler, Request, Result
from vpsie_autoscaler.runtime.fence import AlwaysLeader, FenceReason, NotLeader
from vpsie_autoscaler.runtime.leaderelection import LeaderElectionLost
from vpsie_autoscaler.runtime.manager import Manager, ManagerError, ManagerOptions

NS = "kube-system"


@pytest.fixture
async def client(fake_apiserver: FakeApiServer) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(server=fake_apiserver.url) as c:
        yield c


@pytest.fixture
def leases(fake_apiserver: FakeApiServer) -> FakeLeases:
    leases = FakeLeases(fake_apiserver, NS)
    leases.register("vpsie-autoscaler")
    return leases


def options(**kw: object) -> ManagerOptions:
    base: dict[str, object] = {
        "namespace": NS,
        "identity": "me",
        "metrics_bind_address": "127.0.0.1:0",
        "health_probe_bind_address": "127.0.0.1:0",
    }
    base.update(kw)
    return ManagerOptions(**base)  # type: ignore[arg-type]


async def probe(manager: Manager, path: str) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"http://127.0.0.1:{manager.probe_server.port}{path}") as r,
    ):
        return r.status


async def test_start_sync_elect_reconcile_then_stop_draining_and_releasing(
    fake_apiserver: FakeApiServer, client: KubeClient, leases: FakeLeases
) -> None:
    nodes = ListWatch(fake_apiserver, "/api/v1/nodes")
    gate = asyncio.Event()

    async def slow_list(request: object) -> object:
        await gate.wait()
        return list_body([{"metadata": {"name": "n1", "resourceVersion": "1"}}], "10")

    nodes.lists.append(slow_list)  # type: ignore[arg-type]
    started = asyncio.Event()
    release = asyncio.Event()
    finished: list[Request] = []

    async def reconcile(req: Request) -> Result:
        started.set()
        await release.wait()
        finished.append(req)
        return Result()

    manager = Manager(client, options())
    controller = manager.new_controller("nodes", FuncReconciler(reconcile))
    controller.watch(manager.informers.informer_for(NODES))
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(lambda: manager.probe_server.port is not None, what="probe server up")
    assert await probe(manager, "/healthz") == 200
    assert await probe(manager, "/readyz") == 500, "not ready before the caches synced"
    gate.set()
    await asyncio.wait_for(started.wait(), 5)
    assert manager.is_leader()
    assert await probe(manager, "/readyz") == 200
    assert leases.leases["vpsie-autoscaler"]["spec"]["holderIdentity"] == "me"
    manager.request_stop()
    await eventually(lambda: controller.queue.shutting_down, what="controllers stopping")
    assert not run.done(), "the in-flight reconcile holds the stop"
    assert manager.is_leader(), "leadership is kept until the reconcilers have finished"
    release.set()
    await asyncio.wait_for(run, 10)
    assert finished == [Request("n1")]
    spec = leases.leases["vpsie-autoscaler"]["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("", 1), "lease released on stop"


async def test_a_standby_is_ready_but_runs_no_controllers(
    fake_apiserver: FakeApiServer, client: KubeClient, leases: FakeLeases
) -> None:
    leases.put_lease("vpsie-autoscaler", {"holderIdentity": "other", "leaseDurationSeconds": 15})
    ran: list[Request] = []

    async def reconcile(req: Request) -> Result:
        ran.append(req)
        return Result()

    manager = Manager(client, options(), clock=FakeClock())
    controller = Controller("c", FuncReconciler(reconcile), registry=manager.registry)
    manager.add_controller(controller)
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(lambda: manager.elector is not None and manager.elector.observed_holder() == "other")
    controller.enqueue(Request("x"))
    assert await probe(manager, "/readyz") == 200
    assert not manager.is_leader()
    assert ran == []
    manager.request_stop()
    await asyncio.wait_for(run, 10)
    assert leases.leases["vpsie-autoscaler"]["spec"]["holderIdentity"] == "other", (
        "a standby releases nothing"
    )


async def test_losing_leadership_is_fatal(
    fake_apiserver: FakeApiServer, client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    manager = Manager(client, options(), clock=clock)
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(manager.is_leader)
    leases.fail_with = 500
    for _ in range(10):
        if run.done():
            break
        await eventually(lambda: clock.sleepers >= 1 or run.done())
        await clock.advance(2)
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(run, 5)


async def test_a_crashing_runnable_stops_the_manager(client: KubeClient, leases: FakeLeases) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    manager = Manager(client, options(leader_elect=False))
    manager.add_runnable(broken, needs_leader=False)
    with pytest.raises(ManagerError, match="boom"):
        await asyncio.wait_for(manager.run(handle_signals=False), 10)


async def test_stop_while_waiting_for_caches_returns_cleanly(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    ListWatch(fake_apiserver, "/api/v1/nodes")  # LIST never answers
    manager = Manager(client, options(leader_elect=False))
    manager.informers.informer_for(NODES)
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(lambda: manager.probe_server.port is not None)
    manager.request_stop()
    await asyncio.wait_for(run, 10)
    assert not manager.is_leader()


async def test_caches_that_never_sync_fail_the_start(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    ListWatch(fake_apiserver, "/api/v1/nodes")
    manager = Manager(client, options(leader_elect=False, cache_sync_timeout=0.2))
    manager.informers.informer_for(NODES)
    with pytest.raises(ManagerError, match="caches not synced"):
        await asyncio.wait_for(manager.run(handle_signals=False), 10)


# -- the fence ------------------------------------------------------------------------------------


def test_without_leader_election_the_fence_is_always_open(client: KubeClient) -> None:
    manager = Manager(client, options(leader_elect=False))
    assert isinstance(manager.fence, AlwaysLeader)
    manager.fence.check("add_node")


async def test_fence_open_while_leading_and_draining_closed_before_the_release(
    fake_apiserver: FakeApiServer,
    client: KubeClient,
    leases: FakeLeases,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release_puts: list[bool] = []  # was the fence open when the release PUT arrived?
    put = leases._put

    async def recording_put(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body["spec"]["holderIdentity"] == "":
            release_puts.append(manager.fence.is_open())
        return await put(request)

    monkeypatch.setattr(leases, "_put", recording_put)
    started = asyncio.Event()
    drain = asyncio.Event()
    outcomes: list[str] = []

    async def reconcile(req: Request) -> Result:
        manager.fence.check("add_node")  # right before the cloud call
        started.set()
        await drain.wait()
        manager.fence.check("delete_node")  # still leading while draining
        outcomes.append("mutated")
        return Result()

    manager = Manager(client, options(), clock=FakeClock())
    with pytest.raises(NotLeader, match="never led"):
        manager.fence.check("add_node")
    controller = manager.new_controller("c", FuncReconciler(reconcile))
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(manager.is_leader)
    controller.enqueue(Request("x"))
    await asyncio.wait_for(started.wait(), 5)
    manager.request_stop()
    await eventually(lambda: controller.queue.shutting_down, what="controllers stopping")
    manager.fence.check("add_node")
    drain.set()
    await asyncio.wait_for(run, 10)
    assert outcomes == ["mutated"]
    assert release_puts == [False], "the fence closed before the release request"
    with pytest.raises(NotLeader) as info:
        manager.fence.check("add_node")
    assert info.value.reason is FenceReason.STOPPING
    assert leases.leases["vpsie-autoscaler"]["spec"]["holderIdentity"] == ""


async def test_a_lease_lost_while_draining_closes_the_fence_at_once(
    fake_apiserver: FakeApiServer, client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    started = asyncio.Event()
    drain = asyncio.Event()
    outcomes: list[str] = []

    async def reconcile(req: Request) -> Result:
        started.set()
        await drain.wait()
        try:
            manager.fence.check("delete_node")
            outcomes.append("mutated")
        except NotLeader as exc:
            outcomes.append(exc.reason.value)
        return Result()

    manager = Manager(client, options(), clock=clock)
    controller = manager.new_controller("c", FuncReconciler(reconcile))
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(manager.is_leader)
    controller.enqueue(Request("x"))
    await asyncio.wait_for(started.wait(), 5)
    manager.request_stop()
    await eventually(lambda: controller.queue.shutting_down, what="controllers stopping")
    leases.fail_with = 500  # the renew loop still runs during the drain; now it fails
    await eventually(lambda: clock.sleepers >= 1)
    await clock.advance(2)
    await eventually(lambda: not manager.fence.is_open(), what="fence closed by the failed renewal")
    assert not run.done(), "the reconcile is still draining"
    leases.fail_with = None  # let the release go through
    drain.set()
    await asyncio.wait_for(run, 10)
    assert outcomes == ["lease lost"]


async def test_losing_leadership_closes_the_fence(
    fake_apiserver: FakeApiServer, client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    manager = Manager(client, options(), clock=clock)
    run = asyncio.create_task(manager.run(handle_signals=False))
    await eventually(manager.is_leader)
    manager.fence.check("add_node")
    leases.fail_with = 500
    for _ in range(10):
        if run.done():
            break
        await eventually(lambda: clock.sleepers >= 1 or run.done())
        await clock.advance(2)
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(run, 5)
    with pytest.raises(NotLeader) as info:
        manager.fence.check("add_node")
    assert info.value.reason is FenceReason.LEASE_LOST
