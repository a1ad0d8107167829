"""The simulator's Kubernetes bridge against the real local control plane and kwok.

A booted simulated instance becomes a Ready Node with the plan's capacity and the group's labels and
taints; deleting the instance removes the Node. The bridge talks through ``vpsie_autoscaler.kube``.
"""

from __future__ import annotations

import asyncio

import pytest

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.unit.vpsie.test_contract import vm_request
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import DEFAULT_CLUSTER, SimConfig
from vpsie_autoscaler.cloudsim.kube_nodes import connect_bridge
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.bootstrap import render_user_data
from vpsie_autoscaler.vpsie.provider import Taint

pytestmark = pytest.mark.cluster

BOOT = 5.0
DELETE = 2.0
NODE_READY_S = 30.0
NODE_GONE_S = 30.0
BINARY_SUFFIX_MIB = {"Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}


def mib(quantity: str) -> int:
    """A binary-suffixed Kubernetes quantity in MiB."""
    return int(quantity[:-2]) * BINARY_SUFFIX_MIB[quantity[-2:]]


async def test_booted_managed_node_becomes_ready_and_goes_with_its_instance(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    clock = FakeClock()
    sim = Simulator(SimConfig(client_id="c", client_secret="s"), clock=clock, seed=11)
    [group] = sim.state.groups.values()
    taints = [{"key": "dedicated", "value": "general", "effect": "NoSchedule"}]
    sim.state.set_group_template(group.id, {OWNER_LABEL: k8s_namespace, "workload": "general"}, [])
    sim.state.groups[group.id].taints = taints
    node = sim.state.add_node(DEFAULT_CLUSTER, group.id)
    name = node.hostname.lower()
    api = k8s_cluster.client
    async with connect_bridge(sim.state, str(k8s_cluster.kubeconfig), clock) as bridge:
        assert await bridge.sync() == ([], [])
        await clock.advance(BOOT)
        assert await bridge.sync() == ([name], [])
        ready = await asyncio.to_thread(api.wait_node_ready, name, timeout=NODE_READY_S)
        assert ready["status"]["capacity"]["cpu"] == "4"
        assert mib(ready["status"]["capacity"]["memory"]) == 8192  # the apiserver canonicalises to 8Gi
        assert mib(ready["status"]["allocatable"]["ephemeral-storage"]) == 160 * 1024
        labels = ready["metadata"]["labels"]
        assert (labels["workload"], labels["node.kubernetes.io/instance-type"]) == ("general", "Advanced")
        assert {"key": "dedicated", "value": "general", "effect": "NoSchedule"} in ready["spec"]["taints"]
        sim.state.delete_node(DEFAULT_CLUSTER, node.identifier)
        await clock.advance(DELETE)
        assert await bridge.sync() == ([], [name])
        await asyncio.to_thread(api.wait_gone, f"/api/v1/nodes/{name}", timeout=NODE_GONE_S)


async def test_booted_vm_registers_with_its_kubelet_labels_and_taints(
    k8s_cluster: ClusterHandle, k8s_namespace: str
) -> None:
    clock = FakeClock()
    sim = Simulator(SimConfig(client_id="c", client_secret="s"), clock=clock, seed=12)
    user_data = render_user_data(
        {OWNER_LABEL: k8s_namespace, "pool": "batch"}, (Taint(key="batch", value="true", effect="NoExecute"),)
    )
    sim.state.create_vm(vm_request(f"asg-batch-{k8s_namespace[-6:]}").body("pid") | {"userData": user_data})
    await clock.advance(BOOT)
    api = k8s_cluster.client
    async with connect_bridge(sim.state, str(k8s_cluster.kubeconfig), clock) as bridge:
        [name] = (await bridge.sync())[0]
        ready = await asyncio.to_thread(api.wait_node_ready, name, timeout=NODE_READY_S)
        assert ready["metadata"]["labels"]["pool"] == "batch"
        assert {"key": "batch", "value": "true", "effect": "NoExecute"} in ready["spec"]["taints"]
        [vm] = sim.state.vms.values()
        sim.state.delete_vm({"vmIdentifier": vm.identifier, "deleteStatistic": {"reason": "test"}})
        await clock.advance(DELETE)
        await bridge.sync()
        await asyncio.to_thread(api.wait_gone, f"/api/v1/nodes/{name}", timeout=NODE_GONE_S)
