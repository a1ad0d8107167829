"""A managed NodeGroup whose VPSie node group does not exist gets it created (``add/group`` with its
sizeId), once: a lost answer is settled by listing, VPSie's one-group-per-size rule is a clear condition,
status shows the group, and ``groupDeletionPolicy: Delete`` removes the group it created once empty."""

from __future__ import annotations

from typing import Any

from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.unit.controllers.test_discovery import (
    ADVANCED,
    OURS,
    STANDARD,
    cluster,
    created_records,
    managed_group,
    simulated,
)
from vpsie_autoscaler.controllers.discovery import REASON_GROUP_REFUSED
from vpsie_autoscaler.runtime.clock import RealClock
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.managed import ensure_node_group

CREATE = "/apps/v2/k8s/cluster/add/group"


def pool(name: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"clusterIdentifier": OURS, "nodeGroupName": name, "sizeId": size, **extra}


def creates(sim: Any) -> list[dict[str, Any]]:
    return [r for r in sim.requests if r["path"] == CREATE]


async def test_a_missing_group_is_created_once_with_the_size_and_shown_in_status() -> None:
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 0)])) as env:
        env.env.put(managed_group("web", pool("web-pool", ADVANCED), min_nodes=1))
        ng = env.reconciler()
        await ng.reconcile(Request("web"))
        await ng.reconcile(Request("web"))
        assert len(creates(env.sim)) == 1
        made = [g for g in env.sim.state.groups.values() if g.name == "web-pool"]
        assert [(g.cluster, g.size) for g in made] == [(OURS, ADVANCED)]
        found = env.status("web")["managed"]
        assert (found["nodeGroupName"], found["nodeGroupId"]) == ("web-pool", made[0].id)
        assert found["sizeId"] == ADVANCED
        assert found["created"] is True
        assert env.env.world.recorder.reasons("VPSieGroupCreated", "web")
        (record,) = created_records(env)  # minNodes goes into the new group
        assert record.spec.managed is not None
        assert record.spec.managed.node_group_name == "web-pool"


async def test_one_group_per_size_is_a_condition_naming_the_other_group_and_nothing_is_sent() -> None:
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 0)])) as env:
        env.env.put(managed_group("web", pool("web-pool", STANDARD), min_nodes=1))
        await env.reconciler().reconcile(Request("web"))
        resolved = env.condition("web", "SourceResolved")
        assert (resolved["status"], resolved["reason"]) == ("False", REASON_GROUP_REFUSED)
        assert "GRP-Standard" in resolved["message"]
        assert "one node group per size" in resolved["message"]
        assert env.env.world.recorder.reasons(REASON_GROUP_REFUSED, "web")
        assert creates(env.sim) == []
        assert created_records(env) == []


async def test_a_refusal_by_vpsie_itself_is_reported_with_its_words() -> None:
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [])) as env:
        env.env.put(
            managed_group("web", {"clusterIdentifier": OURS, "nodeGroupName": "web-pool", "sizeId": 999999})
        )
        await env.reconciler().reconcile(Request("web"))
        resolved = env.condition("web", "SourceResolved")
        assert resolved["reason"] == REASON_GROUP_REFUSED
        assert "Invalid KubeSizeID" in resolved["message"]


async def test_a_create_whose_answer_was_lost_is_found_by_listing_never_sent_twice() -> None:
    lost = {"kind": "reply_lost", "path": CREATE, "method": "POST", "times": 1, "lost_as": "504"}
    config = sim_config(clusters=[cluster(OURS, "HEL-Kubernetes-49ab", [])], faults=[lost])
    async with running_simulator(config) as (sim, url):
        client = VPSieClient(VPSieClientConfig(base_url=url, api_token=API_TOKEN), clock=RealClock())
        async with client:
            ensured = await ensure_node_group(client, OURS, "web-pool", ADVANCED)
            again = await ensure_node_group(client, OURS, "web-pool", ADVANCED)
    assert ensured.created
    assert ensured.group is not None
    assert again.group is not None
    assert again.group.id == ensured.group.id
    assert not again.created
    assert len(creates(sim)) == 1


async def test_delete_policy_removes_the_created_group_once_empty_and_retain_keeps_it() -> None:
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [])) as env:
        for name, size, policy in (("gone", ADVANCED, "Delete"), ("kept", STANDARD, "Retain")):
            env.env.put(managed_group(name, pool(f"{name}-pool", size, groupDeletionPolicy=policy)))
            await env.reconciler().reconcile(Request(name))
        assert {g.name for g in env.sim.state.groups.values()} == {"gone-pool", "kept-pool"}
        for name in ("gone", "kept"):
            obj = env.env.get("nodegroups", name)
            assert obj is not None
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            await env.reconciler().reconcile(Request(name))
        assert {g.name for g in env.sim.state.groups.values()} == {"kept-pool"}
        assert env.env.world.recorder.reasons("VPSieGroupDeleted", "gone")
