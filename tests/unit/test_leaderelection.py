"""Lease leader election (client-go leaderelection semantics, runtime-semantics §1.8, §3.6)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_apiserver import FakeApiServer, FakeLeases
from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.runtime.clock import FakeClock
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
