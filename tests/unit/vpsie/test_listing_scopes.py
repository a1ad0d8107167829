"""One VPSie read answers every NodeGroup of its scope: all plain VMs of the account, all groups of a
managed cluster. Counted at the simulator: the periodic listings of many NodeGroups must not eat the
rate budget the launches need."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit.vpsie.test_providers import BOOT, Log, managed_source, two_groups_with_a_node_each, vm_source
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import DEFAULT_CLUSTER
from vpsie_autoscaler.controllers.cloud import SharedListings
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.managed import ManagedKubernetesProvider
from vpsie_autoscaler.vpsie.provider import CreateRequest, ManagedSource, ScopedListing
from vpsie_autoscaler.vpsie.vms import VMProvider

PREFIXES = ("web-", "api-", "big-", "gpu-", "batch-")


def reads(log: Log) -> list[str]:
    return [path for method, path in log.calls() if method == "GET"]


async def test_every_plain_vm_group_is_listed_by_one_read_of_the_account(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock
) -> None:
    provider = VMProvider(client)
    sources = [vm_source(prefix) for prefix in PREFIXES]
    for n, source in enumerate(sources):
        for i in range(n + 1):
            await provider.launch(CreateRequest(hostname=f"{source.hostname_prefix}{i:05d}", source=source))
    await sim_clock.advance(BOOT)
    now = [0.0]
    listings = SharedListings(monotonic=lambda: now[0])
    log = Log(sim)
    listed = [await listings.list(provider, source, max_age=10) for source in sources]
    assert [len(instances) for instances in listed] == [1, 2, 3, 4, 5]
    for source, instances in zip(sources, listed, strict=True):
        assert all(i.hostname.startswith(source.hostname_prefix) and i.source == source for i in instances)
    assert reads(log) == ["/apps/v2/vm/pending", "/apps/v2/vm"]  # two calls for five NodeGroups
    assert listings.reads == 1

    now[0] = 11.0  # too old for everyone: the first to ask refreshes all five
    await provider.launch(CreateRequest(hostname="api-new01", source=sources[1]))
    await listings.list(provider, sources[0], max_age=10)
    fresh = await listings.list(provider, sources[1], max_age=10)
    assert "api-new01" in {i.hostname for i in fresh}  # the new VM, from the shared read
    assert listings.reads == 2
    assert len(reads(log)) == 4


async def test_the_groups_of_one_managed_cluster_share_its_cluster_detail(
    client: VPSieClient, sim: Simulator, sim_clock: FakeClock, mode: str
) -> None:
    provider = ManagedKubernetesProvider(client)
    first, second = await two_groups_with_a_node_each(client, provider, sim_clock)
    listings = SharedListings(monotonic=lambda: 0.0)
    log = Log(sim)
    one = await listings.list(provider, first, max_age=10)
    two = await listings.list(provider, second, max_age=10)
    details = [p for p in reads(log) if p.endswith(f"/byId/{DEFAULT_CLUSTER}")]
    assert len(details) == 1
    assert listings.reads == 1
    assert (one, two) == (await provider.list(first), await provider.list(second))  # same as alone
    if mode != "strict":
        assert {i.ram_mb for i in one} == {8192}
        assert {i.ram_mb for i in two} == {32768}


def test_both_providers_list_by_scope(client: VPSieClient) -> None:
    providers: list[Any] = [ManagedKubernetesProvider(client), VMProvider(client)]
    assert all(isinstance(p, ScopedListing) for p in providers)
    vms = VMProvider(client)
    assert vms.listing_scope(vm_source("web-")) == vms.listing_scope(vm_source("api-"))
    managed = ManagedKubernetesProvider(client)
    assert managed.listing_scope(ManagedSource("a", 1)) == managed.listing_scope(ManagedSource("a", 2))
    assert managed.listing_scope(ManagedSource("a", 1)) != managed.listing_scope(ManagedSource("b", 1))


async def test_concurrent_listings_of_a_scope_share_the_read_in_flight(
    client: VPSieClient, sim: Simulator
) -> None:
    provider = VMProvider(client)
    listings = SharedListings(monotonic=lambda: 0.0)
    log = Log(sim)
    await asyncio.gather(*(listings.list(provider, vm_source(p), max_age=10) for p in PREFIXES * 4))
    assert reads(log) == ["/apps/v2/vm/pending", "/apps/v2/vm"]


async def test_a_group_newer_than_the_shared_read_is_found_by_reading_again(
    client: VPSieClient, sim_clock: FakeClock
) -> None:
    provider = ManagedKubernetesProvider(client)
    listings = SharedListings(monotonic=lambda: 0.0)
    first = await managed_source(client)
    await listings.list(provider, first, max_age=60)
    other = await client.create_node_group(DEFAULT_CLUSTER, "ng-highmem", 61)
    assert other is not None
    second = ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=other.id)
    assert await listings.list(provider, second, max_age=60) == []  # not "not found": read again
    assert listings.reads == 2
    with pytest.raises(errors.NotFound):  # a group that really is not there still says so
        await listings.list(provider, ManagedSource(cluster_identifier=DEFAULT_CLUSTER, group_id=999), 60)
