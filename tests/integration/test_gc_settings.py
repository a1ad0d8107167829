"""The garbage collector's timers are settings: an orphan goes after ``--orphan-grace-period``, not the
built-in ten minutes (on the real control plane with the VPSie simulator)."""

from __future__ import annotations

import pytest

from hack.devcluster.cluster import ClusterHandle
from tests.integration.lifecycle_env import CLUSTER_ID, WAIT_S, lifecycle_env
from tests.support.wait import eventually
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.cloud import ownership_tags
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.garbagecollection.collector import GarbageCollector
from vpsie_autoscaler.controllers.lifecycle import gc_options_from

pytestmark = pytest.mark.cluster


async def test_an_orphan_goes_after_the_configured_grace_period(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group = env.name("gcs")
        await env.create_group(group)
        await eventually(
            lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="group cached"
        )
        assert env.providers.client is not None
        orphan = f"{group}-orph1"
        await env.providers.client.create_vm(vm_request(orphan, tags=ownership_tags(CLUSTER_ID, group)))
        settings = Settings(orphan_grace_period=120, failed_vpsienode_ttl=600)
        deps = Deps.build(client=env.kube, recorder=env.recorder, clock=env.clock, metrics=env.metrics)
        configured = GarbageCollector(
            deps,
            providers=env.providers,
            nodegroups=env.nodegroups,
            vpsienodes=env.vpsienodes,
            options=gc_options_from(settings),
        )
        assert (await configured.collect()).deleted == []  # reported, within its grace period

        await env.clock.advance(121)
        assert (await env.gc.collect()).deleted == []  # the built-in 600 s would still wait
        assert (await configured.collect()).deleted == [orphan]
        env.sim.state.tick()
        assert env.vms(group) == []
