"""Garbage collection of orphan VMs: only a VM tagged for this cluster and owned by no record is deleted
(after the grace period); a VM merely named like ours is reported and never touched.

The collector runs against the real simulator (VMs, tags, deletes) with the fake API server's stores
standing in for the informer caches; the simulator and the collector share one fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.unit.controllers.fakes import Store, World
from tests.unit.vpsie.test_contract import ADVANCED_PLAN
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT
from vpsie_autoscaler.controllers.cloud import ClusterIdentity, Providers, ownership_tags
from vpsie_autoscaler.controllers.garbagecollection.collector import (
    REASON_NAMED_LIKE_OURS,
    REASON_ORPHAN,
    REASON_ORPHAN_DELETED,
    GarbageCollector,
    GCOptions,
)
from vpsie_autoscaler.runtime.clock import RealClock
from vpsie_autoscaler.runtime.fence import FenceReason, NotLeader
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClient, VPSieClientConfig

CLUSTER = "uid-1"
GRACE = 600.0


@dataclass
class Informer:
    store: Store


@dataclass
class Env:
    world: World
    sim: Simulator
    client: VPSieClient

    def collector(self, *, dry_run: bool = False, leader: bool = True) -> GarbageCollector:
        fence = None if leader else Closed()
        providers = Providers(self.client, identity=ClusterIdentity(None, CLUSTER), fence=fence)
        return GarbageCollector(
            self.world.deps(dry_run=dry_run),
            providers=providers,
            nodegroups=cast(SharedInformer, Informer(self.world.stores["nodegroups"])),
            vpsienodes=cast(SharedInformer, Informer(self.world.stores["vpsienodes"])),
            options=GCOptions(orphan_grace=GRACE),
        )

    async def vm(self, hostname: str, tags: tuple[str, ...] = ()) -> None:
        await self.client.create_vm(
            VMCreate(
                resource_identifier=ADVANCED_PLAN,
                os_identifier=DEFAULT_OS,
                dc_identifier=DEFAULT_DATACENTER,
                hostname=hostname,
                project_identifier=DEFAULT_PROJECT,
                tags=tags,
            )
        )

    def deleting(self) -> set[str]:
        return {v.hostname for v in self.sim.state.vms.values() if v.delete_at is not None}


class Closed:
    def check(self, operation: str) -> None:
        raise NotLeader(operation, FenceReason.LEASE_LOST)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    world = World()
    async with running_simulator(sim_config(), clock=world.clock) as (sim, url):
        client = VPSieClient(
            VPSieClientConfig(base_url=url, api_token=API_TOKEN),
            clock=RealClock(),
            registry=CollectorRegistry(),
        )
        async with client:
            world.group("web")
            world.vpsienode("web-aaaaa", "web")
            await client.list_vms()  # log in
            yield Env(world, sim, client)


async def populate(env: Env) -> None:
    await env.vm("web-aaaaa", ownership_tags(CLUSTER, "web"))  # has its record
    await env.vm("web-bbbbb", ownership_tags(CLUSTER, "web"))  # ours, record lost: orphan
    await env.vm("old-ddddd", ownership_tags(CLUSTER, "old"))  # ours, its NodeGroup was deleted: orphan
    await env.vm("web-ccccc")  # a person's VM named like ours: untagged
    await env.vm("web-eeeee", ownership_tags("uid-2", "web"))  # another cluster's group "web"
    await env.vm("someone-elses-vm", ownership_tags(CLUSTER, "web"))  # not our naming shape at all
    await env.world.clock.advance(10)  # listed and running


async def test_orphans_are_reported_at_once_and_deleted_after_the_grace(env: Env) -> None:
    await populate(env)
    gc = env.collector()
    first = await gc.collect()
    assert sorted(first.orphans) == ["old-ddddd", "web-bbbbb"]
    assert sorted(first.named_like_ours) == ["web-ccccc", "web-eeeee"]
    assert first.deleted == []
    assert env.deleting() == set()
    assert len(env.world.recorder.reasons(REASON_ORPHAN, "web")) == 1  # the deleted group gets none
    assert len(env.world.recorder.reasons(REASON_NAMED_LIKE_OURS, "web")) == 2
    assert env.world.sample("vpsie_autoscaler_orphan_instances") == 2

    await env.world.clock.advance(GRACE + 1)
    second = await gc.collect()
    assert sorted(second.deleted) == ["old-ddddd", "web-bbbbb"]
    assert env.deleting() == {"old-ddddd", "web-bbbbb"}  # never the record's VM or one named like ours
    assert len(env.world.recorder.reasons(REASON_ORPHAN_DELETED, "web")) == 1
    assert env.world.recorder.reasons(REASON_ORPHAN, "web")[-1].note.endswith("(age 10m11s)")  # not 611s


async def test_tags_are_read_only_for_vms_shaped_like_ours_without_a_record(env: Env) -> None:
    await populate(env)
    start = len(env.sim.requests)
    await env.collector().collect()
    reads = [str(r["path"]) for r in list(env.sim.requests)[start:] if r["method"] == "GET"]
    by_id = {v.identifier: v.hostname for v in env.sim.state.vms.values()}
    tag_reads = sorted(by_id[p.rsplit("/", 1)[1]] for p in reads if p.rsplit("/", 1)[1] in by_id)
    assert tag_reads == ["old-ddddd", "web-bbbbb", "web-ccccc", "web-eeeee"]


async def test_a_dry_run_deletes_nothing(env: Env) -> None:
    await populate(env)
    await env.world.clock.advance(GRACE + 1)
    report = await env.collector(dry_run=True).collect()
    assert sorted(report.orphans) == ["old-ddddd", "web-bbbbb"]
    assert report.deleted == []
    assert env.deleting() == set()


async def test_a_process_that_is_not_leader_deletes_nothing(env: Env) -> None:
    await populate(env)
    await env.world.clock.advance(GRACE + 1)
    report = await env.collector(leader=False).collect()
    assert report.deleted == []
    assert len(report.errors) == 2
    assert env.deleting() == set()
    assert [r for r in env.sim.requests if r["method"] == "DELETE"] == []


async def test_failed_records_past_their_ttl_are_deleted_and_counted(env: Env) -> None:
    now = env.world.clock.now()
    failed = env.world.vpsienode("web-fffff", "web", phase="Failed")
    failed["status"]["phaseTimestamps"] = {"Failed": (now - timedelta(hours=2)).isoformat()}
    recent = env.world.vpsienode("web-rrrrr", "web", phase="Failed")
    recent["status"]["phaseTimestamps"] = {"Failed": (now - timedelta(minutes=5)).isoformat()}
    report = await env.collector().collect()
    assert report.expired == ["web-fffff"]
    assert env.world.stores["vpsienodes"].get("web-fffff") is None
    assert env.world.sample("vpsie_autoscaler_vpsienode_ttl_deletions_total", {"nodegroup": "web"}) == 1
