"""Side by side with Karpenter: the same control plane, workloads, shapes and prices, one run.

``make bench-compare`` runs vpsie-autoscaler and then Karpenter's kwok cloud provider
(``sigs.k8s.io/karpenter/kwok``, built by ``hack/karpenter/build.py``) on one local control plane
(``hack/devcluster``), so every difference comes from the controllers:

- **Shapes and prices.** The simulator's five plans are the only node shapes on both sides: our
  NodeGroups are plain-VM groups of those plans, and Karpenter's kwok instance types are the same
  plans (``compare_report.kwok_instance_types``) at the same hourly price (monthly / 730). The
  simulator's boot delay is 0 so both produce Node objects as fast as they decide.
- **Workloads.** Bursts of 10, 100 and 500 pending pods of mixed shapes (the planner benchmark's cpu
  and memory steps up to 2 cpu / 4 GiB, so every pod fits every side's largest node), each burst
  selecting its own pool label, so it lands on fresh nodes only: one NodePool per burst for
  Karpenter, one NodeGroup per plan per burst for us. The pods stay until the scale-down phase.
- **Background.** ``--background-nodes`` kwok Nodes (no pool label: neither controller owns them)
  with ``--background-pods`` pods bound to them, present all the time: both controllers watch every
  Node and Pod, so their memory and CPU are measured at that size.
- **Measured.** Per burst: pod creation → first and last decision (NodeClaim / VPSieNode first
  seen), → last Node object, → every pod Running; nodes and hourly cost chosen. Controller RSS
  (peak) and CPU (mean cores) from ``/proc``: idle for ``--idle-seconds`` (60) from
  ``--idle-settle-seconds`` (20) after the controller is ready, and during the bursts.
  Scale-down: every burst pod deleted; time until the nodes are gone, bounded by
  ``--scale-down-seconds``, and how many remain then.
- **Settings.** Both with their defaults except the shared knobs: Karpenter's NodePool
  ``consolidateAfter`` equals our ``unneededTime`` (``--consolidate-after``), both with a 10 %
  disruption budget (Karpenter's default). Our autoscaler runs with its default scan interval,
  expander and VPSie rate limit.

Observation is polling from this process every ``POLL_S`` (the error bar of every time), and the
processes started here run in their own process groups and are stopped (SIGTERM, then SIGKILL) on
every exit path; every wait has a deadline. Prints the Markdown table for docs/benchmarks.md.

Run: ``make bench-compare`` or ``.venv/bin/python -m benchmarks.compare [--bursts 10,100,500]
[--background-nodes 1000 --background-pods 30000] [--only ours|karpenter]``. With ``--only ours
--boot-delay 5 --bursts 100`` it is the end-to-end benchmark of 100 pods → all Running against the
simulator's normal boot time (``benchmarks/pods_running_bench.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import yaml

from benchmarks.compare_report import (
    BurstFigures,
    Plan,
    Row,
    Usage,
    burst_figures,
    burst_rows,
    kwok_instance_types,
    parse_cpu_seconds,
    parse_rss_bytes,
    render_table,
    usage,
)
from hack.devcluster.client import ApiError, DevKubeClient, condition_is
from hack.devcluster.cluster import free_port
from hack.devcluster.nodes import make_kwok_node
from hack.stack.cloudsim import CloudSim, VPSieGroup
from hack.stack.control_plane import local_control_plane
from hack.stack.kube import NODES, VPSIENODES, JsonObj, install_crds
from hack.stack.objects import is_running, vm_nodegroup
from hack.stack.processes import Process, http_text, wait_until
from hack.stack.scenario import E2E
from vpsie_autoscaler.cloudsim.config import SimConfig

POLL_S: Final = 0.25
SAMPLE_S: Final = 0.5
CREATE_CONCURRENCY: Final = 16
NAMESPACE: Final = "bench-compare"
BG_NAMESPACE: Final = "bench-compare-bg"
POOL_LABEL: Final = "bench.vpsie.com/compare"
BG_LABEL: Final = "bench.vpsie.com/compare-background"
KARPENTER_API: Final = "/apis/karpenter.sh/v1"
NODECLAIMS: Final = f"{KARPENTER_API}/nodeclaims"
NODEPOOLS: Final = f"{KARPENTER_API}/nodepools"
NODECLASSES: Final = "/apis/karpenter.kwok.sh/v1alpha1/kwoknodeclasses"
CRD_API: Final = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
READY_S: Final = 600.0  # start → caches synced, with 30 000 pods on two loaded cores
BURST_S: Final = 600.0
CLEANUP_S: Final = 180.0
SEED: Final = 20261127
CPU_STEPS_M: Final = (100, 250, 500, 1000, 2000)  # the planner benchmark's, up to 2 cpu
MEMORY_STEPS_MI: Final = (128, 256, 512, 1024, 4096)  # the planner benchmark's, up to 4 GiB
WORKLOADS: Final = 36  # as many plain workloads as the planner benchmark has
INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
TICKS: Final = os.sysconf("SC_CLK_TCK")


def plans() -> list[Plan]:
    """The simulator's default catalogue, the one price table of both sides."""
    return [Plan(p.nickname, p.cpu, p.ram, p.ssd, p.price) for p in SimConfig().plans]


def sizes() -> list[tuple[Plan, VPSieGroup]]:
    by_nick = {p.nickname: p for p in SimConfig().plans}
    return [
        (plan, VPSieGroup(plan.name, by_nick[plan.name].id, plan.cpu, plan.memory_mib, plan.monthly_price))
        for plan in plans()
    ]


def shapes() -> list[tuple[int, int]]:
    """Mixed pod shapes (cpu millicores, memory MiB), drawn like the planner benchmark's workloads."""
    rng = random.Random(SEED)
    return [(rng.choice(CPU_STEPS_M), rng.choice(MEMORY_STEPS_MI)) for _ in range(WORKLOADS)]


def burst_pod(pool: str, i: int, shape: tuple[int, int]) -> JsonObj:
    cpu, mem = shape
    app = f"{pool}-w{i % WORKLOADS}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{pool}-{i}", "labels": {"app": app, POOL_LABEL: pool}},
        "spec": {
            "nodeSelector": {POOL_LABEL: pool},
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}},
                }
            ],
        },
    }


# --- the processes' resource use ------------------------------------------------------------------
class Sampler:
    """Samples one process's RSS and CPU time every ``SAMPLE_S`` (``/proc``, see compare_report)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{self.pid}/status").read_text()
                stat = Path(f"/proc/{self.pid}/stat").read_text()
                self.samples.append(
                    (time.monotonic(), parse_rss_bytes(status), parse_cpu_seconds(stat, TICKS))
                )
            self._stop.wait(SAMPLE_S)

    def window(self, start: float, end: float) -> Usage:
        return usage([s for s in self.samples if start <= s[0] <= end])

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


STARTUP_TAINTS: Final = (
    "node.kubernetes.io/",
    "node.cloudprovider.kubernetes.io/",
    "karpenter.sh/unregistered",
)


def startup_taints(node: JsonObj) -> list[str]:
    """The taints that keep pods off a Node until it has started (not-ready, unregistered, …)."""
    keys = [str(t.get("key", "")) for t in node.get("spec", {}).get("taints") or []]
    return [k for k in keys if k.startswith(STARTUP_TAINTS)]


class Watcher:
    """Polls decisions, Nodes and burst pods; remembers when each object was first seen."""

    def __init__(self, client: DevKubeClient, decisions_path: str) -> None:
        self.client = client
        self.decisions_path = decisions_path
        self.decisions: dict[str, float] = {}
        self.nodes: dict[str, float] = {}
        self.node_types: dict[str, str] = {}
        self.node_pools: dict[str, str] = {}
        self.live_nodes: set[str] = set()
        self.ready_nodes: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.running: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, ApiError, ValueError):
                self.poll()
            self._stop.wait(POLL_S)

    def poll(self) -> None:
        now = time.monotonic()
        for obj in self.client.list_objects(self.decisions_path):
            self.decisions.setdefault(obj["metadata"]["name"], now)
        live = set()
        for node in self.client.list_objects(NODES, label_selector=f"!{BG_LABEL}"):
            name = node["metadata"]["name"]
            live.add(name)
            self.nodes.setdefault(name, now)
            labels = node["metadata"].get("labels", {})
            if INSTANCE_TYPE in labels:
                self.node_types[name] = labels[INSTANCE_TYPE]
            if POOL_LABEL in labels:
                self.node_pools[name] = labels[POOL_LABEL]
            if condition_is(node, "Ready", "True") and not startup_taints(node):
                self.ready_nodes.setdefault(name, now)
        self.live_nodes = live
        running: dict[str, int] = {}
        for pod in self.client.list_objects(f"/api/v1/namespaces/{NAMESPACE}/pods"):
            if pod.get("spec", {}).get("nodeName"):
                self.bound.setdefault(pod["metadata"]["name"], now)
            if is_running(pod):
                pool = pod["metadata"]["labels"][POOL_LABEL]
                running[pool] = running.get(pool, 0) + 1
        self.running = running

    def of_pool(self, seen: dict[str, float], pool: str) -> dict[str, float]:
        """The objects of one burst: by their pool label (Nodes), else by name (``<pool>-…``:
        VPSieNodes, NodeClaims, our Nodes; Karpenter's kwok Nodes are ``kwok-<nodeclaim>-…``)."""
        return {k: v for k, v in seen.items() if self.node_pools.get(k) == pool or k.startswith(f"{pool}-")}

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the two sides ---------------------------------------------------------------------------------
@dataclass
class SideResult:
    name: str
    idle: Usage | None = None
    burst: Usage | None = None
    bursts: dict[int, BurstFigures] = field(default_factory=dict)
    ready_s: float | None = None
    scale_down_s: float | None = None
    scale_down_remaining: int | None = None
    scale_down_total: int | None = None
    notes: list[str] = field(default_factory=list)


class Side:
    name = ""
    decisions_path = ""

    def __init__(
        self, client: DevKubeClient, kubeconfig: Path, workdir: Path, args: argparse.Namespace
    ) -> None:
        self.client = client
        self.kubeconfig = kubeconfig
        self.workdir = workdir
        self.args = args

    def add_pool(self, pool: str) -> None:
        raise NotImplementedError

    def start(self) -> int:
        """Start the controller; its pid once ready."""
        raise NotImplementedError

    def alive(self) -> list[Process]:
        raise NotImplementedError

    def cleanup(self) -> None:
        raise NotImplementedError


class Ours(Side):
    name = "vpsie-autoscaler"
    decisions_path = VPSIENODES

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        install_crds(self.client)
        self.sim = CloudSim(self.workdir, self.kubeconfig, boot_delay=self.args.boot_delay, groups=()).start()
        self.e2e = E2E(self.client, self.kubeconfig, NAMESPACE, self.workdir, self.sim)

    def add_pool(self, pool: str) -> None:
        for plan, group in sizes():
            body = vm_nodegroup(
                f"{pool}-{plan.name.lower()}",
                group,
                max_nodes=1000,
                labels={POOL_LABEL: pool},
                unneeded_time=f"{self.args.consolidate_after}s",
                disruption_budget="10%",
            )
            # Karpenter waits 15 min for a launched node to register; the stack's 1 min is a test timing.
            body["spec"]["provisioning"]["maxProvisionTime"] = "15m"
            self.e2e.apply_nodegroup(body)

    def start(self) -> int:
        scaler = self.e2e.autoscaler(
            "autoscaler",
            start=False,
            scan_interval=10.0,
            expander=self.args.expander,
            # The product's Lease timings (15 s / 10 s / 2 s), not the stack's short test ones.
            extra_args=(
                "--log-level",
                "info",
                "--lease-duration",
                "15",
                "--renew-deadline",
                "10",
                "--retry-period",
                "2",
            ),
        )
        scaler.start()
        scaler.wait_ready(timeout=READY_S)

        def leading() -> bool:
            # Right after syncing 30 000 pods /metrics can stall past the 5 s HTTP timeout: retry.
            try:
                return scaler.is_leader()
            except AssertionError:
                scaler.proc.check_alive()
                return False

        wait_until(leading, bool, timeout=READY_S, what="autoscaler to lead", alive=[scaler.proc])
        return scaler.proc.pid

    def alive(self) -> list[Process]:
        return self.e2e.alive()

    def cleanup(self) -> None:
        self.e2e.cleanup()


class Karpenter(Side):
    name = "Karpenter (kwok)"
    decisions_path = NODECLAIMS

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.dir = karpenter_dir()
        self.process: Process | None = None
        self.pools: list[str] = []
        for crd in sorted((self.dir / "crds").glob("*.yaml")):
            apply_crd(self.client, crd)
        with contextlib.suppress(ApiError):
            self.client.create(
                NODECLASSES,
                {
                    "apiVersion": "karpenter.kwok.sh/v1alpha1",
                    "kind": "KWOKNodeClass",
                    "metadata": {"name": "default"},
                    "spec": {},
                },
            )

    def add_pool(self, pool: str) -> None:
        self.client.create(
            NODEPOOLS,
            {
                "apiVersion": "karpenter.sh/v1",
                "kind": "NodePool",
                "metadata": {"name": pool},
                "spec": {
                    "template": {
                        "metadata": {"labels": {POOL_LABEL: pool}},
                        "spec": {
                            "nodeClassRef": {
                                "group": "karpenter.kwok.sh",
                                "kind": "KWOKNodeClass",
                                "name": "default",
                            },
                            "requirements": [
                                {
                                    "key": "karpenter.sh/capacity-type",
                                    "operator": "In",
                                    "values": ["on-demand"],
                                },
                                {"key": INSTANCE_TYPE, "operator": "In", "values": [p.name for p in plans()]},
                            ],
                            "expireAfter": "Never",
                        },
                    },
                    "disruption": {
                        "consolidationPolicy": "WhenEmptyOrUnderutilized",
                        "consolidateAfter": f"{self.args.consolidate_after}s",
                        "budgets": [{"nodes": "10%"}],
                    },
                },
            },
        )
        self.pools.append(pool)

    def start(self) -> int:
        types = self.workdir / "instance-types.json"
        types.write_text(json.dumps(kwok_instance_types(plans()), indent=1))
        health = free_port("karpenter-health")
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "SYSTEM_NAMESPACE": "kube-system",
            "INSTANCE_TYPES_FILE_PATH": str(types),
            "LOG_LEVEL": "info",
        }
        argv = [
            str(self.dir / "karpenter-kwok"),
            "--disable-leader-election",
            "--metrics-port",
            str(free_port("karpenter-metrics")),
            "--health-probe-port",
            str(health),
        ]
        self.process = Process("karpenter", argv, self.workdir / "karpenter.log", env)
        self.process.start()
        wait_until(
            lambda: http_text(f"http://127.0.0.1:{health}/readyz")[0],
            lambda code: code == 200,
            timeout=READY_S,
            what="karpenter /readyz",
            alive=[self.process],
        )
        return self.process.pid

    def alive(self) -> list[Process]:
        return [self.process] if self.process else []

    def cleanup(self) -> None:
        # Deleting the NodePools while the provider runs removes their nodes (their finalizers are
        # Karpenter's); only then stop it. Anything left is forced out.
        for pool in self.pools:
            with contextlib.suppress(ApiError):
                self.client.delete(f"{NODEPOOLS}/{pool}")
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: self.client.list_objects(NODECLAIMS),
                lambda objs: not objs,
                timeout=CLEANUP_S,
                what="NodeClaims gone",
                alive=self.alive(),
            )
        if self.process:
            self.process.stop()
        for path in (NODECLAIMS, NODEPOOLS):
            for obj in self.client.list_objects(path):
                url = f"{path}/{obj['metadata']['name']}"
                with contextlib.suppress(ApiError):
                    self.client.merge_patch(url, {"metadata": {"finalizers": None}})
                    self.client.delete(url)
        for node in self.client.list_objects(NODES, label_selector="karpenter.sh/nodepool"):
            url = f"{NODES}/{node['metadata']['name']}"
            with contextlib.suppress(ApiError):
                self.client.merge_patch(url, {"metadata": {"finalizers": None}})
                self.client.delete(url)


def karpenter_dir() -> Path:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent.parent / "hack/karpenter/build.py")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


def apply_crd(client: DevKubeClient, path: Path) -> None:
    """Create (or replace) one CRD and wait until it is served; plain create needs no server-side
    apply, whose only purpose with kubectl is to avoid the large last-applied annotation."""
    crd = yaml.safe_load(path.read_text())
    name = crd["metadata"]["name"]
    try:
        client.create(CRD_API, crd)
    except ApiError as err:
        if err.status != 409:  # Conflict: installed by an earlier run
            raise
    client.wait_for(
        f"{CRD_API}/{name}",
        lambda c: condition_is(c, "Established", "True"),
        timeout=30,
        what=f"CRD {name} Established",
    )


# --- the run ---------------------------------------------------------------------------------------


def parallel(fn: Callable[[int], object], count: int) -> None:
    with ThreadPoolExecutor(CREATE_CONCURRENCY) as pool:
        list(pool.map(fn, range(count)))


@contextmanager
def suppress_conflict() -> Iterator[None]:
    """An object an earlier, interrupted run already created is fine (409 AlreadyExists)."""
    try:
        yield
    except ApiError as err:
        if err.status != 409:
            raise


def create_node(client: DevKubeClient, body: JsonObj) -> None:
    with suppress_conflict():
        client.create_node(body)


def create_background(client: DevKubeClient, nodes: int, pods: int) -> None:
    """``nodes`` kwok Nodes no controller owns and ``pods`` tiny pods bound to them.

    The pods are bound at creation (``spec.nodeName``): present in every informer of both sides, never
    pending. They are not waited on to be Running: on two shared cores kwok turns bound pods Running
    at only ~8/s, so 30 000 would take an hour; both sides then see the same trickle of status
    updates. What is already there (``DEVCLUSTER_KUBECONFIG`` of an earlier run) is reused.
    """
    if nodes == 0:
        return
    began = time.monotonic()
    have_nodes = len(client.list_objects(NODES, label_selector=f"{BG_LABEL}=true"))
    have_pods: set[str] = set()
    with contextlib.suppress(ApiError):
        have_pods = {
            p["metadata"]["name"] for p in client.list_objects(f"/api/v1/namespaces/{BG_NAMESPACE}/pods")
        }
    if have_nodes < nodes:
        with contextlib.suppress(ApiError):
            client.create_namespace(BG_NAMESPACE)
        parallel(
            lambda i: client.create_node(
                make_kwok_node(f"bg-{i:05d}", "32", "128Gi", labels={BG_LABEL: "true"})
            ),
            nodes,
        )

    def pod(i: int) -> None:
        with suppress_conflict():
            client.create(
                f"/api/v1/namespaces/{BG_NAMESPACE}/pods",
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": f"bg-{i:06d}", "labels": {"app": f"bg-{i % 50}"}},
                    "spec": {
                        "nodeName": f"bg-{i % nodes:05d}",
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "app",
                                "image": "registry.k8s.io/pause:3.10",
                                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                            }
                        ],
                    },
                },
            )

    missing = [i for i in range(pods) if f"bg-{i:06d}" not in have_pods]
    if missing:
        parallel(lambda k: pod(missing[k]), len(missing))
    listing = client.get(f"/api/v1/namespaces/{BG_NAMESPACE}/pods", query={"limit": "1"})
    present = len(listing["items"]) + int(listing["metadata"].get("remainingItemCount") or 0)
    not_running = client.get(
        f"/api/v1/namespaces/{BG_NAMESPACE}/pods", query={"fieldSelector": "status.phase!=Running"}
    )["items"]
    print(
        f"background: {nodes} Nodes, {present} bound pods ({present - len(not_running)} Running) "
        f"after {time.monotonic() - began:.0f}s",
        flush=True,
    )


def delete_background(client: DevKubeClient) -> None:
    with contextlib.suppress(ApiError):
        client.request("DELETE", f"/api/v1/namespaces/{BG_NAMESPACE}/pods")
    client.delete_namespace(BG_NAMESPACE)
    client.delete_nodes(f"{BG_LABEL}=true")


def run_side(side: Side, args: argparse.Namespace, bursts: list[int]) -> SideResult:
    client = side.client
    result = SideResult(side.name)
    prices = {p.name: p.hourly_price for p in plans()}
    pod_shapes = shapes()
    for size in bursts:
        side.add_pool(f"b{size}")
    began = time.monotonic()
    pid = side.start()
    result.ready_s = time.monotonic() - began
    print(f"{side.name}: ready (pid {pid}) after {result.ready_s:.1f}s", flush=True)
    with Sampler(pid) as sampler, Watcher(client, side.decisions_path) as watch:
        # The idle window opens after a settle period: right after start both controllers still do
        # start-up work (first passes, leader election, catalogue reads) that is not idle cost.
        time.sleep(args.idle_settle_seconds)  # nothing to wait for: the settle time is the point
        idle_start = time.monotonic()
        time.sleep(args.idle_seconds)  # the idle window itself is the measurement, nothing to wait for
        result.idle = sampler.window(idle_start, time.monotonic())
        bursts_start = time.monotonic()
        for size in bursts:
            pool = f"b{size}"
            start = time.monotonic()
            parallel(
                lambda i, pool=pool: client.create(  # type: ignore[misc]
                    f"/api/v1/namespaces/{NAMESPACE}/pods", burst_pod(pool, i, pod_shapes[i % WORKLOADS])
                ),
                size,
            )
            try:
                wait_until(
                    lambda pool=pool: watch.running.get(pool, 0),  # type: ignore[misc]
                    lambda n, size=size: n >= size,  # type: ignore[misc]
                    timeout=BURST_S,
                    what=f"{side.name}: {size} pods of {pool} Running",
                    alive=side.alive(),
                    interval=POLL_S / 2,
                )
            except AssertionError as err:  # a timed-out burst is a result too; the run goes on
                result.notes.append(f"{size} pods: {str(err)[:300]}")
                print(f"{side.name}: {size} pods did not all run: {str(err)[:300]}", flush=True)
                continue
            running_at = time.monotonic()
            watch.poll()  # every Node of the burst is listed with its type
            nodes = watch.of_pool(watch.nodes, pool)
            fig = burst_figures(
                start=start,
                pods=size,
                decisions=watch.of_pool(watch.decisions, pool),
                nodes=nodes,
                node_types=watch.node_types,
                running_at=running_at,
                prices=prices,
                nodes_ready=watch.of_pool(watch.ready_nodes, pool),
                bound={k: v for k, v in watch.bound.items() if k.startswith(f"{pool}-")},
            )
            result.bursts[size] = fig
            print(f"{side.name}: {fig}", flush=True)
        result.burst = sampler.window(bursts_start, time.monotonic())
        if args.scale_down_seconds > 0:
            result.scale_down_total = len(watch.live_nodes)
            start = time.monotonic()
            client.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods")
            with contextlib.suppress(AssertionError):
                wait_until(
                    lambda: len(watch.live_nodes),
                    lambda n: n == 0,
                    timeout=args.scale_down_seconds,
                    what=f"{side.name}: emptied nodes removed",
                    alive=side.alive(),
                    interval=1.0,
                )
                result.scale_down_s = time.monotonic() - start
            result.scale_down_remaining = len(watch.live_nodes)
            print(
                f"{side.name}: scale-down {result.scale_down_total} → {result.scale_down_remaining} nodes "
                f"in {time.monotonic() - start:.0f}s",
                flush=True,
            )
    return result


def clear_burst_pods(client: DevKubeClient) -> None:
    with contextlib.suppress(ApiError):
        client.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods")
    wait_until(
        lambda: client.list_objects(f"/api/v1/namespaces/{NAMESPACE}/pods"),
        lambda pods: not pods,
        timeout=CLEANUP_S,
        what="burst pods gone",
    )


def rows(ours: SideResult | None, theirs: SideResult | None, bursts: list[int]) -> list[Row]:
    out: list[Row] = []
    for size in bursts:
        out += burst_rows(
            f"{size} pods",
            ours.bursts.get(size) if ours else None,
            theirs.bursts.get(size) if theirs else None,
        )

    def use(r: SideResult | None, window: str, attr: str) -> float | None:
        u = getattr(r, window) if r else None
        return None if u is None else float(getattr(u, attr))

    out += [
        Row(
            "start → ready (caches synced)",
            ours.ready_s if ours else None,
            theirs.ready_s if theirs else None,
            "s",
        ),
        Row("RSS idle (peak)", use(ours, "idle", "peak_rss_mib"), use(theirs, "idle", "peak_rss_mib"), "MiB"),
        Row("CPU idle (mean)", use(ours, "idle", "cpu_cores"), use(theirs, "idle", "cpu_cores"), "cores"),
        Row(
            "RSS during bursts (peak)",
            use(ours, "burst", "peak_rss_mib"),
            use(theirs, "burst", "peak_rss_mib"),
            "MiB",
        ),
        Row(
            "CPU during bursts (mean)",
            use(ours, "burst", "cpu_cores"),
            use(theirs, "burst", "cpu_cores"),
            "cores",
        ),
        Row(
            "scale-down: emptied nodes gone after",
            ours.scale_down_s if ours else None,
            theirs.scale_down_s if theirs else None,
            "s",
        ),
        Row(
            "scale-down: nodes left at the deadline",
            float(ours.scale_down_remaining) if ours and ours.scale_down_remaining is not None else None,
            float(theirs.scale_down_remaining)
            if theirs and theirs.scale_down_remaining is not None
            else None,
            "nodes",
        ),
    ]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bursts", default="10,100,500", help="pending pods per burst, comma-separated")
    parser.add_argument("--background-nodes", type=int, default=1000)
    parser.add_argument("--background-pods", type=int, default=30000)
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="the idle window (after the settle)")
    parser.add_argument(
        "--idle-settle-seconds", type=float, default=20.0, help="from ready to the idle window's start"
    )
    parser.add_argument("--scale-down-seconds", type=float, default=300.0, help="0 skips the scale-down")
    parser.add_argument("--consolidate-after", type=int, default=10, help="seconds; our unneededTime too")
    parser.add_argument("--boot-delay", type=float, default=0.0, help="the simulator's boot delay (seconds)")
    parser.add_argument("--only", choices=("ours", "karpenter"), default=None)
    parser.add_argument("--expander", default=None, help="our --expander (default: the product's)")
    parser.add_argument("--json", type=Path, default=None, help="write the raw results here")
    parser.add_argument("--deadline", type=float, default=75 * 60.0, help="seconds for the whole run")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, SideResult]:
    """Both sides one after the other on one control plane; bounded by ``args.deadline``."""
    bursts = [int(b) for b in args.bursts.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-compare-"))

    def on_alarm(*_: object) -> None:
        raise TimeoutError(f"bench-compare exceeded its {args.deadline:.0f}s deadline")

    # The whole run is bounded: the alarm raises here, and the finally blocks stop every process.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.deadline))
    results: dict[str, SideResult] = {}
    ok = False
    try:
        with local_control_plane(workdir) as handle:
            client = handle.client
            with suppress_conflict():
                client.create_namespace(NAMESPACE)
            sides: list[type[Side]] = []
            if args.only in (None, "ours"):
                sides.append(Ours)
            if args.only in (None, "karpenter"):
                sides.append(Karpenter)
            try:
                create_background(client, args.background_nodes, args.background_pods)
                for kind in sides:
                    side = kind(client, handle.kubeconfig, workdir, args)
                    try:
                        results[side.name] = run_side(side, args, bursts)
                    finally:
                        clear_burst_pods(client)
                        side.cleanup()
            finally:
                with contextlib.suppress(ApiError, AssertionError, OSError):  # 30 000 pods: may time out
                    delete_background(client)
                    client.delete_namespace(NAMESPACE)
        ok = True
    finally:
        signal.alarm(0)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)
    return results


def machine(args: argparse.Namespace) -> str:
    return (
        f"Machine: {os.cpu_count()} vCPU, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}; background "
        f"{args.background_nodes} nodes / {args.background_pods} pods; boot delay {args.boot_delay}s; "
        f"our expander {args.expander or 'default'}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    bursts = [int(b) for b in args.bursts.split(",")]
    ours, theirs = results.get(Ours.name), results.get(Karpenter.name)
    print()
    print(machine(args))
    print(render_table(rows(ours, theirs, bursts)))
    for r in results.values():
        for size, fig in r.bursts.items():
            print(f"{r.name} {size} pods: types {dict(fig.types)}")
    if args.json:
        args.json.write_text(json.dumps({k: _plain(v) for k, v in results.items()}, indent=1, default=str))
    return 0


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


if __name__ == "__main__":
    sys.exit(main())
