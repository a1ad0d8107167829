"""Launch and termination under faults: lost answers, dead leaders, fencing, outages, PDBs, polling cost.

Every test here runs the lifecycle controllers against the real control plane, kwok and the VPSie
simulator (``lifecycle_env``), injects a fault the simulator reproduces (answers lost after the
mutation was applied, late answers, 503s, ...) and checks VPSie's side in the simulator's state and
request log: how many instances exist, which calls were sent. Each names the finding it proves fixed.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hack.devcluster.cluster import ClusterHandle
from tests.integration.lifecycle_env import (
    FAST,
    NG_RESYNC,
    WAIT_S,
    Env,
    client_for,
    create_managed_group,
    create_record,
    group_nodes,
    launch_of,
    lifecycle_env,
    new_providers,
    phase,
    ready_members,
    write_launch,
)
from tests.support.vpsie import API_TOKEN
from tests.support.wait import eventually
from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    TO_BE_DELETED_TAINT,
)
from vpsie_autoscaler.controllers.cloud import CredentialsWatcher, ownership_tags
from vpsie_autoscaler.controllers.objects import parse_time, rfc3339
from vpsie_autoscaler.controllers.vpsienode.reconciler import VPSieNodeReconciler
from vpsie_autoscaler.controllers.vpsienode_keys import ERROR_CLASS_ANNOTATION, FAILED_REASON_ANNOTATION
from vpsie_autoscaler.kube.resources import NODEGROUPS, PDBS, PODS, VPSIENODES
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.runtime.fence import FenceReason, NotLeader
from vpsie_autoscaler.vpsie.provider import CreateRequest
from vpsie_autoscaler.vpsie.retry import RetryPolicy

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

ADD_NODE = "*/add/slave/group/*"
DELETE_NODE = "*/delete/slave"
REDUCE = "*/reduce/slave"
NEVER = 10_000_000.0  # a late answer the fake clock never reaches
# Outage tests: every failed call reaches VPSie (no client retries, no open breaker swallowing calls).
NO_RETRY: dict[str, Any] = {"retry": RetryPolicy(max_retries=0), "breaker_failure_threshold": 1_000_000}
FAST_BACKOFF = {"backoff": {"initial": "1s", "max": "1s"}}


def mutations(env: Env) -> list[dict[str, Any]]:
    """Every request that could change something in VPSie (all but reads)."""
    return [r for r in env.requests() if r["method"] != "GET"]


def adopted(env: Env, group: str) -> list[dict[str, Any]]:
    return [m for m in env.members(group) if (m.get("spec") or {}).get("adopt")]


async def reconciled_more(env: Env, controller: str, times: int) -> None:
    """Wait until ``controller`` has reconciled ``times`` more times (evidence, not a sleep)."""
    target = env.reconciles(controller) + times
    await eventually(
        lambda: env.reconciles(controller) >= target, within=WAIT_S, what=f"{times} more {controller} passes"
    )


async def more_hits(env: Env, fault_id: int, times: int) -> None:
    """Wait until the fault has fired ``times`` more times (VPSie asked again)."""
    target = env.hits(fault_id) + times
    await eventually(lambda: env.hits(fault_id) >= target, within=WAIT_S, what=f"{times} more calls")


def pinned_pod(app: str, node_name: str) -> dict[str, Any]:
    """A pod already bound to ``node_name`` (as the scheduler leaves it), labelled ``app``."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": app, "labels": {"app": app}},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "c", "image": "busybox"}],
            "tolerations": [{"operator": "Exists"}],
        },
    }


def keep_one(app: str) -> dict[str, Any]:
    """A PodDisruptionBudget ``keep-<app>`` that allows no eviction of the one ``app`` pod."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": f"keep-{app}"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}},
    }


async def pdb_healthy(env: Env, app: str) -> bool:
    got = await env.kube.get(PDBS, f"keep-{app}", env.ns)
    return (got.get("status") or {}).get("currentHealthy") == 1


async def pod_gone(env: Env, name: str) -> bool:
    listed = await env.kube.list(PODS, env.ns, field_selector=f"metadata.name={name}")
    return not listed.get("items")


def tainted(env: Env, node_name: str) -> bool:
    node = env.nodes.store.get(node_name) or {}
    taints = (node.get("spec") or {}).get("taints") or []
    return any(t.get("key") == TO_BE_DELETED_TAINT for t in taints)


def errors_and_panics(env: Env, controller: str) -> tuple[float, float]:
    return (
        env.sample("controller_runtime_reconcile_errors_total", controller=controller),
        env.sample("controller_runtime_reconcile_panics_total", controller=controller),
    )


# --- 1. add-node answers lost ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "reply_lost", "lost_as": "502"},
        {"kind": "reply_lost", "lost_as": "504"},
        {"kind": "reply_lost", "lost_as": "reset"},
        {"kind": "late_reply", "seconds": NEVER},  # beyond the client's request timeout
    ],
    ids=["lost-502", "lost-504", "lost-reset", "late-reply"],
)
async def test_a_managed_add_node_whose_answer_is_lost_binds_the_one_node_it_added(
    k8s_cluster: ClusterHandle, k8s_namespace: str, fault: dict[str, Any]
) -> None:
    """Finding: an add-node whose answer was lost was treated as not sent (a second node added) or
    the record failed although VPSie added the node."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, client={"request_timeout": 2.0}) as env:
        fid = env.add_fault(method="POST", path=ADD_NODE, **fault)
        group, sim_group = await create_managed_group(env, "lost", minNodes=1)
        [vn] = await ready_members(env, group, 1)
        name = vn["metadata"]["name"]
        [node] = group_nodes(env, sim_group)
        assert env.hits(fid) == 1, "add-node was sent exactly once"
        launch = launch_of(env, name)
        assert launch["boundHostname"].lower() == node.lower()
        assert launch.get("boundIdentifier")
        assert vn["status"]["nodeName"] == node.lower()
        assert env.sample("vpsie_autoscaler_launches_total", nodegroup=group, outcome="Unknown") == 1
        note = await env.wait_event(name, "Launched")
        assert "counts as sent" in note
        # The node answered a waiting launch: bound, never adopted.
        assert adopted(env, group) == []
        assert env.metrics.adopted_instances_total.labels(group)._value.get() == 0
        await env.clock.advance(NEVER)  # release the simulator's late answer


async def test_a_reconcile_cancelled_while_add_node_is_in_flight_counts_it_as_sent(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: a reconcile cut off (timeout, shutdown) during add-node left no trace and re-sent it."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, reconcile_timeout=1.0) as env:
        fid = env.add_fault(kind="late_reply", seconds=NEVER, method="POST", path=ADD_NODE)
        group, sim_group = await create_managed_group(env, "cancel", minNodes=1)
        [vn] = await ready_members(env, group, 1)
        assert env.sample("controller_runtime_reconcile_timeouts_total", controller="vpsienode") >= 1
        assert env.hits(fid) == 1
        [node] = group_nodes(env, sim_group)
        assert launch_of(env, vn["metadata"]["name"])["boundHostname"].lower() == node.lower()
        assert adopted(env, group) == []
        await env.clock.advance(NEVER)


# --- 2. a leader that died after writing the launch record ------------------------------------------


async def test_a_new_leader_never_resends_the_add_node_its_predecessor_had_in_flight(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: a crash mid scale-up left a duplicate node (add-node has no idempotency key)."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        fid = env.add_fault(kind="late_reply", seconds=NEVER, method="POST", path=ADD_NODE)
        group, sim_group = await create_managed_group(env, "dead", minNodes=1)
        await eventually(lambda: env.hits(fid) == 1, within=WAIT_S, what="add-node in flight")
        [vn] = env.members(group)
        name = vn["metadata"]["name"]
        await eventually(lambda: bool(launch_of(env, name)), within=WAIT_S, what="launch record")
        await env.restart()  # the leader dies with the call in flight; a new one starts from scratch
        [vn] = await ready_members(env, group, 1)
        assert env.hits(fid) == 1, "the new leader sent no second add-node"
        [node] = group_nodes(env, sim_group)
        assert launch_of(env, name)["boundHostname"].lower() == node.lower()
        assert adopted(env, group) == []
        await env.clock.advance(NEVER)


async def test_a_launch_record_left_by_a_dead_leader_is_bound_to_the_node_that_appears(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """The previous leader wrote the launch record (and its add-node went out); nothing else. The new
    leader sends nothing and binds the node VPSie adds, without adopting it."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, start=False) as env:
        group, sim_group = await create_managed_group(env, "rec")
        vn = await create_record(env, group)
        await write_launch(env, vn.metadata.name, vn.spec.hostname, baseline=[])
        cluster = next(iter(env.sim.state.clusters))
        node = env.sim.state.add_node(cluster, sim_group)  # the add-node the dead leader sent
        env.start()
        await ready_members(env, group, 1)
        assert env.requests("POST", ADD_NODE) == []
        assert launch_of(env, vn.metadata.name)["boundHostname"].lower() == node.hostname.lower()
        assert group_nodes(env, sim_group) == [node.hostname]
        assert adopted(env, group) == []


async def test_a_launch_nobody_saw_answered_times_out_without_backing_the_group_off(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """A leader killed between the launch record and its add-node: nothing was asked of VPSie, so no
    node comes. The record fails after maxProvisionTime (a late node would be adopted), but the
    process's own crash is no evidence against VPSie: the group does not back off."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, start=False) as env:
        provisioning = {"maxProvisionTime": "1m", "backoff": {"initial": "1m", "max": "15m"}}
        group, _ = await create_managed_group(env, "unseen", provisioning=provisioning)
        vn = await create_record(env, group)
        await write_launch(env, vn.metadata.name, vn.spec.hostname, baseline=[])
        env.start()
        await eventually(
            lambda: phase(env, vn.metadata.name) == "Provisioning", within=WAIT_S, what="record cached"
        )
        await env.advance(61, group)
        await eventually(lambda: phase(env, vn.metadata.name) == "Failed", within=WAIT_S, what="timed out")
        annotations = (env.vpsienodes.store.get(vn.metadata.name) or {})["metadata"].get("annotations") or {}
        assert annotations.get(FAILED_REASON_ANNOTATION) == "ProvisionTimeout"
        assert ERROR_CLASS_ANNOTATION not in annotations
        assert env.requests("POST", ADD_NODE) == []
        env.kick(group)
        await eventually(
            lambda: env.group_status(group).get("consecutiveFailures") == 0, within=WAIT_S, what="status"
        )
        assert not env.group_status(group).get("backoffUntil")


def polled(env: Env, requests: int) -> bool:
    return len(env.requests()) >= requests


async def test_a_refused_launch_never_takes_the_node_of_a_newer_launch(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """VPSie refuses the first add-node (429): that record fails and backs the group off. The next
    record's add-node succeeds; its node is bound to it, never to the refused (older) launch, and
    nothing is deleted. (Before, the Failed record still waited, took the node by FIFO and deleted it,
    and every later launch lost its node the same way.)"""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        env.add_fault(kind="rate_limit", method="POST", path=ADD_NODE, times=1, retry_after=0)
        group, sim_group = await create_managed_group(env, "refused", minNodes=1, provisioning=FAST_BACKOFF)

        def failed() -> list[str]:
            return [
                m["metadata"]["name"]
                for m in env.members(group)
                if phase(env, m["metadata"]["name"]) == "Failed"
            ]

        await eventually(lambda: len(failed()) == 1, within=WAIT_S, what="the refused launch failed")
        (refused,) = failed()
        assert launch_of(env, refused).get("outcome") == "NotDone"
        await env.advance(2, group)  # past the back-off
        members = await ready_members(env, group, 1)
        (ready,) = [m for m in members if m["metadata"]["name"] != refused]
        for _ in range(3):  # time passes: the refused record never binds anything
            await env.advance(61, group)
            target = len(env.requests()) + 3
            await eventually(functools.partial(polled, env, target), within=WAIT_S, what="more VPSie polls")
        assert not launch_of(env, refused).get("boundHostname")
        assert phase(env, ready["metadata"]["name"]) == "Ready"
        bound = launch_of(env, ready["metadata"]["name"])["boundHostname"]
        assert group_nodes(env, sim_group) == [bound]
        assert env.requests("DELETE", DELETE_NODE) == []


async def test_a_failed_vm_record_drains_its_late_node_before_deleting_it(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Chaos finding (VPSie faults, seed 694659): a VM record failed by its provisioning timeout; its
    VM came late, joined, and the scheduler used the Ready Node at once. The Failed record bound the
    late VM and deleted it with its Node without a drain: two pods lost. Now the Node is tainted and
    drained (a PDB holds the deletion) before the instance goes, and so when the record is deleted."""
    ns = k8s_namespace
    async with lifecycle_env(k8s_cluster, ns, start=False) as env:
        group = env.name("late")
        await env.create_group(group, minNodes=0, scaleDown={"maxGracefulTermination": "30s"})
        await eventually(lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="cached")
        vn = await create_record(env, group)
        name, hostname = vn.metadata.name, vn.spec.hostname
        now = rfc3339(env.clock.now())
        failed = {
            "phase": "Failed",
            "phaseTimestamps": {"Pending": now, "Provisioning": now, "Failed": now},
            "launch": {"requestedHostname": hostname, "sentAt": now, "baseline": [], "outcome": "Done"},
        }
        await env.kube.merge_patch(VPSIENODES, name, {"status": failed}, subresource="status")
        await eventually(lambda: phase(env, name) == "Failed", within=WAIT_S, what="Failed cached")
        # The late VM, created as the record's launch asked (its tags included); it boots and joins.
        source = await env.providers.source_of(vn)
        tags = ownership_tags(await env.providers.identity.get(), group)
        result = await env.providers.launch(CreateRequest(hostname=hostname, source=source, tags=tags))
        assert result.sent
        node_name = hostname.lower()
        await eventually(lambda: env.nodes.store.get(node_name) is not None, within=WAIT_S, what="Node")
        await env.kube.create(PODS, pinned_pod("early", node_name), ns)
        await env.kube.create(PDBS, keep_one("early"), ns)
        await eventually(functools.partial(pdb_healthy, env, "early"), within=WAIT_S, what="PDB")
        env.start()
        await eventually(functools.partial(tainted, env, node_name), within=WAIT_S, what="Node tainted")
        await reconciled_more(env, "vpsienode", 10)
        assert env.requests("DELETE") == [], "the instance is not deleted while its pod cannot leave"
        assert await env.kube.get(PODS, "early", ns)
        assert launch_of(env, name).get("boundHostname", "").lower() == node_name
        # Deleting the Failed record (as the NodeGroup does) drains the same way.
        await env.kube.delete(VPSIENODES, name)
        await eventually(lambda: phase(env, name) == "Deleting", within=WAIT_S, what="Deleting")
        await reconciled_more(env, "vpsienode", 10)
        assert env.requests("DELETE") == [], "nor when the Failed record is deleted"

        await env.kube.delete(PDBS, "keep-early", ns)
        await eventually(functools.partial(pod_gone, env, "early"), within=WAIT_S, what="pod evicted")
        await eventually(lambda: len(env.requests("DELETE")) == 1, within=WAIT_S, what="VM deleted")
        await eventually(lambda: env.vpsienodes.store.get(name) is None, within=WAIT_S, what="released")
        env.sim.state.tick()
        assert env.vms(group) == []


async def unseen_vm_with_a_guarded_pod(env: Env) -> tuple[str, str, int]:
    """A VM record whose VM joined (a PDB-guarded pod runs on its Node) while every VPSie listing
    fails, so the record never saw it; a drain is requested. Returns the record, Node and fault."""
    group = env.name("unseen")
    await env.create_group(group, minNodes=0, scaleDown={"maxGracefulTermination": "30s"})
    await eventually(lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="cached")
    vn = await create_record(env, group)
    name, hostname = vn.metadata.name, vn.spec.hostname
    await write_launch(env, name, hostname)
    source = await env.providers.source_of(vn)
    tags = ownership_tags(await env.providers.identity.get(), group)
    result = await env.providers.launch(CreateRequest(hostname=hostname, source=source, tags=tags))
    assert result.sent
    node_name = hostname.lower()
    await eventually(lambda: env.nodes.store.get(node_name) is not None, within=WAIT_S, what="Node")
    await env.kube.create(PODS, pinned_pod("early", node_name), env.ns)
    await env.kube.create(PDBS, keep_one("early"), env.ns)
    await eventually(functools.partial(pdb_healthy, env, "early"), within=WAIT_S, what="PDB")
    fid = env.add_fault(kind="error", status=503, path="*", method="GET")  # listing fails
    env.start()
    await eventually(lambda: env.hits(fid) > 0, within=WAIT_S, what="VPSie refusing listings")
    assert not (env.vpsienodes.store.get(name) or {}).get("status", {}).get("nodeName")
    drain = {DRAIN_REQUESTED_ANNOTATION: rfc3339(env.clock.now()), DRAIN_REASON_ANNOTATION: "Empty"}
    await env.kube.merge_patch(VPSIENODES, name, {"metadata": {"annotations": drain}})
    await eventually(functools.partial(tainted, env, node_name), within=WAIT_S, what="Node tainted")
    await reconciled_more(env, "vpsienode", 10)
    assert phase(env, name) == "Draining", "the drain waits for its pod to leave"
    assert (env.vpsienodes.store.get(name) or {})["status"].get("nodeName") == node_name
    assert await env.kube.get(PODS, "early", env.ns)
    return name, node_name, fid


async def test_a_drain_requested_before_the_record_saw_its_node_join_evicts_the_pods_there(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Chaos finding (VPSie faults, seed 694659): VPSie's listing failed while a VM joined, so its
    record never named the Node; scale-down found the Node by hostname, asked for a drain, and the
    drain saw "no Node to drain": the record and its VM were deleted with two pods on the Node. Now
    the drain finds the Node the way scale-down does, taints it and evicts (a PDB holds it)."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, start=False, client=NO_RETRY) as env:
        name, _, fid = await unseen_vm_with_a_guarded_pod(env)
        await env.kube.delete(PDBS, "keep-early", env.ns)
        await eventually(functools.partial(pod_gone, env, "early"), within=WAIT_S, what="pod evicted")
        env.sim.faults.remove(fid)
        await eventually(lambda: env.vpsienodes.store.get(name) is None, within=WAIT_S, what="released")
        env.sim.state.tick()
        assert env.vms(env.name("unseen")) == []


async def test_a_drain_given_up_before_the_record_bound_its_instance_goes_back_to_provisioning(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Chaos finding (VPSie faults, seed 694659, after the fix above): the same drain, blocked past
    maxGracefulTermination, was given up "back to Ready" — a Ready record that had never bound its
    VM, which it then never did (an orphan check failed, the run never settled). Now it goes back to
    Provisioning, binds its VM once VPSie answers again, and joins as usual with the pod kept."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, start=False, client=NO_RETRY) as env:
        name, node_name, fid = await unseen_vm_with_a_guarded_pod(env)
        await env.advance(31, env.name("unseen"))  # past maxGracefulTermination from the drain's start
        note = await env.wait_event(name, "DrainFailed")
        assert f"PodDisruptionBudget {env.ns}/keep-early" in note
        await eventually(lambda: phase(env, name) == "Provisioning", within=WAIT_S, what="given up")
        env.sim.faults.remove(fid)
        await eventually(lambda: phase(env, name) == "Ready", within=WAIT_S, what="bound and joined")
        status = (env.vpsienodes.store.get(name) or {})["status"]
        assert status["nodeName"] == node_name
        assert status.get("instanceIdentifier"), "the record owns its VM again"
        assert not tainted(env, node_name)
        assert await env.kube.get(PODS, "early", env.ns)
        assert env.requests("DELETE") == []


# --- 3. deletion by identifier, never reduce --------------------------------------------------------


async def test_deleting_a_managed_record_deletes_exactly_its_node_and_never_reduces(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: deletion used reduce (VPSie picks the node: another record's healthy node could go)."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group, _ = await create_managed_group(env, "del", minNodes=2)
        victim, keeper = await ready_members(env, group, 2)
        victim_name, keeper_name = victim["metadata"]["name"], keeper["metadata"]["name"]
        victim_id = launch_of(env, victim_name)["boundIdentifier"]
        keeper_id = launch_of(env, keeper_name)["boundIdentifier"]
        assert victim_id != keeper_id
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 1}})
        await env.kube.delete(VPSIENODES, victim_name)
        await eventually(
            lambda: env.vpsienodes.store.get(victim_name) is None, within=WAIT_S, what="record released"
        )
        env.sim.state.tick()
        assert victim_id not in env.sim.state.nodes or env.sim.state.nodes[victim_id].delete_at is not None
        assert env.sim.state.nodes[keeper_id].delete_at is None
        assert env.requests(path=REDUCE) == []
        assert len(env.requests("DELETE", DELETE_NODE)) == 1
        assert phase(env, keeper_name) == "Ready"
        assert env.nodes.store.get(keeper["status"]["nodeName"]) is not None


# --- 5. fencing -------------------------------------------------------------------------------------


class SwitchFence:
    """A leader fence the test opens and closes."""

    def __init__(self, *, open_: bool) -> None:
        self.open = open_

    def check(self, operation: str) -> None:
        if not self.open:
            raise NotLeader(operation, FenceReason.LEASE_LOST)


async def test_a_fenced_process_sends_no_create_and_no_delete(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: a deposed leader kept creating and deleting instances until it noticed."""
    fence = SwitchFence(open_=False)
    async with lifecycle_env(k8s_cluster, k8s_namespace, fence=fence) as env:
        group = env.name("fence")
        await env.create_group(group, minNodes=2)
        await eventually(lambda: len(env.members(group)) == 2, within=WAIT_S, what="records created")
        await reconciled_more(env, "vpsienode", 20)
        assert mutations(env) == []
        assert all(not launch_of(env, m["metadata"]["name"]) for m in env.members(group))
        assert errors_and_panics(env, "vpsienode") == (0, 0)  # requeued, no error

        fence.open = True
        members = await ready_members(env, group, 2)
        names = [m["metadata"]["name"] for m in members]
        created = len(mutations(env))
        assert created == 2

        fence.open = False
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 0}})
        for name in names:
            await env.kube.delete(VPSIENODES, name)
        await eventually(
            lambda: all(phase(env, n) == "Deleting" for n in names), within=WAIT_S, what="Deleting"
        )
        await reconciled_more(env, "vpsienode", 20)
        assert len(mutations(env)) == created, "no delete reached VPSie"
        assert sorted(env.vms(group)) == sorted(names)
        assert errors_and_panics(env, "vpsienode") == (0, 0)

        fence.open = True
        await eventually(lambda: env.members(group) == [], within=WAIT_S, what="records released")
        env.sim.state.tick()
        assert env.vms(group) == []


# --- 6. outages never fail healthy nodes ------------------------------------------------------------


async def test_an_outage_longer_than_max_provision_time_fails_no_node_and_deletes_nothing(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: VPSie unreachable for maxProvisionTime failed (and deleted) nodes that were fine."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, client=NO_RETRY) as env:
        group = env.name("outage")
        provisioning = {"maxProvisionTime": "1m", **FAST_BACKOFF}
        await env.create_group(group, minNodes=2, provisioning=provisioning)
        joining, ready = (m["metadata"]["name"] for m in await ready_members(env, group, 2))
        fid = env.add_fault(kind="error", status=503, path="*", method="*")
        # VPSie is down: once it has refused a few calls, no listing begun before the outage can still
        # arrive and move the record on (an answer that arrives is evidence, used as usual).
        await eventually(lambda: env.hits(fid) > 0, within=WAIT_S, what="VPSie refusing")
        await more_hits(env, fid, 3)
        # A previous leader wrote Joining right before the Node turned Ready, then died.
        await env.kube.merge_patch(
            VPSIENODES, joining, {"status": {"phase": "Joining"}}, subresource="status"
        )
        await eventually(lambda: phase(env, joining) == "Joining", within=WAIT_S, what="Joining cached")
        for _ in range(3):  # three times maxProvisionTime of silence
            await env.advance(61, group)
            await more_hits(env, fid, 5)
            assert phase(env, joining) == "Joining"
            assert phase(env, ready) == "Ready"
        assert [r for r in mutations(env) if r["method"] == "DELETE"] == []
        assert env.condition(group, "CloudError").get("status") == "True"
        env.sim.faults.remove(fid)
        await eventually(lambda: phase(env, joining) == "Ready", within=WAIT_S, what="Joining → Ready")
        assert phase(env, ready) == "Ready"
        assert len(env.vms(group)) == 2
        assert [r["method"] for r in mutations(env)] == ["POST", "POST"]  # the two creates, nothing else


# --- 7. forced termination --------------------------------------------------------------------------


async def test_a_deletion_blocked_by_a_pdb_waits_past_the_grace_unless_forced(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: past maxGracefulTermination the instance was deleted under a PDB-protected pod."""
    ns = k8s_namespace
    async with lifecycle_env(k8s_cluster, ns) as env:
        group = env.name("pdb")
        await env.create_group(group, minNodes=1, scaleDown={"maxGracefulTermination": "30s"})
        [vn] = await ready_members(env, group, 1)
        name, node_name = vn["metadata"]["name"], vn["status"]["nodeName"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "labels": {"app": "a"}},
            "spec": {
                "nodeName": node_name,
                "containers": [{"name": "c", "image": "busybox"}],
                "tolerations": [{"operator": "Exists"}],
            },
        }
        await env.kube.create(PODS, pod, ns)
        pdb = {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "keep-a"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}},
        }
        await env.kube.create(PDBS, pdb, ns)

        async def pdb_ready() -> bool:
            got = await env.kube.get(PDBS, "keep-a", ns)
            return (got.get("status") or {}).get("currentHealthy") == 1

        await eventually(pdb_ready, within=WAIT_S, what="PDB observed the pod")
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 0}})
        await env.kube.delete(VPSIENODES, name)
        await eventually(lambda: phase(env, name) == "Deleting", within=WAIT_S, what="Deleting")
        # Past maxGracefulTermination, counted from the deletion (the API server's time: the fake clock
        # started when the environment did, some real seconds before the deletion).
        deleted = parse_time((env.vpsienodes.store.get(name) or {})["metadata"]["deletionTimestamp"])
        assert deleted is not None
        await env.advance((deleted - env.clock.now()).total_seconds() + 31, group)
        note = await env.wait_event(name, "DrainFailed")
        assert f"{ns}/app" in note
        assert f"PodDisruptionBudget {ns}/keep-a" in note

        def drained() -> dict[str, Any]:
            obj = env.vpsienodes.store.get(name) or {}
            conds = (obj.get("status") or {}).get("conditions") or []
            return next((c for c in conds if c["type"] == "Drained"), {})

        await eventually(lambda: drained().get("reason") == "DrainFailed", within=WAIT_S, what="condition")
        assert "keep-a" in drained()["message"]
        await reconciled_more(env, "vpsienode", 10)
        assert env.requests("DELETE") == [], "the instance is not deleted under a PDB"
        assert env.vms(group) == [name]
        assert env.vpsienodes.store.get(name) is not None

        await env.kube.merge_patch(
            NODEGROUPS, group, {"spec": {"scaleDown": {"forceTerminationAfterGrace": True}}}
        )

        def forced() -> bool:
            spec = (env.nodegroups.store.get(group) or {}).get("spec") or {}
            return (spec.get("scaleDown") or {}).get("forceTerminationAfterGrace") is True

        await eventually(forced, within=WAIT_S, what="group updated")
        env.kick(group)
        await eventually(lambda: env.vpsienodes.store.get(name) is None, within=WAIT_S, what="forced")
        env.sim.state.tick()
        assert env.vms(group) == []
        assert len(env.requests("DELETE")) == 1


# --- 8. cheap polling -------------------------------------------------------------------------------


async def test_ten_deletions_at_once_cost_one_listing_per_poll_window_and_one_delete_each(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: every deleting record polled VPSie on its own (a burst of reads per node per pass)."""
    poll = 1.0
    async with lifecycle_env(
        k8s_cluster, k8s_namespace, options={"delete_poll_interval": poll}, ng_resync=poll
    ) as env:
        group = env.name("poll")
        await env.create_group(group, minNodes=10, maxNodes=10)
        members = await ready_members(env, group, 10)
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 0}})
        env.sim.requests.clear()
        started = time.monotonic()
        for m in members:
            await env.kube.delete(VPSIENODES, m["metadata"]["name"])
        await eventually(lambda: env.members(group) == [], within=WAIT_S, what="all released")
        windows = math.ceil((time.monotonic() - started) / poll) + 1
        listings = env.requests("GET", "/apps/v2/vm")  # one VM list per listing (+ the pending queue)
        reads = env.requests("GET")
        assert len(listings) <= windows, (len(listings), windows)
        assert len(reads) <= 2 * windows, (len(reads), windows)
        assert len(env.requests("DELETE")) == 10
        env.sim.state.tick()
        assert env.vms(group) == []


# --- 9. VPSie errors are outcomes, not panics -------------------------------------------------------


async def test_vpsie_errors_requeue_without_panics_and_converge_once_the_fault_goes(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: a VPSie error escaped the reconciler (counted as a panic, exponential work-queue back-off
    up to 1000 s), so a record stayed stuck long after VPSie recovered."""
    async with lifecycle_env(k8s_cluster, k8s_namespace, client=NO_RETRY) as env:
        # The group's VPSie source is resolved (and kept in status) before VPSie goes down: a group
        # never resolved waits for VPSie before it plans anything (SourceUnresolved).
        group, sim_group = await create_managed_group(env, "err", minNodes=0, provisioning=FAST_BACKOFF)
        await eventually(lambda: bool(env.group_status(group).get("managed")), within=WAIT_S, what="resolved")
        fid = env.add_fault(kind="error", status=503, path="*", method="*")
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 1}})
        await eventually(lambda: len(env.members(group)) == 1, within=WAIT_S, what="record created")
        [vn] = env.members(group)
        name = vn["metadata"]["name"]
        await reconciled_more(env, "vpsienode", 10)
        assert errors_and_panics(env, "vpsienode") == (0, 0)
        assert env.hits(fid) > 0

        # The requeue delay: from the error's class (503: transient, twice the poll interval) ...
        result = await env.vn.reconcile(Request(name))
        assert result.requeue_after == pytest.approx(2 * FAST.poll_interval)
        # ... bounded by the group's back-off maximum (1 s here). Its own providers: a listing cached
        # before the fault is younger than this reconciler's 5 s max age and would launch.
        slow = VPSieNodeReconciler(
            client=env.kube,
            recorder=env.recorder,
            clock=env.clock,
            providers=new_providers(env.vpsie, env.kube, env.fence),
            vpsienodes=env.vpsienodes,
            nodes=env.nodes,
            nodegroups=env.nodegroups,
            metrics=env.metrics,
            options=replace(FAST, poll_interval=5.0),
        )
        assert (await slow.reconcile(Request(name))).requeue_after == pytest.approx(1.0)
        assert not launch_of(env, name), "nothing was launched while VPSie failed"

        env.sim.faults.remove(fid)
        started = time.monotonic()
        await eventually(lambda: phase(env, name) == "Ready", within=10.0, what="converged")
        assert time.monotonic() - started < 10.0
        assert len(group_nodes(env, sim_group)) == 1
        assert errors_and_panics(env, "vpsienode") == (0, 0)


# --- 10. credentials missing at start ---------------------------------------------------------------


async def test_credentials_missing_at_start_are_used_once_written_without_a_restart(
    k8s_cluster: ClusterHandle, k8s_namespace: str, tmp_path: Path
) -> None:
    """Finding: without credentials at start the process never used VPSie until restarted."""
    credentials = tmp_path / "vpsie-credentials"
    credentials.mkdir()
    async with lifecycle_env(k8s_cluster, k8s_namespace, unconfigured=True) as env:
        watcher = CredentialsWatcher(
            env.providers, str(credentials), build=lambda c: client_for(env.url, c), clock=env.clock
        )
        assert not await watcher.check()  # empty directory: still no client
        group, sim_group = await create_managed_group(env, "creds", minNodes=1, provisioning=FAST_BACKOFF)
        await eventually(
            lambda: env.condition(group, "CloudError").get("status") == "True",
            within=WAIT_S,
            what="CloudError",
        )
        assert env.requests() == []
        (credentials / "apiToken").write_text(API_TOKEN)
        assert await watcher.check()
        try:
            await ready_members(env, group, 1)
            await eventually(
                lambda: env.condition(group, "CloudError").get("status") == "False",
                within=WAIT_S,
                what="CloudError cleared",
            )
            assert len(group_nodes(env, sim_group)) == 1
            assert all((m.get("status") or {}).get("phase") != "Failed" for m in env.members(group))
        finally:
            if env.providers.client is not None:
                await env.providers.client.close()


# --- 11. adoption -----------------------------------------------------------------------------------


async def test_a_node_added_outside_the_autoscaler_is_adopted_exactly_once(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Finding: a node added to the VPSie group by hand was never counted (or bound to a random record)."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group, sim_group = await create_managed_group(env, "adopt")
        await eventually(lambda: bool(env.group_status(group)), within=WAIT_S, what="group synced")
        cluster = next(iter(env.sim.state.clusters))
        await env.vpsie.add_node(cluster, sim_group)  # someone else, through the API
        [hostname] = group_nodes(env, sim_group)
        started = time.monotonic()
        await eventually(lambda: len(adopted(env, group)) == 1, within=WAIT_S, what="adopted")
        assert time.monotonic() - started < NG_RESYNC + 2.0  # one resync (plus the write's way back)
        [record] = adopted(env, group)
        name = record["metadata"]["name"]
        assert record["spec"]["adopt"]["hostname"] == hostname
        note = await env.wait_event(group, "AdoptedInstance")
        assert hostname in note
        assert name in note
        await eventually(lambda: phase(env, name) == "Ready", within=WAIT_S, what="adopted node Ready")
        assert launch_of(env, name)["adopted"] is True
        await reconciled_more(env, "nodegroup", 10)
        assert len(env.members(group)) == 1, "adopted once, not once per resync"
        assert env.metrics.adopted_instances_total.labels(group)._value.get() == 1
        assert len(env.requests("POST", ADD_NODE)) == 1  # the one added by hand
        assert len(group_nodes(env, sim_group)) == 1
