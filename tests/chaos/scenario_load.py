"""Scenario 6: load — 1 000 Nodes and 30 000 pods present, 500 pending pods arriving within 10 s
(docs/reliability.md).

The background is built the way ``benchmarks/informer_bench.py`` builds it, cheaply: 1 000 Node
objects no kubelet or kwok runs (so nothing heartbeats them; they carry no NodeGroup label, so the
autoscaler only holds them in its caches) and 30 000 pods bound to them by ``spec.nodeName`` in a
namespace of their own, created with the async client 48 at a time. Then the chaos stack (two
replicas, a managed and a VM NodeGroup, the churning workload) and a third NodeGroup, ``chaos-burst``
(plain VMs, up to 40 nodes), which 500 small pods (250m cpu: 16 per 4-cpu node) select. The 500 pods
are created within 10 s while the workload churns.

Figures:

* **lost decisions**: burst pods that, ``DECISION_S`` after the burst, neither run nor carry a
  ``TriggeredScaleUp`` Event — goal 0;
* **event-loop stall**: the autoscaler exports no loop-lag metric (``vpsie_autoscaler/runtime`` has
  none), so this is measured from outside, as a *proxy*: the leader's ``/healthz`` (served on the
  same event loop as everything else) is requested every 100 ms from the burst until the burst has
  its nodes; the slowest answer — goal ≤ 1 s (a request that fails counts as its timeout);
* **RSS**: the largest resident set of either replica, sampled every second over the whole run
  (``/proc/<pid>/status``) — goal under the chart's ``resources.limits.memory`` (512 Mi).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from hack.devcluster.client import ApiError
from hack.devcluster.nodes import OWNER_LABEL
from tests.chaos.figures import Figure, Figures
from tests.chaos.harness import ChaosConfig, ChaosStack
from tests.chaos.scenario_kube_faults import SupervisedStack
from tests.e2e.harness import ADVANCED, E2E, NODEGROUPS, JsonObj, bare_pod, vm_nodegroup
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.controllers.cloud import vm_hostname_prefix
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import NAMESPACES, NODES, PODS, SERVICEACCOUNTS

BURST_GROUP: Final = "chaos-burst"
BURST_PODS: Final = 500
BURST_CPU: Final = "250m"
BURST_MAX_NODES: Final = 40
BURST_WINDOW_S: Final = 10.0
DECISION_S: Final = 60.0  # batch window (≤ 10 s) plus the scale-up loop's pace over 500 pods
CAPACITY_S: Final = 300.0  # the burst's nodes are paced by the VPSie rate limit (100/min)
STALL_GOAL_S: Final = 1.0
HEALTHZ_EVERY_S: Final = 0.1
HEALTHZ_TIMEOUT_S: Final = 5.0
RSS_EVERY_S: Final = 1.0
CREATE_CONCURRENCY: Final = 48
BURST_CONCURRENCY: Final = 16
MIB: Final = 1024 * 1024
CHART_VALUES: Final = Path(__file__).resolve().parents[2] / "charts" / "vpsie-autoscaler" / "values.yaml"
TRIGGERED: Final = "TriggeredScaleUp"


def chart_memory_limit_mib() -> float:
    """``resources.limits.memory`` of the chart, in MiB."""
    values = yaml.safe_load(CHART_VALUES.read_text())
    text = str(values["resources"]["limits"]["memory"])
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text) / MIB


# --- the background ----------------------------------------------------------------------------------
def node_body(i: int, owner: str) -> JsonObj:
    name = f"chaos-load-{i:04d}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                OWNER_LABEL: owner,
                "kubernetes.io/hostname": name,
                "node.kubernetes.io/instance-type": "vpsie-4c8g",
                "topology.kubernetes.io/zone": f"zone-{i % 3}",
            },
        },
        "spec": {"providerID": f"vpsie://chaos-load-{i:04d}"},
    }


def pod_body(i: int, nodes: int) -> JsonObj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"load-pod-{i:05d}", "labels": {"app": f"app-{i % 50}", "tier": "web"}},
        "spec": {
            "nodeName": f"chaos-load-{i % nodes:04d}",
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "app",
                    "image": f"registry.example/app-{i % 50}:1.0",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


async def _populate(kubeconfig: Path, namespace: str, owner: str, nodes: int, pods: int) -> None:

    async with await KubeClient.connect(str(kubeconfig)) as client:
        with contextlib.suppress(errors.AlreadyExists):
            await client.create(
                NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        for _ in range(300):  # pods are refused until the ServiceAccount controller made "default"
            try:
                await client.get(SERVICEACCOUNTS, "default", namespace)
                break
            except errors.NotFound:
                await asyncio.sleep(0.1)
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(res: Any, body: JsonObj, ns: str | None) -> None:
            async with gate:
                for attempt in range(5):
                    try:
                        await client.create(res, body, ns)
                        return
                    except errors.AlreadyExists:
                        return
                    except errors.KubeError:
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.5 * (attempt + 1))

        await asyncio.gather(*(create(NODES, node_body(i, owner), None) for i in range(nodes)))
        await asyncio.gather(*(create(PODS, pod_body(i, nodes), namespace) for i in range(pods)))


async def _remove(kubeconfig: Path, namespace: str, owner: str) -> None:

    async with await KubeClient.connect(str(kubeconfig)) as client:
        for _ in range(10):  # one deletecollection of 30 000 pods can outlast the request timeout
            try:
                await client.delete_collection(PODS, namespace, grace_period_seconds=0, request_timeout=120)
            except errors.NotFound:
                break
            except (errors.KubeTimeout, errors.ServerError):
                pass
            if not (await client.list(PODS, namespace, limit=1)).get("items"):
                break
        listed = await client.list(NODES, label_selector=f"{OWNER_LABEL}={owner}")
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def delete(name: str) -> None:
            async with gate:
                with contextlib.suppress(errors.NotFound):
                    await client.delete(NODES, name)

        await asyncio.gather(
            *(
                delete(n["metadata"]["name"])
                for n in listed.get("items") or []
                if n["metadata"]["name"].startswith("chaos-load-")
            )
        )
        with contextlib.suppress(errors.NotFound):
            await client.delete(NAMESPACES, namespace)


@dataclass
class Background:
    """1 000 Nodes and 30 000 pods (``populate``), removed by ``remove``."""

    e2e: E2E
    nodes: int = 1000
    pods: int = 30_000
    seconds: float = 0.0

    @property
    def namespace(self) -> str:
        return f"{self.e2e.namespace}-bg"[:63]

    def populate(self) -> Background:
        started = time.monotonic()
        asyncio.run(_populate(self.e2e.kubeconfig, self.namespace, self.e2e.namespace, self.nodes, self.pods))
        self.seconds = time.monotonic() - started
        print(f"[chaos] load: {self.nodes} Nodes and {self.pods} pods in {self.seconds:.0f}s", flush=True)
        return self

    def remove(self) -> None:
        asyncio.run(_remove(self.e2e.kubeconfig, self.namespace, self.e2e.namespace))


# --- samplers ----------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Sampler(threading.Thread):
    """RSS of every replica every second; while ``probing``, the leader's /healthz every 100 ms."""

    def __init__(self, stack: ChaosStack) -> None:
        super().__init__(name="chaos-load-sampler", daemon=True)
        self.stack = stack
        self.halt = threading.Event()
        self.probing = threading.Event()
        self.rss: dict[str, float] = {}
        self.healthz: list[float] = []
        self.healthz_failures = 0
        self.slowest_at = 0.0
        self._last_rss = 0.0

    def run(self) -> None:
        while not self.halt.wait(HEALTHZ_EVERY_S):
            now = time.monotonic()
            if now - self._last_rss >= RSS_EVERY_S:
                self._last_rss = now
                for scaler in self.stack.replicas.all:
                    if scaler.process is not None and scaler.process.alive():
                        mib = rss_mib(scaler.process.pid)
                        self.rss[scaler.name] = max(self.rss.get(scaler.name, 0.0), mib)
            if self.probing.is_set():
                self._probe()

    def _leader_port(self) -> int | None:
        for scaler in self.stack.replicas.all:
            with contextlib.suppress(Exception):
                if scaler.process is not None and scaler.process.alive() and scaler.is_leader():
                    return scaler.health_port
        return None

    _port: int | None = None

    def _probe(self) -> None:
        if self._port is None:
            self._port = self._leader_port()
            if self._port is None:
                return
        started = time.monotonic()
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self._port}/healthz", timeout=HEALTHZ_TIMEOUT_S
            ) as resp:
                resp.read()
            took = time.monotonic() - started
        except OSError:
            self.healthz_failures += 1
            took = HEALTHZ_TIMEOUT_S
            self._port = None  # the leader may have changed
        if not self.healthz or took > max(self.healthz):
            self.slowest_at = time.time()
        self.healthz.append(took)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)


# --- the scenario --------------------------------------------------------------------------------------
class LoadStack(SupervisedStack):
    """The chaos stack plus the burst NodeGroup's VMs classified as its own."""

    def classify(self, inst: JsonObj) -> str | None:
        if inst.get("group_id") is None and str(inst.get("hostname", "")).startswith(
            vm_hostname_prefix(BURST_GROUP)
        ):
            return BURST_GROUP
        return super().classify(inst)


def burst_group() -> JsonObj:
    body = vm_nodegroup(
        BURST_GROUP,
        ADVANCED,
        max_nodes=BURST_MAX_NODES,
        unneeded_time="8s",
        delay_after_scale_up="5s",
        max_graceful_termination="10s",
        backoff_initial="5s",
    )
    body["spec"]["provisioning"]["backoff"]["max"] = "20s"
    return body


@dataclass
class LoadScenario:
    config: ChaosConfig
    background: Background
    name: str = "6-load"
    ephemeral: bool = False
    burst_names: list[str] = field(default_factory=list)
    arrival_s: float = 0.0
    lost: list[str] = field(default_factory=list)
    triggered: int = 0
    running: int = 0
    capacity_s: float = math.nan
    sampler: Sampler | None = None

    def disturb(self, stack: ChaosStack) -> None:
        e2e = stack.e2e
        self.sampler = Sampler(stack)
        self.sampler.start()
        e2e.apply_nodegroup(burst_group())
        time.sleep(10.0)  # the workload churns on top of the background
        ns = self.background.namespace
        self.burst_names = [f"burst-{i:03d}" for i in range(BURST_PODS)]

        def create(name: str) -> None:
            body = bare_pod(name, "burst", cpu=BURST_CPU, memory="256Mi")
            body["spec"]["nodeSelector"] = {NODEGROUP_LABEL: BURST_GROUP}
            for attempt in range(3):
                try:
                    e2e.client.create(f"/api/v1/namespaces/{ns}/pods", body)
                    return
                except ApiError:
                    if attempt == 2:
                        raise
                    time.sleep(0.2)

        self.sampler.probing.set()
        started = time.monotonic()
        with ThreadPoolExecutor(BURST_CONCURRENCY) as pool:
            list(pool.map(create, self.burst_names))
        self.arrival_s = time.monotonic() - started
        print(f"[chaos] load: {BURST_PODS} burst pods created in {self.arrival_s:.1f}s", flush=True)
        time.sleep(max(0.0, DECISION_S - (time.monotonic() - started)))
        self._decisions(ns)
        deadline = started + CAPACITY_S
        while time.monotonic() < deadline:
            pods = e2e.client.list_objects(f"/api/v1/namespaces/{ns}/pods", label_selector="app=burst")
            if sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running") == BURST_PODS:
                self.capacity_s = time.monotonic() - started
                break
            time.sleep(2.0)
        self.sampler.probing.clear()

    def _decisions(self, ns: str) -> None:
        client = self.background.e2e.client
        pods = client.list_objects(f"/api/v1/namespaces/{ns}/pods", label_selector="app=burst")
        running = {p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"}
        events = client.list_objects(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")
        triggered = {
            str(ev.get("regarding", {}).get("name")) for ev in events if ev.get("reason") == TRIGGERED
        }
        self.running = len(running)
        self.triggered = len(triggered & set(self.burst_names))
        self.lost = [n for n in self.burst_names if n not in running and n not in triggered]
        print(
            f"[chaos] load: after {DECISION_S:g}s {self.running} burst pods Running, {self.triggered} with "
            f"{TRIGGERED}, {len(self.lost)} with neither",
            flush=True,
        )

    def calm(self, stack: ChaosStack) -> None:
        e2e = stack.e2e
        ns = self.background.namespace
        with contextlib.suppress(ApiError):
            e2e.client.delete(f"{NODEGROUPS}/{BURST_GROUP}")
        with contextlib.suppress(ApiError):
            for name in self.burst_names:
                e2e.client.delete(f"/api/v1/namespaces/{ns}/pods/{name}")

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        s = self.name
        figures.count(
            s,
            "lost decisions",
            len(self.lost),
            detail=(
                f"{BURST_PODS} pods in {self.arrival_s:.1f}s; after {DECISION_S:g}s {self.running} Running, "
                f"{self.triggered} {TRIGGERED}; without either: {self.lost[:20]}"
            ),
        )
        figures.add(
            Figure(
                s,
                "burst pods all Running",
                self.capacity_s,
                None,
                unit="s",
                detail=f"background built in {self.background.seconds:.0f}s",
            )
        )
        dups = stack.watcher.duplicates([BURST_GROUP])
        figures.count(s, "burst duplicates", len(dups), detail="; ".join(dups)[:1500])
        sampler = self.sampler
        if sampler is None:
            return
        sampler.stop()
        slowest = max(sampler.healthz) if sampler.healthz else math.nan
        ordered = sorted(sampler.healthz)
        p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else math.nan
        figures.add(
            Figure(
                s,
                "event-loop stall (max /healthz time, proxy)",
                slowest,
                STALL_GOAL_S,
                unit="s",
                detail=(
                    f"{len(sampler.healthz)} probes every {HEALTHZ_EVERY_S:g}s, p99 {p99:.3f}s, "
                    f"{sampler.healthz_failures} failed"
                ),
            )
        )
        limit = chart_memory_limit_mib()
        per_replica = {k: round(v) for k, v in sampler.rss.items()}
        figures.add(
            Figure(
                s,
                "max RSS",
                max(sampler.rss.values()) if sampler.rss else math.nan,
                limit,
                unit="MiB",
                detail=f"per replica {per_replica}; chart limit {limit:g} MiB",
            )
        )


def load_stack(e2e: E2E, config: ChaosConfig, scenario: str) -> LoadStack:
    return LoadStack(e2e, config, scenario, extra=())
