"""A running set of lifecycle controllers against the real control plane and the in-process simulator.

The reconcilers run in real controllers (work queues, workers, informers on the real API server); the
business clock is one :class:`FakeClock` shared by the reconcilers and the simulator, so a test moves
``maxProvisionTime``, drain grace periods, back-off and garbage-collection ages forward at will, while
queues and the simulator's Kubernetes bridge run on real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.integration.crds import install_crds
from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.support.wait import eventually
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.controllers.garbagecollection.collector import GarbageCollector, GCOptions
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics, autoscaler_metrics
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupOptions, NodeGroupReconciler
from vpsie_autoscaler.controllers.providers import Providers
from vpsie_autoscaler.controllers.vpsienode.reconciler import LifecycleOptions, VPSieNodeReconciler
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import EVENTS, NODEGROUPS, NODES, VPSIENODES
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.runtime.controller import Controller, Request
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.informer import InformerFactory, SharedInformer
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.sim.app import Simulator
from vpsie_autoscaler.vpsie.sim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT, Delays
from vpsie_autoscaler.vpsie.sim.kube_nodes import connect_bridge

STANDARD_PLAN = "7d0c1b02-9b2a-11ee-8c90-0050569c68dc"  # 2 CPU / 4 GiB in the default catalogue
WAIT_S = 30.0
FAST = LifecycleOptions(poll_interval=0.05, resync_interval=0.3, node_lost_grace=30.0)
GROUP_API = "/apis/autoscaler.vpsie.com/v1alpha1"


def vm_group(name: str, ns: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "minNodes": 0,
        "maxNodes": 5,
        "vm": {
            "resourceIdentifier": STANDARD_PLAN,
            "osIdentifier": DEFAULT_OS,
            "dcIdentifier": DEFAULT_DATACENTER,
            "projectId": DEFAULT_PROJECT,
        },
        "template": {
            "labels": {"pool": name, OWNER_LABEL: ns},
            "taints": [{"key": "dedicated", "value": name, "effect": "NoSchedule"}],
            "monthlyPrice": 73.0,
        },
    }
    body.update(spec)
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": body,
    }


@dataclass
class Env:
    cluster: ClusterHandle
    ns: str
    kube: KubeClient
    sim: Simulator
    clock: FakeClock
    providers: Providers
    metrics: AutoscalerMetrics
    informers: InformerFactory
    vpsienodes: SharedInformer
    nodes: SharedInformer
    nodegroups: SharedInformer
    vn: VPSieNodeReconciler
    ng: NodeGroupReconciler
    gc: GarbageCollector
    controllers: list[Controller]
    recorder: EventRecorder
    groups: list[str] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def name(self, base: str = "g") -> str:
        name = f"{base}{secrets.token_hex(3)}"
        self.groups.append(name)
        return name

    async def create_group(self, name: str, **spec: Any) -> None:
        await self.kube.create(NODEGROUPS, vm_group(name, self.ns, **spec))

    def start(self) -> None:
        """Run the controllers (tests that prepare state first call this later)."""
        if not self.tasks:
            self.tasks = [asyncio.create_task(c.run()) for c in self.controllers]

    def members(self, group: str) -> list[dict[str, Any]]:
        return [o for o in self.vpsienodes.store.list() if (o.get("spec") or {}).get("nodeGroup") == group]

    def group_status(self, group: str) -> dict[str, Any]:
        obj = self.nodegroups.store.get(group) or {}
        return dict(obj.get("status") or {})

    def condition(self, group: str, type_: str) -> dict[str, Any]:
        for cond in self.group_status(group).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    def vms(self, group: str) -> list[str]:
        return sorted(v.hostname for v in self.sim.state.vms.values() if v.hostname.startswith(f"{group}-"))

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        listed = await self.kube.list(EVENTS)
        return [
            (e.get("type", ""), e.get("reason", ""), e.get("note", ""))
            for e in listed.get("items") or []
            if (e.get("regarding") or {}).get("name") == name
        ]

    async def wait_event(self, name: str, reason: str, *, within: float = WAIT_S) -> str:
        found: list[str] = []

        async def seen() -> bool:
            found[:] = [note for _, r, note in await self.events(name) if r == reason]
            return bool(found)

        await eventually(seen, within=within, what=f"Event {reason} on {name}")
        return found[0]

    def kick(self, group: str) -> None:
        """Ask both controllers to look at the group and its nodes now (after moving the clock)."""
        self.controllers[1].enqueue(Request(group))
        for obj in self.members(group):
            self.controllers[0].enqueue(Request(obj["metadata"]["name"]))

    async def advance(self, seconds: float, group: str) -> None:
        await self.clock.advance(seconds)
        self.kick(group)


async def _cleanup(env: Env) -> None:
    for task in env.tasks:
        task.cancel()
    await asyncio.gather(*env.tasks, return_exceptions=True)
    for group in env.groups:
        listed = await env.kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={group}")
        for obj in listed.get("items") or []:
            with contextlib.suppress(errors.NotFound):
                await env.kube.merge_patch(
                    VPSIENODES, obj["metadata"]["name"], {"metadata": {"finalizers": None}}
                )
                await env.kube.delete(VPSIENODES, obj["metadata"]["name"])
        with contextlib.suppress(errors.NotFound):
            await env.kube.merge_patch(NODEGROUPS, group, {"metadata": {"finalizers": None}})
            await env.kube.delete(NODEGROUPS, group)


@contextlib.asynccontextmanager
async def lifecycle_env(
    cluster: ClusterHandle,
    ns: str,
    *,
    delays: Delays | None = None,
    dry_run: bool = False,
    start: bool = True,
    **sim_overrides: Any,
) -> AsyncIterator[Env]:
    await asyncio.to_thread(install_crds, cluster.client)
    clock = FakeClock(start=datetime.now(UTC))
    config = sim_config(
        delays=delays or Delays(pending_seconds=0, boot_seconds=0, delete_seconds=0), **sim_overrides
    )
    async with (
        running_simulator(config, clock=clock) as (sim, url),
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
        VPSieClient(
            VPSieClientConfig(
                base_url=url, api_token=API_TOKEN, rate_limit_per_minute=600_000, rate_limit_burst=10_000
            ),
            clock=RealClock(),
            registry=CollectorRegistry(),
        ) as vpsie,
        connect_bridge(sim.state, str(cluster.kubeconfig), RealClock()) as bridge,
    ):
        registry = CollectorRegistry()
        informers = InformerFactory(kube, registry=registry)
        recorder = EventRecorder(kube, "vpsie-autoscaler", registry=registry)
        recorder_task = recorder.start()
        providers = Providers(vpsie, kube, clock=clock)
        metrics = autoscaler_metrics(registry)
        vpsienodes = informers.informer_for(VPSIENODES)
        nodes = informers.informer_for(NODES)
        nodegroups = informers.informer_for(NODEGROUPS)
        common: dict[str, Any] = {
            "client": kube,
            "recorder": recorder,
            "clock": clock,
            "providers": providers,
            "metrics": metrics,
        }
        vn = VPSieNodeReconciler(
            **common,
            vpsienodes=vpsienodes,
            nodes=nodes,
            nodegroups=nodegroups,
            options=LifecycleOptions(**{**FAST.__dict__, "dry_run": dry_run}),
        )
        ng = NodeGroupReconciler(
            **common,
            nodegroups=nodegroups,
            vpsienodes=vpsienodes,
            nodes=nodes,
            options=NodeGroupOptions(dry_run=dry_run, resync_interval=0.3),
        )
        gc = GarbageCollector(
            **common, nodegroups=nodegroups, vpsienodes=vpsienodes, options=GCOptions(dry_run=dry_run)
        )
        vn_controller = Controller("vpsienode", vn, workers=4, registry=registry)
        vn_controller.watch(vpsienodes)
        vn_controller.watch(nodes, vn.requests_for_node)
        ng_controller = Controller("nodegroup", ng, workers=2, registry=registry)
        ng_controller.watch(nodegroups)
        ng_controller.watch(vpsienodes, ng.requests_for_vpsienode)
        informers.start()
        assert await informers.wait_for_cache_sync(WAIT_S)
        bridge_task = asyncio.create_task(bridge.run())
        env = Env(
            cluster,
            ns,
            kube,
            sim,
            clock,
            providers,
            metrics,
            informers,
            vpsienodes,
            nodes,
            nodegroups,
            vn,
            ng,
            gc,
            [vn_controller, ng_controller],
            recorder,
        )
        if start:
            env.start()
        try:
            yield env
        finally:
            await _cleanup(env)
            bridge_task.cancel()
            await asyncio.gather(bridge_task, return_exceptions=True)
            await informers.stop()
            await recorder.stop()
            recorder_task.cancel()
            await asyncio.gather(recorder_task, return_exceptions=True)
