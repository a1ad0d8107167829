"""Launch and termination benchmark: VPSie calls, latency and VPSieNode writes of the lifecycle.

The path measured: a VPSieNode created by scale-up → finalizer → launch record (write-ahead) → one
add-node call → bound to the node VPSie adds → Ready; and a VPSieNode deleted → targeted delete of its
node → gone from VPSie's listing → finalizer dropped. Everything with the product's defaults: the
VPSie client built from ``Settings`` (rate limit 100/min with a burst of 60), ``LifecycleOptions()``
(poll 5 s, delete poll 10 s), the NodeGroup controller on ``--scan-interval`` 10 s, leader election on.

Setup (all on 127.0.0.1): the local control plane (its own, or ``DEVCLUSTER_KUBECONFIG``), the VPSie
simulator in this process (one managed cluster, one VPSie node group of size 57, small delays) with its
Kubernetes bridge (a booted node becomes a kwok Node), and the lifecycle controllers
(:func:`~vpsie_autoscaler.controllers.lifecycle.setup_lifecycle`: VPSieNode, NodeGroup, garbage
collection) in a :class:`~vpsie_autoscaler.runtime.manager.Manager`. Scale-up and scale-down do not
run: the benchmark creates VPSieNodes the way scale-up does (``new_vpsienode`` + ``creation_body``,
all of a burst at once) and deletes them the way scale-down deletes empty nodes.

Scenarios, one after the other on one NodeGroup (the client's token bucket is full before each burst):

1. a burst of 10 VPSieNodes;
2. a burst of 50;
3. 20 of the Ready VPSieNodes (no pods) deleted at once.

How it is measured:

- **VPSie calls**: a middleware put in front of the simulator's own records every request on arrival
  (monotonic time, method, path; the node identifier of a delete). The client's
  ``vpsie_autoscaler_vpsie_api_requests_total`` is printed as a cross-check.
- **Which record an add-node serves**: VPSie's add-node names no node, so the benchmark marks it: a
  ``Providers`` subclass sets a context variable with the record's hostname around ``launch``, and an
  aiohttp trace hook on the client's session adds it as a header the middleware reads. Per record:
  creation (just before its POST) → its add-node on arrival at the simulator.
- **VPSieNode writes**: a watch on the group's VPSieNodes from before the burst. Every event is one
  write that changed the object (a new resourceVersion; the create is the ADDED event). "Until the
  add-node was sent" counts the events up to the first version carrying ``status.launch`` (the reconciler
  writes the launch record and then calls, with no write in between); "until Ready" up to the first
  version in phase Ready. Write *requests* of the controllers' own client to VPSieNodes (including
  no-ops and 409 Conflicts, which change nothing) are counted beside it.

Targets (from the redesign): burst of 10 ≤ 13 VPSie calls until every add-node is sent, each add-node ≤
1 s after its VPSieNode, ≤ 3 writes per record until its add-node (create, finalizer, launch record);
burst of 50 all add-nodes within 5 s; deleting 20 ≤ 1 read of the group per scan interval (10 s) and
exactly one delete per node. The script prints results and pass/miss, and never fails on a miss.

Run: ``make bench`` or ``.venv/bin/python -m benchmarks.launch_bench [--boot-delay S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Final

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from hack.devcluster.cluster import ClusterHandle
from hack.stack.control_plane import local_control_plane
from hack.stack.kube import install_crds
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import Delays, SimCluster, SimConfig, SimGroup
from vpsie_autoscaler.cloudsim.kube_nodes import connect_bridge
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.cloud import ClusterIdentity, Providers, client_config
from vpsie_autoscaler.controllers.lifecycle import setup_lifecycle
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import NAMESPACES, NODEGROUPS, NODES, VPSIENODES
from vpsie_autoscaler.logging import configure
from vpsie_autoscaler.runtime.clock import RealClock
from vpsie_autoscaler.runtime.manager import Manager, ManagerOptions
from vpsie_autoscaler.runtime.metrics import new_registry
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.provider import CreateRequest, MutationResult

TOKEN: Final = "bench-launch-token"
CLUSTER_ID: Final = "c0ffee00-1a2b-11ef-9c1a-0050569c68dc"
VPSIE_GROUP: Final = "GRP-Advanced-bench"
SIZE_ID: Final = 57  # Advanced, 4 cpu / 8 GiB
GROUP: Final = "launch"
NAMESPACE: Final = "bench-launch"
RECORD_HEADER: Final = "X-Bench-Record"
BURST_SMALL: Final = 10
BURST_LARGE: Final = 50
DELETE_COUNT: Final = 20
SCAN_INTERVAL: Final = 10.0  # the product's default --scan-interval (also the delete poll interval)
TARGET_CALLS_10: Final = 13
TARGET_LATENCY_10: Final = 1.0
TARGET_WRITES_TO_LAUNCH: Final = 3
TARGET_ALL_50: Final = 5.0
TARGET_READS_PER_SCAN: Final = 1
POLL_INTERVAL: Final = 5.0  # LifecycleOptions().poll_interval: the launch baseline accepts a listing this old
STEP_TIMEOUT: Final = 180.0
DEADLINE_SECONDS: Final = 20 * 60.0
POLL: Final = 0.05

RECORD: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_record", default=None)


# --- instrumentation ---------------------------------------------------------------------------------


@dataclass
class Arrival:
    t: float
    method: str
    path: str
    record: str | None = None
    identifier: str | None = None
    status: int | None = None

    @property
    def op(self) -> str:
        if "/add/slave/" in self.path:
            return "add_node"
        if self.path.endswith("/delete/slave"):
            return "delete_node"
        if "/node/groups/byClusterId/" in self.path:
            return "list_node_groups"
        if "/k8s/cluster/byId/" in self.path and self.method == "GET":
            return "get_k8s_cluster"
        if "/vm" in self.path:
            return f"vm {self.method}"
        return f"{self.method} {self.path}"


class SimLog:
    """Every request to the simulator, stamped on arrival (outside the simulator's own middleware)."""

    def __init__(self) -> None:
        self.arrivals: list[Arrival] = []

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/_sim"):
            return await handler(request)
        entry = Arrival(time.monotonic(), request.method, request.path, request.headers.get(RECORD_HEADER))
        self.arrivals.append(entry)
        if entry.op == "delete_node":
            with contextlib.suppress(ValueError):
                entry.identifier = str((await request.json()).get("identifier"))  # cached for the handler
        response = await handler(request)
        entry.status = response.status
        return response

    def between(self, start: float, end: float = float("inf")) -> list[Arrival]:
        return [a for a in self.arrivals if start <= a.t <= end]


def traced_session() -> aiohttp.ClientSession:
    """The VPSie client's session, with the record being launched (if any) as a header."""

    async def on_start(_: aiohttp.ClientSession, __: SimpleNamespace, params: Any) -> None:
        record = RECORD.get()
        if record is not None:
            params.headers[RECORD_HEADER] = record

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return aiohttp.ClientSession(trace_configs=[trace])


class TracedProviders(Providers):
    """The product's providers; ``launch`` marks its VPSie calls with the record's hostname."""

    async def launch(self, request: CreateRequest) -> MutationResult:
        token = RECORD.set(request.hostname)
        try:
            return await super().launch(request)
        finally:
            RECORD.reset(token)


class CountingKube(KubeClient):
    """The controllers' Kubernetes client; counts its write requests to each VPSieNode."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: Counter[str] = Counter()
        self.conflicts: Counter[str] = Counter()
        self.conflict_kinds: Counter[str] = Counter()

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if method not in {"PATCH", "PUT", "DELETE"} or "/vpsienodes/" not in path:
            return await super()._call(method, path, **kwargs)
        name = path.split("/vpsienodes/", 1)[1].split("/", 1)[0]
        self.writes[name] += 1
        try:
            return await super()._call(method, path, **kwargs)
        except errors.Conflict:
            self.conflicts[name] += 1
            self.conflict_kinds[f"{method} {'status' if path.endswith('/status') else 'object'}"] += 1
            raise


@dataclass
class Version:
    t: float
    type: str
    phase: str | None
    launched: bool
    identifier: str | None
    finalized: bool


@dataclass
class Watched:
    """Every version of the group's VPSieNodes seen by a watch."""

    versions: dict[str, list[Version]] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)
    restarts: int = 0

    def add(self, event: dict[str, Any]) -> None:
        obj = event["object"]
        name = obj["metadata"]["name"]
        if event["type"] == "DELETED":
            self.gone[name] = time.monotonic()
            return
        status = obj.get("status") or {}
        self.versions.setdefault(name, []).append(
            Version(
                time.monotonic(),
                event["type"],
                status.get("phase"),
                bool(status.get("launch")),
                status.get("instanceIdentifier"),
                bool(obj["metadata"].get("finalizers")),
            )
        )

    def phase(self, name: str) -> str | None:
        seen = self.versions.get(name)
        return seen[-1].phase if seen else None

    def first(self, name: str, done: Callable[[Version], bool]) -> float | None:
        return next((v.t for v in self.versions.get(name, []) if done(v)), None)

    def writes_until(self, name: str, done: Callable[[Version], bool]) -> int | None:
        for i, v in enumerate(self.versions.get(name, []), start=1):
            if done(v):
                return i
        return None


async def watch(kube: KubeClient, resource_version: str, watched: Watched) -> None:
    rv = resource_version
    while True:
        try:
            async with contextlib.aclosing(
                kube.watch(
                    VPSIENODES,
                    resource_version=rv,
                    timeout_seconds=300,
                    label_selector=f"{NODEGROUP_LABEL}={GROUP}",
                )
            ) as stream:
                async for event in stream:
                    rv = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        watched.add(event)
        except errors.KubeError:
            watched.restarts += 1  # a gap: counts may be short (reported)
            await asyncio.sleep(0.2)


# --- setup ---------------------------------------------------------------------------------------------


def nodegroup_body(max_nodes: int) -> dict[str, Any]:
    """A managed NodeGroup with the product's defaults for everything but its size bounds."""
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": GROUP},
        "spec": {
            "minNodes": 0,
            "maxNodes": max_nodes,
            "managed": {"clusterIdentifier": CLUSTER_ID, "nodeGroupName": VPSIE_GROUP, "sizeId": SIZE_ID},
            "template": {"labels": {"bench.vpsie.com/pool": GROUP}},
        },
    }


async def until(
    what: str, check: Callable[[], bool], within: float = STEP_TIMEOUT, interval: float = POLL
) -> float:
    """Wait for ``check``; returns the monotonic time it first held. Raises TimeoutError naming it."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {within:.0f}s")
        await asyncio.sleep(interval)
    return time.monotonic()


@dataclass
class Bench:
    kube: KubeClient
    controllers_kube: CountingKube
    sim: Simulator
    log: SimLog
    providers: Providers
    registry: Any
    watched: Watched
    group: NodeGroup
    results: list[tuple[str, str, str, bool | None]] = field(default_factory=list)

    def vpsie_requests_metric(self) -> float:
        total = 0.0
        for metric in self.registry.collect():
            if metric.name == "vpsie_autoscaler_vpsie_api_requests":
                total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
        return total

    def result(self, what: str, value: str, target: str, ok: bool | None) -> None:
        self.results.append((what, value, target, ok))

    async def bucket_full(self) -> float:
        client = self.providers.client
        assert client is not None
        limiter = client.rate_limiter
        await until("the VPSie client's token bucket full", lambda: limiter.available >= limiter.burst - 0.5)
        return limiter.available

    def last(self, op: str) -> float:
        return max((a.t for a in self.log.arrivals if a.op == op), default=0.0)

    async def stale_listing(self) -> tuple[float, float]:
        """Wait until the shared listing is older than the poll interval, so the launches need a fresh
        one (the worse phase; that listing also reads the group list when its 60 s cache ran out).
        Returns the ages of the last cluster-detail read and of the last group-list read."""
        await until(
            "a stale listing",
            lambda: time.monotonic() - self.last("get_k8s_cluster") > POLL_INTERVAL + 0.5,
            within=3 * SCAN_INTERVAL,
        )
        now = time.monotonic()
        return now - self.last("get_k8s_cluster"), now - self.last("list_node_groups")

    async def burst(self, count: int) -> tuple[float, dict[str, float]]:
        """Create ``count`` VPSieNodes at once; returns the burst start and each one's creation time."""
        created: dict[str, float] = {}

        async def one() -> None:
            while True:
                node = new_vpsienode(self.group)
                t = time.monotonic()
                try:
                    await self.kube.create(VPSIENODES, creation_body(node))
                except errors.AlreadyExists:
                    continue
                created[node.metadata.name] = t
                return

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(count)))
        return start, created

    def add_nodes(self, names: set[str]) -> dict[str, Arrival]:
        found: dict[str, Arrival] = {}
        for a in self.log.arrivals:
            if a.op == "add_node" and a.record in names:
                found.setdefault(a.record, a)
        return found

    def all_ready(self, names: set[str]) -> bool:
        return all(self.watched.phase(n) == "Ready" for n in names)


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    return f"min {min(values):.2f} / p50 {statistics.median(values):.2f} / max {max(values):.2f} s"


async def scenario_burst(bench: Bench, count: int) -> set[str]:
    tokens = await bench.bucket_full()
    ages = await bench.stale_listing()
    metric_before = bench.vpsie_requests_metric()
    start, created = await bench.burst(count)
    names = set(created)
    await until(f"{count} add-node calls", lambda: len(bench.add_nodes(names)) == count)
    adds = bench.add_nodes(names)
    last_add = max(a.t for a in adds.values())
    calls = bench.log.between(start, last_add)
    by_op = Counter(a.op for a in calls)
    latency = {n: adds[n].t - created[n] for n in names}
    since_burst = [a.t - start for a in adds.values()]
    to_launch = [bench.watched.writes_until(n, lambda v: v.launched) for n in names]
    await until(f"{count} VPSieNodes Ready", lambda: bench.all_ready(names), interval=0.2)
    ready_at = time.monotonic()
    to_ready = [bench.watched.writes_until(n, lambda v: v.phase == "Ready") for n in names]
    ready_t = [next(v.t for v in bench.watched.versions[n] if v.phase == "Ready") - created[n] for n in names]
    requests = [bench.controllers_kube.writes[n] for n in names]
    calls_all = bench.log.between(start, ready_at)
    print(
        f"\n== burst of {count} (token bucket {tokens:.0f}; last cluster-detail read {ages[0]:.1f} s, "
        f"last node-group list {ages[1]:.1f} s before the burst)"
    )
    print(f"VPSie calls until every add-node arrived: {len(calls)} ({dict(by_op)})")
    print(f"VPSieNode created → its add-node at the simulator: {fmt(list(latency.values()))}")
    print(f"burst start → add-node at the simulator: {fmt(since_burst)}")
    stages: dict[str, Callable[[Version], bool]] = {
        "finalizer written": lambda v: v.finalized,
        "launch record written": lambda v: v.launched,
    }
    for stage, done in stages.items():
        seen = [t - created[n] for n in names if (t := bench.watched.first(n, done)) is not None]
        print(f"VPSieNode created → {stage} (seen by the watch): {fmt(seen)}")
    reads = [(a.op, round(a.t - start, 2)) for a in calls if a.op != "add_node"]
    print(f"reads before the last add-node (s after the burst start): {reads}")
    print(f"writes per VPSieNode until its add-node (watch): {sorted(Counter(to_launch).items(), key=str)}")
    print(f"writes per VPSieNode until Ready (watch): {sorted(Counter(to_ready).items(), key=str)}")
    conflicts = sum(bench.controllers_kube.conflicts[n] for n in names)
    print(
        f"write requests per VPSieNode by the controllers until Ready: {sorted(Counter(requests).items())} "
        f"({conflicts} answered 409 Conflict; all runs so far: {dict(bench.controllers_kube.conflict_kinds)})"
    )
    print(f"VPSieNode created → Ready: {fmt(ready_t)}")
    print(
        f"VPSie calls from the burst until all Ready: {len(calls_all)} "
        f"({dict(Counter(a.op for a in calls_all))}); client metric delta "
        f"{bench.vpsie_requests_metric() - metric_before:.0f}"
    )
    if count == BURST_SMALL:
        bench.result(
            f"burst {count}: VPSie calls until every add-node sent",
            str(len(calls)),
            f"≤ {TARGET_CALLS_10}",
            len(calls) <= TARGET_CALLS_10,
        )
        worst = max(latency.values())
        bench.result(
            f"burst {count}: VPSieNode created → its add-node (max)",
            f"{worst:.2f} s",
            f"each ≤ {TARGET_LATENCY_10:.0f} s",
            worst <= TARGET_LATENCY_10,
        )
        known = [w for w in to_launch if w is not None]
        bench.result(
            f"burst {count}: writes per VPSieNode until its add-node (max)",
            str(max(known)) if known else "?",
            f"≤ {TARGET_WRITES_TO_LAUNCH}",
            bool(known) and len(known) == count and max(known) <= TARGET_WRITES_TO_LAUNCH,
        )
        ready_known = [w for w in to_ready if w is not None]
        bench.result(
            f"burst {count}: writes per VPSieNode until Ready (min-max)",
            f"{min(ready_known)}-{max(ready_known)}" if ready_known else "?",
            "reported",
            None,
        )
    else:
        worst = max(since_burst)
        bench.result(
            f"burst {count}: burst start → last add-node",
            f"{worst:.2f} s",
            f"≤ {TARGET_ALL_50:.0f} s",
            worst <= TARGET_ALL_50,
        )
        bench.result(
            f"burst {count}: VPSie calls until every add-node sent", str(len(calls)), "reported", None
        )
    return names


def reads_per_window(reads: list[float], window: float) -> int:
    """The most reads in any window of ``window`` seconds (sliding, so no alignment hides a pair)."""
    best = 0
    for i, t in enumerate(reads):
        best = max(best, sum(1 for u in reads[i:] if u - t < window))
    return best


async def scenario_delete(bench: Bench, names: set[str]) -> None:
    victims = sorted(names)[:DELETE_COUNT]
    identifiers = {n: bench.watched.versions[n][-1].identifier for n in victims}
    start = time.monotonic()
    await asyncio.gather(*(bench.kube.delete(VPSIENODES, n) for n in victims))
    await until(f"{DELETE_COUNT} VPSieNodes gone", lambda: all(n in bench.watched.gone for n in victims))
    end = max(bench.watched.gone[n] for n in victims)
    calls = bench.log.between(start, end)
    detail = [a.t - start for a in calls if a.op == "get_k8s_cluster"]
    groups = [a.t - start for a in calls if a.op == "list_node_groups"]
    deletes = Counter(a.identifier for a in calls if a.op == "delete_node")
    wanted = set(identifiers.values())
    per_node = [deletes.get(i, 0) for i in wanted]
    gone = [bench.watched.gone[n] - start for n in victims]
    print(f"\n== {DELETE_COUNT} Ready VPSieNodes (no pods) deleted at once")
    print(f"VPSie calls until all gone: {len(calls)} ({dict(Counter(a.op for a in calls))})")
    print(f"cluster-detail reads at (s after the deletes): {[round(t, 2) for t in detail]}")
    print(f"node-group list reads at: {[round(t, 2) for t in groups]}")
    others = sum(c for i, c in deletes.items() if i not in wanted)
    print(f"delete calls per node: {sorted(Counter(per_node).items())}; other deletes: {others}")
    sent = [a.t - start for a in calls if a.op == "delete_node"]
    print(f"deleted → delete call at the simulator: {fmt(sent)}")
    print(f"deleted → VPSieNode gone: {fmt(gone)}")
    listing_reads = reads_per_window(detail, SCAN_INTERVAL)
    all_reads = reads_per_window(sorted(detail + groups), SCAN_INTERVAL)
    bench.result(
        f"delete {DELETE_COUNT}: listings (cluster detail) of the group in any {SCAN_INTERVAL:.0f} s",
        str(listing_reads),
        f"≤ {TARGET_READS_PER_SCAN}",
        listing_reads <= TARGET_READS_PER_SCAN,
    )
    bench.result(
        f"delete {DELETE_COUNT}: VPSie GETs of the group in any {SCAN_INTERVAL:.0f} s (with group list)",
        str(all_reads),
        f"≤ {TARGET_READS_PER_SCAN}",
        all_reads <= TARGET_READS_PER_SCAN,
    )
    bench.result(
        f"delete {DELETE_COUNT}: delete calls per node",
        f"{min(per_node)}-{max(per_node)} ({sum(deletes.values())} in all)",
        "exactly 1",
        min(per_node) == max(per_node) == 1 and sum(deletes.values()) == DELETE_COUNT,
    )
    bench.result(f"delete {DELETE_COUNT}: deleted → all gone", f"{max(gone):.2f} s", "reported", None)


@contextlib.asynccontextmanager
async def environment(handle: ClusterHandle, args: argparse.Namespace) -> AsyncIterator[Bench]:
    kubeconfig = str(handle.kubeconfig)
    delays = Delays(
        pending_seconds=args.pending_delay, boot_seconds=args.boot_delay, delete_seconds=args.delete_delay
    )
    config = SimConfig(
        api_tokens=[TOKEN],
        delays=delays,
        clusters=[
            SimCluster(
                name="HEL-Kubernetes-bench",
                identifier=CLUSTER_ID,
                groups=[SimGroup(name=VPSIE_GROUP, size=SIZE_ID)],
            )
        ],
    )
    sim = Simulator(config, seed=7)
    log = SimLog()
    app = sim.app()
    app.middlewares.insert(0, log.middleware)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    registry = new_registry()
    controllers_kube = await CountingKube.connect(kubeconfig, registry=registry)
    assert isinstance(controllers_kube, CountingKube)
    async with (
        await KubeClient.connect(kubeconfig) as kube,
        controllers_kube,
        connect_bridge(sim.state, kubeconfig, RealClock()) as bridge,
        traced_session() as session,
    ):
        with contextlib.suppress(errors.AlreadyExists):
            await kube.create(NAMESPACES, {"metadata": {"name": NAMESPACE}})
        await kube.create(NODEGROUPS, nodegroup_body(BURST_SMALL + BURST_LARGE))
        group = NodeGroup.from_k8s(await kube.get(NODEGROUPS, GROUP))
        settings = Settings(
            kubeconfig=kubeconfig,
            namespace=NAMESPACE,
            metrics_bind_address="0",
            health_probe_bind_address="0",
            vpsie_base_url=url,
            vpsie_api_token=SecretStr(TOKEN),
        )
        manager = Manager(
            controllers_kube,
            ManagerOptions(namespace=NAMESPACE, metrics_bind_address="0", health_probe_bind_address="0"),
            registry=registry,
        )
        # As build_providers does (same client settings, same fence, same identity), with the traced session.
        client = VPSieClient(client_config(settings), clock=manager.clock, registry=registry, session=session)
        providers = TracedProviders(
            client, identity=ClusterIdentity(controllers_kube, settings.cluster_id), fence=manager.fence
        )
        setup_lifecycle(manager, settings, providers=providers)
        listed = await list_when_ready(kube)
        watched = Watched()
        tasks = [
            asyncio.ensure_future(bridge.run()),
            asyncio.ensure_future(watch(kube, listed["metadata"]["resourceVersion"], watched)),
        ]
        run = asyncio.ensure_future(manager.run(handle_signals=False))
        bench = Bench(kube, controllers_kube, sim, log, providers, registry, watched, group)
        try:
            await asyncio.wait_for(manager.elected.wait(), 60)
            await until(
                "the NodeGroup controller's first look at VPSie",
                lambda: any(a.op == "get_k8s_cluster" for a in log.arrivals),
            )
            yield bench
        finally:
            manager.request_stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(run, 30)
            await cleanup(kube)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.close()


async def list_when_ready(kube: KubeClient) -> dict[str, Any]:
    """The group's VPSieNodes, once the API server serves the new CRD (429 while its storage starts)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={GROUP}")
        except errors.TooManyRequests:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def cleanup(kube: KubeClient) -> None:
    listed = await kube.list(VPSIENODES, label_selector=f"{NODEGROUP_LABEL}={GROUP}")
    for obj in listed.get("items") or []:
        with contextlib.suppress(errors.NotFound):
            await kube.merge_patch(VPSIENODES, obj["metadata"]["name"], {"metadata": {"finalizers": None}})
            await kube.delete(VPSIENODES, obj["metadata"]["name"])
    with contextlib.suppress(errors.NotFound):
        await kube.merge_patch(NODEGROUPS, GROUP, {"metadata": {"finalizers": None}})
        await kube.delete(NODEGROUPS, GROUP)
    nodes = await kube.list(NODES, label_selector=f"{NODEGROUP_LABEL}={GROUP}")
    for node in nodes.get("items") or []:
        with contextlib.suppress(errors.NotFound):
            await kube.delete(NODES, node["metadata"]["name"])
    with contextlib.suppress(errors.NotFound):
        await kube.delete(NAMESPACES, NAMESPACE)


async def measure(handle: ClusterHandle, args: argparse.Namespace) -> None:
    async with environment(handle, args) as bench:
        small = await scenario_burst(bench, BURST_SMALL)
        large = await scenario_burst(bench, BURST_LARGE)
        await scenario_delete(bench, large)
        del small
        if bench.watched.restarts:
            print(
                f"note: the VPSieNode watch restarted {bench.watched.restarts} time(s); "
                "write counts may be short"
            )
        report(bench)


def report(bench: Bench) -> None:
    rows = [("what", "result", "target", "")]
    for what, value, target, ok in bench.results:
        rows.append((what, value, target, "—" if ok is None else ("pass" if ok else "MISS")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} vCPU ({model or platform.processor() or '?'}), "
        f"Python {platform.python_version()}, "
        f"load average {load:.1f}, {datetime.now(UTC):%Y-%m-%d}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pending-delay", type=float, default=0.2, help="simulator: create → booting (s)")
    parser.add_argument("--boot-delay", type=float, default=1.0, help="simulator: booting → running (s)")
    parser.add_argument("--delete-delay", type=float, default=0.5, help="simulator: delete → gone (s)")
    parser.add_argument("--deadline", type=float, default=DEADLINE_SECONDS, help="seconds for the whole run")
    args = parser.parse_args()
    configure("warning", "console")
    print(machine())
    workdir = Path(tempfile.mkdtemp(prefix="bench-launch-"))
    try:
        with local_control_plane(workdir) as handle:
            install_crds(handle.client)
            asyncio.run(asyncio.wait_for(measure(handle, args), args.deadline))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
