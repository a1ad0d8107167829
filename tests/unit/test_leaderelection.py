"""Lease leader election (client-go leaderelection semantics, runtime-semantics §1.8, §3.6)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_apiserver import FakeApiServer, FakeLeases
from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.fence import FenceReason, NotLeader
from vpsie_autoscaler.runtime.leaderelection import (
    LeaderElectionConfig,
    LeaderElectionLost,
    LeaderElector,
)

NS = "kube-system"
NAME = "vpsie-autoscaler"


@pytest.fixture
async def client(fake_apiserver: FakeApiServer) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(server=fake_apiserver.url) as c:
        yield c


@pytest.fixture
def leases(fake_apiserver: FakeApiServer) -> FakeLeases:
    leases = FakeLeases(fake_apiserver, NS)
    leases.register(NAME)
    return leases


def elector(
    client: KubeClient, clock: FakeClock, identity: str = "me"
) -> tuple[LeaderElector, CollectorRegistry]:
    registry = CollectorRegistry()
    cfg = LeaderElectionConfig(NAME, NS, identity)
    return LeaderElector(client, cfg, clock=clock, registry=registry, rng=random.Random(0)), registry


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="greater than the renew deadline"):
        LeaderElectionConfig("l", "ns", "me", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match=r"1\.2 x the retry period"):
        LeaderElectionConfig("l", "ns", "me", renew_deadline=2, retry_period=2)


async def test_acquires_a_missing_lease_by_creating_it(client: KubeClient, leases: FakeLeases) -> None:
    le, registry = elector(client, FakeClock())
    await asyncio.wait_for(le.acquire(), 5)
    assert le.is_leader()
    spec = leases.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "me"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["renewTime"].endswith("Z")
    assert len(spec["renewTime"].split(".")[1]) == 7, "MicroTime: six fractional digits + Z"
    assert registry.get_sample_value("leader_election_master_status", {"name": NAME}) == 1


async def test_no_takeover_while_the_holder_is_fresh_on_our_clock_then_takeover(
    client: KubeClient, leases: FakeLeases
) -> None:
    # The holder's renewTime is ancient by wall clock: irrelevant, only our observation time counts.
    leases.put_lease(NAME, {"holderIdentity": "other", "leaseDurationSeconds": 15,
                            "renewTime": "2000-01-01T00:00:00.000000Z", "leaseTransitions": 3})  # fmt: skip
    clock = FakeClock()
    le, _ = elector(client, clock)
    task = asyncio.create_task(le.acquire())
    await eventually(lambda: clock.sleepers >= 1, what="first attempt done")
    assert not le.is_leader()
    assert le.observed_holder() == "other"
    await clock.advance(10)
    assert not task.done()
    await clock.advance(10)  # 20 s > 15 s since we first observed the record unchanged
    await asyncio.wait_for(task, 5)
    assert le.is_leader()
    spec = leases.leases[NAME]["spec"]
    assert spec["holderIdentity"] == "me"
    assert spec["leaseTransitions"] == 4


async def test_a_renewing_holder_is_never_taken_over(client: KubeClient, leases: FakeLeases) -> None:
    clock = FakeClock()
    leases.put_lease(NAME, {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": "t0"})
    le, _ = elector(client, clock)
    task = asyncio.create_task(le.acquire())
    for i in range(20):  # the holder renews every 2 s: the record keeps changing
        leases.put_lease(
            NAME, {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": f"t{i + 1}"}
        )
        await clock.advance(2)
    assert not task.done()
    task.cancel()


async def test_renewal_failing_past_the_renew_deadline_loses_leadership(
    client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    le, registry = elector(client, clock)
    await asyncio.wait_for(le.acquire(), 5)
    hold = asyncio.create_task(le.hold())
    await eventually(lambda: clock.sleepers == 1)
    await clock.advance(2)
    await eventually(lambda: len(leases.puts) == 1, what="a renewal")
    assert leases.leases[NAME]["spec"]["holderIdentity"] == "me"
    leases.fail_with = 500
    for _ in range(8):
        await eventually(lambda: clock.sleepers == 1 or hold.done())
        await clock.advance(2)
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(hold, 5)
    assert not le.is_leader()
    assert registry.get_sample_value("leader_election_master_status", {"name": NAME}) == 0


async def test_release_empties_the_holder_with_a_one_second_duration_and_retries_conflicts(
    client: KubeClient, leases: FakeLeases
) -> None:
    le, _ = elector(client, FakeClock())
    await asyncio.wait_for(le.acquire(), 5)
    transitions = leases.leases[NAME]["spec"]["leaseTransitions"]
    leases.conflicts_to_inject = 1
    assert await asyncio.wait_for(le.release(), 5)
    spec = leases.leases[NAME]["spec"]
    assert spec["holderIdentity"] == ""
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == transitions
    assert len(leases.puts) == 2, "the 409 was retried"
    assert not le.is_leader()


async def test_a_released_lease_is_taken_at_once(client: KubeClient, leases: FakeLeases) -> None:
    leases.put_lease(NAME, {"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": 2})
    le, _ = elector(client, FakeClock())
    await asyncio.wait_for(le.acquire(), 5)
    assert leases.leases[NAME]["spec"]["leaseTransitions"] == 3


async def test_two_candidates_racing_for_an_empty_lease_elect_exactly_one(
    client: KubeClient, leases: FakeLeases
) -> None:
    leases.put_lease(NAME, {"holderIdentity": "", "leaseDurationSeconds": 1})
    clock = FakeClock()
    a, _ = elector(client, clock, "a")
    b, _ = elector(client, clock, "b")
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert leases.leases[NAME]["spec"]["holderIdentity"] in ("a", "b")


async def test_health_fails_only_for_a_leader_whose_lease_long_expired(
    client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    le, _ = elector(client, clock)
    assert le.healthy()
    await asyncio.wait_for(le.acquire(), 5)
    assert le.healthy()
    await clock.advance(15 + 21)
    assert not le.healthy()


# -- the fence ------------------------------------------------------------------------------------


class SlowLeases:
    """Delegates to a real client; every answer arrives ``latency`` fake seconds after the request
    was sent, and ``on_replace`` runs as each PUT is sent."""

    def __init__(self, client: KubeClient, clock: FakeClock) -> None:
        self.client, self.clock = client, clock
        self.latency = 0.0
        self.on_replace: list[object] = []
        self.fence_open_at_replace: list[bool] = []
        self.elector: LeaderElector | None = None

    async def _answer(self, result: Any) -> Any:
        if self.latency:
            await self.clock.advance(self.latency)
        return result

    async def get(self, *a: Any, **kw: Any) -> Any:
        return await self._answer(await self.client.get(*a, **kw))

    async def create(self, *a: Any, **kw: Any) -> Any:
        return await self._answer(await self.client.create(*a, **kw))

    async def replace(self, *a: Any, **kw: Any) -> Any:
        if self.elector is not None:
            self.fence_open_at_replace.append(self.elector.fence.is_open())
        return await self._answer(await self.client.replace(*a, **kw))

    def watch(self, *a: Any, **kw: Any) -> Any:
        return self.client.watch(*a, **kw)


def slow_elector(client: KubeClient, clock: FakeClock) -> tuple[LeaderElector, SlowLeases]:
    slow = SlowLeases(client, clock)
    le = LeaderElector(
        cast(KubeClient, slow), LeaderElectionConfig(NAME, NS, "me"), clock=clock, rng=random.Random(0)
    )
    slow.elector = le
    return le, slow


def refused(le: LeaderElector) -> NotLeader:
    with pytest.raises(NotLeader) as info:
        le.fence.check("add_node")
    return info.value


async def test_fence_opens_on_acquire_timed_from_when_the_request_was_sent(
    client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    le, slow = slow_elector(client, clock)
    assert refused(le).reason is FenceReason.NEVER_LED
    slow.latency = 3  # the create answers 3 s after it was sent
    await asyncio.wait_for(le.acquire(), 5)
    le.fence.check("add_node")
    assert le.fence.valid_for() == 15 - 3, "validity counts from the send, not the answer"
    assert le.fence.held_for() == 3
    slow.latency = 0
    await clock.advance(7)  # 10 s = renew deadline since the send: exactly the 5 s margin left
    le.fence.check("add_node")
    await clock.advance(0.01)  # the event loop stalled: no renewal ran
    err = refused(le)
    assert err.reason is FenceReason.MARGIN_TOO_SMALL
    assert le.is_leader(), "the elector has not noticed yet; the fence already refuses"


async def test_fence_stays_open_while_renewals_succeed(client: KubeClient, leases: FakeLeases) -> None:
    clock = FakeClock()
    le, _ = elector(client, clock)
    await asyncio.wait_for(le.acquire(), 5)
    hold = asyncio.create_task(le.hold())
    for _ in range(15):  # 30 s, far beyond one lease duration
        await eventually(lambda: clock.sleepers == 1, what="renew loop parked")
        await clock.advance(2)
        await eventually(lambda: le.fence.valid_for() == 15, what="renewal recorded")
        le.fence.check("add_node")
    assert len(leases.puts) == 15
    assert le.fence.held_for() == 30
    hold.cancel()


async def test_fence_closes_at_the_first_failed_renewal_and_reopens_on_the_next_success(
    client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    le, _ = elector(client, clock)
    await asyncio.wait_for(le.acquire(), 5)
    hold = asyncio.create_task(le.hold())
    await eventually(lambda: clock.sleepers == 1)
    leases.fail_with = 500
    await clock.advance(2)
    await eventually(lambda: not le.fence.is_open(), what="fence closed by the failed renewal")
    err = refused(le)
    assert err.reason is FenceReason.LEASE_LOST
    assert "lease renewal failed" in str(err)
    assert le.is_leader(), "still within the renew deadline: the elector keeps trying"
    leases.fail_with = None
    await eventually(lambda: clock.sleepers == 1)
    await clock.advance(2)
    await eventually(le.fence.is_open, what="fence reopened by the next renewal")
    assert le.fence.held_for() == 4, "same leadership term"
    leases.fail_with = 500
    for _ in range(8):
        await eventually(lambda: clock.sleepers == 1 or hold.done())
        await clock.advance(2)
    with pytest.raises(LeaderElectionLost):
        await asyncio.wait_for(hold, 5)
    assert refused(le).reason is FenceReason.LEASE_LOST


async def test_fence_closes_when_another_holder_took_the_lease(
    client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    le, _ = elector(client, clock)
    await asyncio.wait_for(le.acquire(), 5)
    leases.put_lease(NAME, {"holderIdentity": "other", "leaseDurationSeconds": 15})
    assert not await le.try_acquire_or_renew()
    err = refused(le)
    assert err.reason is FenceReason.LEASE_LOST
    assert "held by other" in str(err)
    assert not le.is_leader()


async def test_release_closes_the_fence_before_the_release_request(
    client: KubeClient, leases: FakeLeases
) -> None:
    clock = FakeClock()
    le, slow = slow_elector(client, clock)
    await asyncio.wait_for(le.acquire(), 5)
    assert await le.try_acquire_or_renew()
    assert slow.fence_open_at_replace == [True], "a renewal is sent while the fence is open"
    assert await asyncio.wait_for(le.release(), 5)
    assert slow.fence_open_at_replace == [True, False]
    assert leases.leases[NAME]["spec"]["holderIdentity"] == ""
    assert refused(le).reason is FenceReason.STOPPING
