"""A whole scale-up / scale-down cycle in-process: every controller (``controllers.setup.setup``) in one
manager, the VPSie simulator with its Kubernetes bridge, the real scheduler and controller-manager.

The capacity of the group comes from the simulated VPSie catalogue (the template states none), so
this also proves the plan catalogue is wired to the lifecycle's VPSie client.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import pytest
from pydantic import SecretStr

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.integration.crds import install_crds
from tests.integration.lifecycle_env import vm_group
from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.support.wait import eventually
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.cloudsim.config import Delays
from vpsie_autoscaler.cloudsim.kube_nodes import connect_bridge
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.setup import setup
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import DEPLOYMENTS, NODEGROUPS, NODES, PODS, VPSIENODES
from vpsie_autoscaler.runtime.manager import Manager, ManagerOptions
from vpsie_autoscaler.runtime.metrics import new_registry

pytestmark = pytest.mark.cluster

WAIT_S = 90.0
REPLICAS = 3
POD_CPU = "1500m"  # one per 2-cpu Standard node: three pods need three nodes


def deployment(ns: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {OWNER_LABEL: ns},
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app:1",
                            "resources": {"requests": {"cpu": POD_CPU}},
                        }
                    ],
                },
            },
        },
    }


async def test_a_deployment_gets_exactly_its_nodes_and_they_go_when_it_shrinks(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    group = f"c{secrets.token_hex(3)}"
    await asyncio.to_thread(install_crds, k8s_cluster.client)
    config = sim_config(delays=Delays(pending_seconds=0, boot_seconds=0.5, delete_seconds=0))
    async with (
        running_simulator(config) as (sim, url),
        connect_bridge(sim.state, str(k8s_cluster.kubeconfig), sim.clock) as bridge,
        await KubeClient.connect(str(k8s_cluster.kubeconfig)) as kube,
    ):
        bridge_task = asyncio.ensure_future(bridge.run())
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
        body = vm_group(group, ns)
        body["spec"]["template"] = {"labels": {OWNER_LABEL: ns}}  # no resources: the plan says
        body["spec"]["scaleDown"] = {"unneededTime": "2s", "delayAfterScaleUp": "0s", "disruptionBudget": 3}
        await kube.create(NODEGROUPS, body)
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
                    await cycle(kube, ns, group, registry)
                finally:
                    manager.request_stop()
                    await asyncio.wait_for(run, 30)
        finally:
            bridge_task.cancel()
            await force_delete(kube, group)


async def force_delete(kube: KubeClient, group: str) -> None:
    """Remove what is left of the group (the controllers that would finalize it are stopped)."""
    listed = await kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={group}")
    for obj in listed["items"]:
        with contextlib.suppress(errors.NotFound):
            await kube.merge_patch(VPSIENODES, obj["metadata"]["name"], {"metadata": {"finalizers": None}})
            await kube.delete(VPSIENODES, obj["metadata"]["name"])
    with contextlib.suppress(errors.NotFound):
        await kube.merge_patch(NODEGROUPS, group, {"metadata": {"finalizers": None}})
        await kube.delete(NODEGROUPS, group)


async def cycle(kube: KubeClient, ns: str, group: str, registry: Any) -> None:
    async def members() -> list[dict[str, Any]]:
        listed = await kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={group}")
        return list(listed["items"])

    async def running_pods() -> int:
        pods = (await kube.list(PODS, ns))["items"]
        return sum(1 for p in pods if p["status"].get("phase") == "Running")

    await kube.create(DEPLOYMENTS, deployment(ns, REPLICAS), ns)

    async def all_running() -> bool:
        return await running_pods() == REPLICAS

    await eventually(all_running, within=WAIT_S, what=f"{REPLICAS} pods Running on new nodes")
    assert len(await members()) == REPLICAS
    assert (
        registry.get_sample_value(
            "vpsie_autoscaler_scale_up_total", {"nodegroup": group, "reason": "UnschedulablePods"}
        )
        == REPLICAS
    )
    latency_count = registry.get_sample_value("vpsie_autoscaler_scale_up_decision_latency_seconds_count")
    assert latency_count == REPLICAS

    await kube.merge_patch(DEPLOYMENTS, "web", {"spec": {"replicas": 0}}, ns)

    async def all_gone() -> bool:
        nodes = await kube.list(NODES, label_selector=f"{NODEGROUP_LABEL}={group}")
        return not await members() and not nodes["items"]

    await eventually(
        all_gone, within=WAIT_S, what="every node of the group removed after the workload shrank"
    )
    removed = registry.get_sample_value(
        "vpsie_autoscaler_scale_down_total", {"nodegroup": group, "reason": "Empty"}
    )
    assert removed == REPLICAS
