"""An invalid NodeGroup already stored never stops the autoscaler (every controller in one manager, the
VPSie simulator, the real API server).

The invalid group is stored while the CRD lacks the quantity rules (the CRD is served without them for
a moment, as a cluster upgraded from an older chart would have stored it), then the real CRDs are
installed again: the object stays stored and every later write to it is ratcheted.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import secrets
from typing import Any

import pytest
from pydantic import SecretStr

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.integration.crds import CRD_API, install_crds
from tests.integration.test_autoscaling_cycle import deployment, force_delete
from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.support.wait import eventually
from vpsie_autoscaler.api.crdgen import nodegroup_crd
from vpsie_autoscaler.api.labels import NODEGROUP_FINALIZER, NODEGROUP_LABEL
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT, Delays
from vpsie_autoscaler.cloudsim.kube_nodes import connect_bridge
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.nodegroup.reconciler import CONDITION_VALIDATION_FAILED, REASON_INVALID
from vpsie_autoscaler.controllers.setup import setup
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import DEPLOYMENTS, EVENTS, NODEGROUPS, VPSIENODES
from vpsie_autoscaler.runtime.manager import Manager, ManagerOptions
from vpsie_autoscaler.runtime.metrics import new_registry

pytestmark = pytest.mark.cluster

WAIT_S = 90.0
INVALID_CPU = "1e999999999"
"""The value of the report: refused by the model and today's CRD. Stored before the rule existed, it
must cost nothing: the CRD's rules refuse a three-digit exponent before ``quantity()`` parses it, so
writes to the object (its status, its finalizer) stay fast."""
STANDARD_PLAN = "7d0c1b02-9b2a-11ee-8c90-0050569c68dc"  # 2 CPU / 4 GiB in the default catalogue


def group_body(name: str, ns: str, *, resources: dict[str, str] | None = None) -> dict[str, Any]:
    template: dict[str, Any] = {"labels": {OWNER_LABEL: ns, "pool": name}}
    if resources is not None:
        template["resources"] = resources
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {
            "minNodes": 0,
            "maxNodes": 5,
            "vm": {
                "resourceIdentifier": STANDARD_PLAN,
                "osIdentifier": DEFAULT_OS,
                "dcIdentifier": DEFAULT_DATACENTER,
                "projectId": DEFAULT_PROJECT,
            },
            "template": template,
        },
    }


def _strip_rules(schema: Any) -> Any:
    """The schema without CEL rules and string bounds (what an older CRD served)."""
    if isinstance(schema, dict):
        return {
            k: _strip_rules(v)
            for k, v in schema.items()
            if k not in {"x-kubernetes-validations", "maxLength", "pattern"}
        }
    if isinstance(schema, list):
        return [_strip_rules(v) for v in schema]
    return schema


def _serve_crd(cluster: ClusterHandle, crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    current = cluster.client.get(f"{CRD_API}/{name}")
    body = {**crd, "metadata": {**crd["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
    cluster.client.request("PUT", f"{CRD_API}/{name}", body)


async def store_invalid(cluster: ClusterHandle, kube: KubeClient, body: dict[str, Any]) -> None:
    """Create ``body`` while the CRD lacks its validation rules, then serve the real CRDs again."""
    lax = copy.deepcopy(nodegroup_crd())
    for version in lax["spec"]["versions"]:
        version["schema"] = _strip_rules(version["schema"])
    await asyncio.to_thread(_serve_crd, cluster, lax)
    try:

        async def created() -> bool:
            try:
                await kube.create(NODEGROUPS, body)
            except errors.Invalid:
                return False  # the API server still validates with the old schema
            return True

        await eventually(created, within=30.0, what="the invalid NodeGroup stored")
    finally:
        await asyncio.to_thread(install_crds, cluster.client)

    async def served() -> bool:
        try:
            await kube.list(NODEGROUPS)
            await kube.list(VPSIENODES)
        except errors.TooManyRequests:  # "storage is (re)initializing" after a CRD update
            return False
        return True

    await eventually(served, within=30.0, what="the CRDs served again")


async def test_an_invalid_group_is_reported_and_skipped_while_the_other_scales_up_and_its_deletion_completes(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    suffix = secrets.token_hex(3)
    good, bad = f"ok{suffix}", f"bad{suffix}"
    await asyncio.to_thread(install_crds, k8s_cluster.client)
    config = sim_config(delays=Delays(pending_seconds=0, boot_seconds=0.5, delete_seconds=0))
    async with (
        running_simulator(config) as (sim, url),
        connect_bridge(sim.state, str(k8s_cluster.kubeconfig), sim.clock) as bridge,
        await KubeClient.connect(str(k8s_cluster.kubeconfig)) as kube,
    ):
        bridge_task = asyncio.ensure_future(bridge.run())
        invalid = group_body(bad, ns, resources={"cpu": INVALID_CPU, "memory": "4Gi"})
        invalid["metadata"]["finalizers"] = [NODEGROUP_FINALIZER]  # it was valid (and ours) once
        await store_invalid(k8s_cluster, kube, invalid)
        await kube.create(NODEGROUPS, group_body(good, ns))  # capacity from the plan
        settings = Settings(
            kubeconfig=str(k8s_cluster.kubeconfig),
            namespace=ns,
            metrics_bind_address="0",
            health_probe_bind_address="0",
            scan_interval=1.0,
            vpsie_base_url=url,
            vpsie_api_token=SecretStr(API_TOKEN),
            vpsie_rate_limit=60_000,
        )
        registry = new_registry()
        try:
            async with await KubeClient.connect(settings.kubeconfig, registry=registry) as client:
                manager = Manager(
                    client,
                    ManagerOptions(
                        namespace=ns,
                        metrics_bind_address="0",
                        health_probe_bind_address="0",
                        leader_elect=False,
                    ),
                    registry=registry,
                )
                setup(manager, settings)
                run = asyncio.ensure_future(manager.run(handle_signals=False))
                try:
                    await scenario(kube, ns, good, bad, registry)
                finally:
                    manager.request_stop()
                    await asyncio.wait_for(run, 30)
        finally:
            bridge_task.cancel()
            with contextlib.suppress(errors.NotFound):
                await kube.delete(DEPLOYMENTS, "web", ns)
            await force_delete(kube, good)
            with contextlib.suppress(errors.KubeError):  # normally deleted by the scenario already
                await force_delete(kube, bad)


async def scenario(kube: KubeClient, ns: str, good: str, bad: str, registry: Any) -> None:
    body = deployment(ns, 2)
    body["spec"]["template"]["spec"]["nodeSelector"]["pool"] = good
    await kube.create(DEPLOYMENTS, body, ns)

    async def members(group: str) -> list[dict[str, Any]]:
        listed = await kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={group}")
        return list(listed["items"])

    async def scaled_up() -> bool:
        return len(await members(good)) >= 1

    await eventually(scaled_up, within=WAIT_S, what=f"VPSieNodes created for {good}")

    async def reported() -> bool:
        obj = await kube.get(NODEGROUPS, bad)
        found = (obj.get("status") or {}).get("conditions") or []
        conds = [c for c in found if c["type"] == CONDITION_VALIDATION_FAILED]
        events = [
            e
            for e in (await kube.list(EVENTS))["items"]
            if e.get("reason") == REASON_INVALID and (e.get("regarding") or {}).get("name") == bad
        ]
        return bool(conds) and conds[0]["status"] == "True" and bool(events)

    await eventually(reported, within=WAIT_S, what=f"{bad} reported: ValidationFailed and an Event")
    assert registry.get_sample_value("vpsie_autoscaler_invalid_objects", {"kind": "NodeGroup"}) == 1
    assert await members(bad) == []

    await kube.delete(NODEGROUPS, bad)

    async def gone() -> bool:
        try:
            await kube.get(NODEGROUPS, bad)
        except errors.NotFound:
            return True
        return False

    await eventually(gone, within=WAIT_S, what=f"the invalid NodeGroup {bad} deleted")
