"""A running set of lifecycle controllers against the real control plane and the in-process simulator.

The reconcilers run in real controllers (work queues, workers, informers on the real API server); the
business clock is one :class:`FakeClock` shared by the reconcilers and the simulator, so a test moves
``maxProvisionTime``, drain grace periods, back-off and garbage-collection ages forward at will, while
queues and the simulator's Kubernetes bridge run on real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from hack.devcluster.cluster import ClusterHandle
from hack.devcluster.nodes import OWNER_LABEL
from tests.integration.crds import install_crds
from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from tests.support.wait import eventually
from vpsie_autoscaler.api.labels import INSTANCE_FINALIZER, NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT, Delays
from vpsie_autoscaler.cloudsim.faults import FaultSpec
from vpsie_autoscaler.cloudsim.kube_nodes import connect_bridge
from vpsie_autoscaler.controllers.binding import BindingBook
from vpsie_autoscaler.controllers.cloud import ClusterIdentity, Fence, Providers
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.garbagecollection.collector import GarbageCollector
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics, autoscaler_metrics
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupOptions, NodeGroupReconciler
from vpsie_autoscaler.controllers.objects import rfc3339
from vpsie_autoscaler.controllers.vpsienode.reconciler import LifecycleOptions, VPSieNodeReconciler
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import EVENTS, NODEGROUPS, NODES, VPSIENODES
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.runtime.controller import Controller, Request
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.informer import InformerFactory, SharedInformer
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.credentials import Credentials

STANDARD_PLAN = "7d0c1b02-9b2a-11ee-8c90-0050569c68dc"  # 2 CPU / 4 GiB in the default catalogue
WAIT_S = 30.0
CLUSTER_ID = "test-cluster"
FAST = LifecycleOptions(
    poll_interval=0.05, resync_interval=0.3, node_lost_grace=30.0, delete_poll_interval=0.5
)
NG_RESYNC = 0.3
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
    registry: CollectorRegistry
    vpsie: VPSieClient
    url: str
    fence: Fence | None
    options: LifecycleOptions
    ng_options: NodeGroupOptions
    reconcile_timeout: float | None
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

    async def stop(self) -> None:
        """Stop the controllers as a dying process would: in-flight reconciles are cut off."""
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            _done, pending = await asyncio.wait(self.tasks, timeout=0.5)
            for task in pending:
                task.cancel()  # cancelled again while draining: the workers are cancelled too
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def restart(self, *, fence: Fence | None = None) -> None:
        """A new leader: fresh providers, reconcilers and controllers (nothing in memory), same caches."""
        await self.stop()
        self.fence = fence or self.fence
        self.providers = new_providers(self.vpsie, self.kube, self.fence)
        self.vn, self.ng, self.gc, self.controllers = build_controllers(
            kube=self.kube,
            recorder=self.recorder,
            clock=self.clock,
            providers=self.providers,
            metrics=self.metrics,
            registry=self.registry,
            vpsienodes=self.vpsienodes,
            nodes=self.nodes,
            nodegroups=self.nodegroups,
            options=self.options,
            ng_options=self.ng_options,
            reconcile_timeout=self.reconcile_timeout,
        )
        self.start()

    def requests(self, method: str = "*", path: str = "*") -> list[dict[str, Any]]:
        """The simulator's request log, filtered by method and a path glob."""
        return [
            r
            for r in list(self.sim.requests)
            if method in ("*", r["method"]) and fnmatch.fnmatchcase(r["path"], path)
        ]

    def add_fault(self, **spec: Any) -> int:
        return self.sim.faults.add(FaultSpec(**spec)).id

    def hits(self, fault_id: int) -> int:
        return next((f.hits for f in self.sim.faults.all() if f.id == fault_id), 0)

    def sample(self, name: str, **labels: str) -> float:
        """A metric sample of this process's registry (0 when absent)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def reconciles(self, controller: str) -> float:
        return sum(
            self.sample("controller_runtime_reconcile_total", controller=controller, result=r)
            for r in ("success", "error", "requeue", "requeue_after")
        )

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


def new_providers(vpsie: VPSieClient | None, kube: KubeClient, fence: Fence | None) -> Providers:
    return Providers(vpsie, identity=ClusterIdentity(kube, CLUSTER_ID), fence=fence)


def build_controllers(
    *,
    kube: KubeClient,
    recorder: EventRecorder,
    clock: FakeClock,
    providers: Providers,
    metrics: AutoscalerMetrics,
    registry: CollectorRegistry,
    vpsienodes: SharedInformer,
    nodes: SharedInformer,
    nodegroups: SharedInformer,
    options: LifecycleOptions,
    ng_options: NodeGroupOptions,
    reconcile_timeout: float | None = None,
) -> tuple[VPSieNodeReconciler, NodeGroupReconciler, GarbageCollector, list[Controller]]:
    """The lifecycle controllers as :func:`~vpsie_autoscaler.controllers.lifecycle.setup_lifecycle`
    wires them (one binding book shared by both reconcilers)."""
    book = BindingBook()
    deps = Deps.build(client=kube, recorder=recorder, clock=clock, metrics=metrics, dry_run=options.dry_run)
    vn = VPSieNodeReconciler(
        client=kube,
        recorder=recorder,
        clock=clock,
        providers=providers,
        metrics=metrics,
        vpsienodes=vpsienodes,
        nodes=nodes,
        nodegroups=nodegroups,
        options=options,
        book=book,
    )
    ng = NodeGroupReconciler(
        deps,
        providers=providers,
        nodegroups=nodegroups,
        vpsienodes=vpsienodes,
        nodes=nodes,
        options=ng_options,
        book=book,
    )
    gc = GarbageCollector(deps, providers=providers, nodegroups=nodegroups, vpsienodes=vpsienodes)
    vn_controller = Controller(
        "vpsienode", vn, workers=4, registry=registry, reconcile_timeout=reconcile_timeout
    )
    vn_controller.watch(vpsienodes)
    vn_controller.watch(nodes, vn.requests_for_node)
    ng_controller = Controller("nodegroup", ng, workers=2, registry=registry)
    ng_controller.watch(nodegroups)
    ng_controller.watch(vpsienodes, ng.requests_for_vpsienode)
    return vn, ng, gc, [vn_controller, ng_controller]


def client_for(url: str, credentials: Credentials | None = None, **overrides: Any) -> VPSieClient:
    """A VPSie client of the simulator (the static API token unless ``credentials`` say otherwise)."""
    settings: dict[str, Any] = {
        "base_url": url,
        "api_token": API_TOKEN,
        "rate_limit_per_minute": 600_000,
        "rate_limit_burst": 10_000,
    }
    if credentials is not None:
        settings.update(
            api_token=credentials.api_token,
            client_id=credentials.client_id,
            client_secret=credentials.client_secret,
        )
    settings.update(overrides)
    return VPSieClient(VPSieClientConfig(**settings), clock=RealClock(), registry=CollectorRegistry())


async def _cleanup(env: Env) -> None:
    await env.stop()
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
    fence: Fence | None = None,
    options: dict[str, Any] | None = None,
    ng_resync: float = NG_RESYNC,
    client: dict[str, Any] | None = None,
    unconfigured: bool = False,
    reconcile_timeout: float | None = None,
    **sim_overrides: Any,
) -> AsyncIterator[Env]:
    """``options`` override :data:`FAST`; ``client`` overrides the VPSie client's configuration;
    ``unconfigured`` starts the providers without a client (credentials missing at start)."""
    await asyncio.to_thread(install_crds, cluster.client)
    clock = FakeClock(start=datetime.now(UTC))
    config = sim_config(
        delays=delays or Delays(pending_seconds=0, boot_seconds=0, delete_seconds=0), **sim_overrides
    )
    lifecycle_options = replace(FAST, dry_run=dry_run, **(options or {}))
    ng_options = NodeGroupOptions(resync_interval=ng_resync)
    async with (
        running_simulator(config, clock=clock) as (sim, url),
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
        client_for(url, **(client or {})) as vpsie,
        connect_bridge(sim.state, str(cluster.kubeconfig), RealClock()) as bridge,
    ):
        registry = CollectorRegistry()
        informers = InformerFactory(kube, registry=registry)
        recorder = EventRecorder(kube, "vpsie-autoscaler", registry=registry)
        recorder_task = recorder.start()
        providers = new_providers(None if unconfigured else vpsie, kube, fence)
        metrics = autoscaler_metrics(registry)
        vpsienodes = informers.informer_for(VPSIENODES)
        nodes = informers.informer_for(NODES)
        nodegroups = informers.informer_for(NODEGROUPS)
        vn, ng, gc, controllers = build_controllers(
            kube=kube,
            recorder=recorder,
            clock=clock,
            providers=providers,
            metrics=metrics,
            registry=registry,
            vpsienodes=vpsienodes,
            nodes=nodes,
            nodegroups=nodegroups,
            options=lifecycle_options,
            ng_options=ng_options,
            reconcile_timeout=reconcile_timeout,
        )
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
            controllers,
            recorder,
            registry,
            vpsie,
            url,
            fence,
            lifecycle_options,
            ng_options,
            reconcile_timeout,
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


# --- helpers shared by the lifecycle tests ------------------------------------------------------------


def phase(env: Env, name: str) -> str | None:
    obj = env.vpsienodes.store.get(name) or {}
    return (obj.get("status") or {}).get("phase")


def launch_of(env: Env, name: str) -> dict[str, Any]:
    obj = env.vpsienodes.store.get(name) or {}
    return dict((obj.get("status") or {}).get("launch") or {})


def group_nodes(env: Env, group_id: int) -> list[str]:
    """Every node of a simulated managed group, booting ones included (not those being deleted)."""
    return [
        n.hostname for n in env.sim.state.nodes.values() if n.group_id == group_id and n.delete_at is None
    ]


async def ready_members(env: Env, group: str, count: int) -> list[dict[str, Any]]:
    def ok() -> bool:
        members = [m for m in env.members(group) if (m.get("status") or {}).get("phase") == "Ready"]
        return len(members) == count and env.group_status(group).get("readyNodes") == count

    await eventually(ok, within=WAIT_S, what=f"{count} Ready node(s) in {group}")
    return env.members(group)


async def create_managed_group(env: Env, base: str, **spec: Any) -> tuple[str, int]:
    """A NodeGroup on the simulator's managed node group (its nodes get kwok-labelled for the namespace);
    returns the NodeGroup's name and the VPSie group id."""
    [sim_group] = env.sim.state.groups.values()
    env.sim.state.set_group_template(sim_group.id, {OWNER_LABEL: env.ns}, [])
    group = env.name(base)
    body = vm_group(group, env.ns, **spec)
    body["spec"].pop("vm")
    body["spec"]["managed"] = {
        "clusterIdentifier": next(iter(env.sim.state.clusters)),
        "nodeGroupName": sim_group.name,
        "sizeId": sim_group.size,
    }
    await env.kube.create(NODEGROUPS, body)
    await eventually(lambda: env.nodegroups.store.get(group) is not None, within=WAIT_S, what="group cached")
    return group, sim_group.id


async def create_record(env: Env, group: str) -> VPSieNode:
    """A VPSieNode as a previous leader left it: created, finalizer set, status not yet written."""
    vn = new_vpsienode(NodeGroup.from_k8s(env.nodegroups.store.get(group) or {}))
    body = creation_body(vn)
    await env.kube.create(
        VPSIENODES, body | {"metadata": {**body["metadata"], "finalizers": [INSTANCE_FINALIZER]}}
    )
    return vn


async def write_launch(env: Env, name: str, requested: str, baseline: list[str] | None = None) -> None:
    """The launch record as a previous leader wrote it right before its create call (write-ahead)."""
    now = rfc3339(env.clock.now())
    status = {
        "phase": "Provisioning",
        "phaseTimestamps": {"Pending": now, "Provisioning": now},
        "launch": {"requestedHostname": requested, "sentAt": now, "baseline": baseline or []},
    }
    await env.kube.merge_patch(VPSIENODES, name, {"status": status}, subresource="status")
    await eventually(lambda: bool(launch_of(env, name)), within=WAIT_S, what="launch record cached")
