"""The lifecycle controllers against the real control plane, kwok and the VPSie simulator.

Each test names the failure mode it proves absent.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL, make_kwok_node
from tests.integration.lifecycle_env import (
    CLUSTER_ID,
    WAIT_S,
    create_record,
    group_nodes,
    lifecycle_env,
    phase,
    ready_members,
    vm_group,
    write_launch,
)
from tests.integration.test_kubectl import KUBECTL, kubectl, table_column
from tests.support.wait import eventually
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    INSTANCE_FINALIZER,
    NODEGROUP_FINALIZER,
    NODEGROUP_LABEL,
    TO_BE_DELETED_TAINT,
    VPSIENODE_LABEL,
)
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.cloudsim.config import Delays
from vpsie_autoscaler.cloudsim.faults import FaultKind, FaultSpec
from vpsie_autoscaler.controllers.cloud import ownership_tags
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.metrics import autoscaler_metrics
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupOptions, NodeGroupReconciler
from vpsie_autoscaler.controllers.objects import rfc3339
from vpsie_autoscaler.controllers.vpsienode_keys import ERROR_CLASS_ANNOTATION
from vpsie_autoscaler.kube.resources import NODEGROUPS, NODES, PDBS, PODS, VPSIENODES
from vpsie_autoscaler.runtime.controller import Request

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

QUOTA_MESSAGE = "Worker nodes count exceeds the allowed limit"
OUT_OF_STOCK_MESSAGE = "Size is out of stock"  # a VPSie business-rule refusal: plan_unavailable


async def test_min_nodes_gets_a_ready_node_with_the_group_labels_and_taints(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed trap: node labels and taints never applied."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group = env.name("web")
        await env.create_group(group, minNodes=1)
        [vn] = await ready_members(env, group, 1)
        name = vn["metadata"]["name"]
        assert INSTANCE_FINALIZER in vn["metadata"]["finalizers"]
        assert env.vms(group) == [name]
        node = env.nodes.store.get(vn["status"]["nodeName"])
        assert node is not None
        labels = node["metadata"]["labels"]
        assert (labels["pool"], labels[NODEGROUP_LABEL], labels[VPSIENODE_LABEL]) == (group, group, name)
        assert {"key": "dedicated", "value": group, "effect": "NoSchedule"} in node["spec"]["taints"]
        ng = await env.kube.get(NODEGROUPS, group)
        assert NODEGROUP_FINALIZER in ng["metadata"]["finalizers"]
        assert env.condition(group, "Ready")["reason"] == "Active"
        assert env.condition(group, "AtMinCapacity")["status"] == "True"
        assert "created 1 node(s) to reach minNodes=1" in ng["status"]["lastDecision"]
        await env.wait_event(group, "ScaledUp")
        await env.wait_event(name, "Launched")
        assert env.metrics.nodegroup_ready_nodes.labels(group)._value.get() == 1
        assert env.metrics.nodegroup_hourly_cost.labels(group)._value.get() == pytest.approx(0.1)
        assert env.metrics.node_provision_duration_seconds._sum.get() >= 0  # observed once per node


async def test_a_ready_record_whose_node_vanished_fails_and_is_replaced(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed trap: a Ready record whose Node vanished is counted forever."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group = env.name("lost")
        await env.create_group(group, minNodes=1)
        [vn] = await ready_members(env, group, 1)
        lost = vn["metadata"]["name"]
        # The VM dies behind our back: the simulator removes it and its Node.
        [vm] = [v for v in env.sim.state.vms.values() if v.hostname == lost]
        del env.sim.state.vms[vm.identifier]
        env.sim.state.changed()
        await eventually(lambda: env.nodes.store.get(lost) is None, within=WAIT_S, what="Node gone")
        env.kick(group)
        await eventually(
            lambda: env.group_status(group).get("readyNodes") == 0, within=WAIT_S, what="not ready"
        )
        await env.advance(31, group)
        await eventually(lambda: phase(env, lost) == "Failed", within=WAIT_S, what="record Failed")
        failed = env.vpsienodes.store.get(lost) or {}
        assert ERROR_CLASS_ANNOTATION not in failed["metadata"].get("annotations", {})
        assert "NodeLost" in failed["status"]["lastError"]
        env.kick(group)
        await eventually(
            lambda: (
                len(
                    [
                        m
                        for m in env.members(group)
                        if m["metadata"]["name"] != lost and (m.get("status") or {}).get("phase") == "Ready"
                    ]
                )
                == 1
            ),
            within=WAIT_S,
            what="replacement Ready",
        )
        assert env.condition(group, "Backoff")["status"] == "False"  # a lost node is no provisioning failure
        assert env.group_status(group)["currentNodes"] == 1


async def test_lowering_max_nodes_drains_the_surplus_and_converges(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed traps: desired below current never converging; deleting nodes double counted."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group = env.name("max")
        await env.create_group(group, minNodes=3)
        await ready_members(env, group, 3)
        # Exactly three were ever created: reconciles on a cache that lags our creates wait for them.
        assert env.metrics.scale_up_total.labels(group, "MinNodes")._value.get() == 3
        assert len(env.vms(group)) == 3
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 0, "maxNodes": 1}})
        await eventually(
            lambda: len(env.members(group)) == 1 and len(env.vms(group)) == 1,
            within=WAIT_S,
            what="one node left",
        )
        await eventually(
            lambda: (
                env.group_status(group).get("currentNodes") == 1
                and env.group_status(group).get("deletingNodes") == 0
            ),
            within=WAIT_S,
            what="status converged",
        )
        note = await env.wait_event(group, "ScaleDownRequested")
        assert "above maxNodes=1" in note
        assert env.metrics.scale_down_total.labels(group, "AboveMaxSize")._value.get() == 2
        leftover = [
            n for n in env.nodes.store.list() if n["metadata"].get("labels", {}).get(NODEGROUP_LABEL) == group
        ]
        assert len(leftover) == 1


async def test_drain_evicts_pods_and_a_pdb_that_forbids_it_aborts_with_drain_failed(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    async with lifecycle_env(k8s_cluster, ns) as env:
        group = env.name("drain")
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
        request = {
            DRAIN_REQUESTED_ANNOTATION: rfc3339(env.clock.now()),
            DRAIN_REASON_ANNOTATION: "Underutilized",
        }
        await env.kube.merge_patch(VPSIENODES, name, {"metadata": {"annotations": request}})
        await eventually(lambda: phase(env, name) == "Draining", within=WAIT_S, what="Draining")

        def tainted() -> bool:
            node = env.nodes.store.get(node_name) or {}
            return any(t["key"] == TO_BE_DELETED_TAINT for t in (node.get("spec") or {}).get("taints") or [])

        await eventually(tainted, within=WAIT_S, what="to-be-deleted taint")
        await eventually(
            lambda: (
                "keep-a" in ((env.vpsienodes.store.get(name) or {}).get("status") or {}).get("lastError", "")
            ),
            within=WAIT_S,
            what="blocker recorded",
        )

        # What is left of the drain shows: one pod, held by its PDB, in status and in kubectl get vn.
        def status() -> dict[str, Any]:
            return (env.vpsienodes.store.get(name) or {}).get("status") or {}

        await eventually(lambda: status().get("podsRemaining") == 1, within=WAIT_S, what="1 pod left")
        if KUBECTL is not None:
            seen: list[str] = []

            async def shown() -> bool:
                # Retried: a CRD replaced in a reused cluster reaches the table convertor asynchronously.
                code, out = await kubectl(k8s_cluster, "get", "vn", name)
                seen[:] = [out]
                return code == 0 and "PODS LEFT" in out and table_column(out, "PODS LEFT") == {name: "1"}

            try:
                await eventually(shown, within=WAIT_S, what="PODS LEFT in kubectl get vn")
            except AssertionError as err:
                raise AssertionError(f"{err}; last output: {seen}") from None

        await env.advance(31, group)
        note = await env.wait_event(name, "DrainFailed")
        assert note.startswith("drain did not finish within maxGracefulTermination 30s: blocked by ")
        assert f"{ns}/app" in note
        assert f"PodDisruptionBudget {ns}/keep-a" in note
        await eventually(
            lambda: phase(env, name) == "Ready" and not tainted(), within=WAIT_S, what="back to Ready"
        )
        assert "podsRemaining" not in status(), "the count goes with the drain"
        annotations = (env.vpsienodes.store.get(name) or {})["metadata"].get("annotations") or {}
        assert DRAIN_REQUESTED_ANNOTATION not in annotations
        assert env.metrics.drain_failures_total.labels(group)._value.get() == 1  # the alert's signal

        # Without the PDB the same request drains: the pod is evicted, then instance and Node go.
        await env.kube.delete(PDBS, "keep-a", ns)
        request[DRAIN_REQUESTED_ANNOTATION] = rfc3339(env.clock.now())
        await env.kube.merge_patch(VPSIENODES, name, {"metadata": {"annotations": request}})
        await eventually(lambda: env.vpsienodes.store.get(name) is None, within=WAIT_S, what="record deleted")
        assert env.metrics.evicted_pods_total._value.get() >= 1
        assert name not in env.vms(group)
        await eventually(lambda: env.nodes.store.get(node_name) is None, within=WAIT_S, what="Node deleted")


async def test_not_ready_within_max_provision_time_fails_deletes_the_instance_and_backs_off(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed traps: instances left billing after a failed provisioning; timers lost (all derived from
    status, so the same answer comes back after a restart)."""
    slow = Delays(pending_seconds=0, boot_seconds=3600, delete_seconds=0)  # listed at once, never up in time
    async with lifecycle_env(k8s_cluster, k8s_namespace, delays=slow) as env:
        group = env.name("slow")
        provisioning = {"maxProvisionTime": "1m", "backoff": {"initial": "1m", "max": "15m"}}
        await env.create_group(group, minNodes=1, provisioning=provisioning)
        await eventually(lambda: len(env.vms(group)) == 1, within=WAIT_S, what="instance requested")
        [vn] = env.members(group)
        name = vn["metadata"]["name"]
        await eventually(lambda: phase(env, name) == "Provisioning", within=WAIT_S, what="Provisioning")
        await env.advance(61, group)
        await eventually(lambda: phase(env, name) == "Failed", within=WAIT_S, what="Failed")
        failed = env.vpsienodes.store.get(name) or {}
        assert failed["metadata"]["annotations"][ERROR_CLASS_ANNOTATION] == "transient"
        assert failed["status"]["lastError"] == "ProvisionTimeout: not Ready within maxProvisionTime 1m"
        await eventually(lambda: name not in env.vms(group), within=WAIT_S, what="instance deleted")
        await eventually(
            lambda: env.condition(group, "Backoff").get("status") == "True", within=WAIT_S, what="Backoff"
        )
        st = env.group_status(group)
        assert st["consecutiveFailures"] == 1
        assert st["backoffUntil"]
        assert env.condition(group, "Ready")["reason"] == "Backoff"
        assert len(env.members(group)) == 1  # no new attempt during the back-off
        await env.wait_event(group, "BackOff")
        assert env.metrics.nodegroup_backoff.labels(group)._value.get() == 1

        # A restarted controller (a new process, nothing in memory) derives the same back-off.
        deps = Deps.build(
            client=env.kube,
            recorder=env.recorder,
            clock=env.clock,
            metrics=autoscaler_metrics(CollectorRegistry()),
        )
        restarted = NodeGroupReconciler(
            deps,
            providers=env.providers,
            nodegroups=env.nodegroups,
            vpsienodes=env.vpsienodes,
            nodes=env.nodes,
            options=NodeGroupOptions(resync_interval=0.3),
        )
        await restarted.reconcile(Request(group))
        assert (await env.kube.get(NODEGROUPS, group))["status"]["backoffUntil"] == st["backoffUntil"]
        assert len(env.members(group)) == 1

        # After the back-off the group tries again (the Failed record stays for the back-off history).
        await env.advance(61, group)
        await eventually(lambda: len(env.members(group)) == 2, within=WAIT_S, what="second attempt")
        assert phase(env, name) == "Failed"

        # The Failed record goes after its TTL; its instance is long gone.
        await env.clock.advance(3601)
        report = await env.gc.collect()
        assert name in report.expired
        await eventually(lambda: env.vpsienodes.store.get(name) is None, within=WAIT_S, what="record expired")


async def test_a_quota_refusal_fails_at_once_and_backs_off_for_the_maximum(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        env.sim.faults.add(
            FaultSpec(kind=FaultKind.ERROR_200, path="/apps/v2/vm", method="POST", message=QUOTA_MESSAGE)
        )
        group = env.name("quota")
        await env.create_group(group, minNodes=1)
        await eventually(
            lambda: env.condition(group, "Backoff").get("reason") == "Quota",
            within=WAIT_S,
            what="quota back-off",
        )
        [vn] = env.members(group)
        assert vn["metadata"]["annotations"][ERROR_CLASS_ANNOTATION] == "quota"
        assert env.vms(group) == []
        note = await env.wait_event(vn["metadata"]["name"], "CreateFailed")
        assert QUOTA_MESSAGE in note
        st = env.group_status(group)
        failed_at = vn["status"]["phaseTimestamps"]["Failed"]
        assert st["backoffUntil"] > failed_at  # 15 minutes later: the maximum at once


async def test_a_vm_launch_recorded_by_a_dead_leader_is_bound_not_created_again(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """A previous leader wrote the launch record and VPSie created the VM; it died before binding it.

    The new leader never creates a second VM (the record counts as sent): it binds the VM by hostname.
    """
    async with lifecycle_env(k8s_cluster, k8s_namespace, start=False) as env:
        group = env.name("adopt")
        await env.create_group(group)
        await eventually(
            lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="group cached"
        )
        vn = await create_record(env, group)
        await write_launch(env, vn.metadata.name, vn.spec.hostname)
        tags = ownership_tags(CLUSTER_ID, group)
        env.sim.state.create_vm(vm_request(vn.spec.hostname, tags=tags).body("pid"))
        env.start()
        await eventually(
            lambda: phase(env, vn.metadata.name) == "Ready", within=WAIT_S, what="bound node Ready"
        )
        assert env.vms(group) == [vn.spec.hostname]
        assert env.requests("POST", "/apps/v2/vm") == []  # never asked again
        launch = (env.vpsienodes.store.get(vn.metadata.name) or {})["status"]["launch"]
        assert launch["boundHostname"] == vn.spec.hostname
        assert not launch.get("adopted")


async def test_a_vpsienode_deleted_before_its_instance_appears_leaks_nothing(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed trap: an instance created asynchronously after its record was deleted keeps billing."""
    slow = Delays(pending_seconds=120, boot_seconds=120, delete_seconds=0)
    async with lifecycle_env(k8s_cluster, k8s_namespace, delays=slow) as env:
        group = env.name("pend")
        await env.create_group(group, minNodes=1)
        await eventually(lambda: len(env.vms(group)) == 1, within=WAIT_S, what="instance requested")
        [vn] = env.members(group)
        name = vn["metadata"]["name"]
        await eventually(lambda: phase(env, name) == "Provisioning", within=WAIT_S, what="Provisioning")
        await env.kube.merge_patch(NODEGROUPS, group, {"spec": {"minNodes": 0}})
        await env.kube.delete(VPSIENODES, name)
        # Still pending in VPSie: it cannot be deleted yet, so the record stays (finalizer).
        await eventually(lambda: phase(env, name) == "Deleting", within=WAIT_S, what="Deleting")
        assert env.vms(group) == [name]
        await env.advance(121, group)
        await eventually(
            lambda: env.vpsienodes.store.get(name) is None, within=WAIT_S, what="record released"
        )
        env.sim.state.tick()
        assert env.vms(group) == []


async def test_a_node_labelled_for_another_record_is_never_claimed_twice(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed trap: two records claiming one node."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group = env.name("twice")
        await env.create_group(group)
        await eventually(
            lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="group cached"
        )
        vn = new_vpsienode(NodeGroup.from_k8s(env.nodegroups.store.get(group) or {}))
        squatter = make_kwok_node(
            vn.spec.hostname, "2", "4Gi", labels={VPSIENODE_LABEL: "someone-else", OWNER_LABEL: k8s_namespace}
        )
        await env.kube.create(NODES, squatter)
        await env.kube.create(VPSIENODES, creation_body(vn))
        note = await env.wait_event(vn.metadata.name, "NodeClaimedByAnother")
        assert "someone-else" in note
        obj = env.vpsienodes.store.get(vn.metadata.name) or {}
        assert not (obj.get("status") or {}).get("nodeName")
        assert phase(env, vn.metadata.name) != "Ready"


async def test_gc_deletes_only_vms_tagged_for_this_cluster_and_reports_vms_merely_named_like_ours(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed trap: deleting VMs by name alone (another cluster's group of the same name, a person's VM)."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group, gone = env.name("gc"), env.name("gcdel")
        await env.create_group(group)
        await env.create_group(gone)
        await eventually(
            lambda: (
                env.nodegroups.store.get(group) is not None and env.nodegroups.store.get(gone) is not None
            ),
            within=WAIT_S,
            what="groups cached",
        )
        assert env.providers.client is not None
        foreign, orphan, stray = f"{group}-nt0rs", f"{group}-orph1", f"{gone}-orph2"
        # Straight through the client, as someone else (or a crashed leader of ours) would have.
        await env.providers.client.create_vm(vm_request(foreign, tags=("team:web",)))
        await env.providers.client.create_vm(vm_request(orphan, tags=ownership_tags(CLUSTER_ID, group)))
        await env.providers.client.create_vm(vm_request(stray, tags=ownership_tags(CLUSTER_ID, gone)))
        # The NodeGroup of the stray VM is deleted (it had no VPSieNode left).
        await env.kube.delete(NODEGROUPS, gone)
        await eventually(lambda: env.nodegroups.store.get(gone) is None, within=WAIT_S, what="group gone")

        report = await env.gc.collect()
        assert sorted(report.orphans) == sorted([orphan, stray])
        assert report.named_like_ours == [foreign]
        assert report.deleted == []
        assert env.metrics.orphan_instances._value.get() == 2
        await env.wait_event(group, "OrphanInstance")
        note = await env.wait_event(group, "NamedLikeOurs")
        assert foreign in note

        await env.clock.advance(601)  # older than the grace period
        report = await env.gc.collect()
        assert sorted(report.deleted) == sorted([orphan, stray])
        assert report.named_like_ours == [foreign]
        env.sim.state.tick()
        assert env.vms(group) == [foreign]
        assert env.vms(gone) == []
        deletes = env.requests("DELETE", "/apps/v2/vm*")
        assert len(deletes) == 2  # one per tagged orphan, none for the foreign VM
        [kept] = [v for v in env.sim.state.vms.values() if v.hostname == foreign]
        assert kept.delete_at is None


async def test_deleting_a_group_deletes_its_nodes_then_lets_the_group_go(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """Seed trap: instances left billing when a group is deleted."""
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        group = env.name("del")
        await env.create_group(group, minNodes=2)
        await ready_members(env, group, 2)
        await env.kube.delete(NODEGROUPS, group)
        await eventually(lambda: env.nodegroups.store.get(group) is None, within=WAIT_S, what="group gone")
        assert env.members(group) == []
        env.sim.state.tick()
        assert env.vms(group) == []


async def test_dry_run_reports_the_decision_and_changes_nothing(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    async with lifecycle_env(k8s_cluster, k8s_namespace, dry_run=True) as env:
        group = env.name("dry")
        await env.create_group(group, minNodes=2)
        await eventually(
            lambda: "dry-run: would create 2" in (env.group_status(group).get("lastDecision") or ""),
            within=WAIT_S,
            what="dry-run decision",
        )
        await env.wait_event(group, "DryRun")
        assert env.members(group) == []
        assert env.vms(group) == []
        ng = await env.kube.get(NODEGROUPS, group)
        assert NODEGROUP_FINALIZER not in (ng["metadata"].get("finalizers") or [])


async def test_dry_run_never_creates_an_instance_for_an_existing_record(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    async with lifecycle_env(k8s_cluster, k8s_namespace, dry_run=True) as env:
        group = env.name("dryvn")
        await env.create_group(group)
        await eventually(
            lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="group cached"
        )
        vn = new_vpsienode(NodeGroup.from_k8s(env.nodegroups.store.get(group) or {}))
        await env.kube.create(VPSIENODES, creation_body(vn))
        note = await env.wait_event(vn.metadata.name, "DryRun")
        assert note.startswith("dry-run: would")
        obj = await env.kube.get(VPSIENODES, vn.metadata.name)
        assert INSTANCE_FINALIZER not in (obj["metadata"].get("finalizers") or [])
        assert env.vms(group) == []


async def test_a_refused_add_node_of_a_managed_group_fails_at_once_and_backs_off(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    """The managed provider writes (and on refusal drops) its claim on the VPSieNode during the create.

    The record must still reach Failed with the error class: the claim writes are this reconcile's own,
    not a concurrent change, so they must not turn the failure into a Conflict and an add-node retry
    loop that never backs the group off.
    """
    async with lifecycle_env(k8s_cluster, k8s_namespace) as env:
        [sim_group] = env.sim.state.groups.values()
        env.sim.faults.add(
            FaultSpec(
                kind=FaultKind.ERROR_200,
                path=f"*/add/slave/group/{sim_group.id}",
                method="POST",
                message=OUT_OF_STOCK_MESSAGE,
            )
        )
        group = env.name("oos")
        body = vm_group(group, k8s_namespace, minNodes=1)
        body["spec"].pop("vm")
        body["spec"]["managed"] = {
            "clusterIdentifier": next(iter(env.sim.state.clusters)),
            "nodeGroupName": sim_group.name,
            "sizeId": sim_group.size,
        }
        await env.kube.create(NODEGROUPS, body)
        await eventually(
            lambda: env.condition(group, "Backoff").get("status") == "True",
            within=WAIT_S,
            what="back-off after the refused add-node",
        )
        failed = [vn for vn in env.members(group) if (vn.get("status") or {}).get("phase") == "Failed"]
        assert failed, "the refused record is Failed"
        assert failed[0]["metadata"]["annotations"][ERROR_CLASS_ANNOTATION] == "plan_unavailable"
        launch = failed[0]["status"]["launch"]  # written ahead of the call, never bound
        assert not launch.get("boundHostname")
        note = await env.wait_event(failed[0]["metadata"]["name"], "CreateFailed")
        assert OUT_OF_STOCK_MESSAGE in note
        assert group_nodes(env, sim_group.id) == []
        add_node_calls = [
            r for r in env.sim.requests if r["path"].endswith(f"/add/slave/group/{sim_group.id}")
        ]
        assert len(add_node_calls) == 1, "a refused create is never asked again from a stale cache"
        st = env.group_status(group)
        assert st["consecutiveFailures"] >= 1
        assert st["backoffUntil"] > failed[0]["status"]["phaseTimestamps"]["Failed"]
