"""End-to-end harness: the VPSie simulator and the autoscaler as real processes against the local cluster.

What a user runs, run the way a user runs it: ``vpsie-autoscaler cloudsim --kubeconfig`` (the cloud,
whose booted instances become kwok Nodes through the bridge) and ``vpsie-autoscaler run`` (the
controller), each in its own process group with its output in a log file, against the control plane of
the ``k8s_cluster`` fixture. Tests talk to the cluster with the fixture's synchronous client and to the
simulator through its admin endpoints (``/_sim/state``, ``/_sim/requests``, ``/_sim/faults``).

Every wait has a deadline and checks, on every poll, that the processes the test expects alive still
are, so a crashed autoscaler fails the test at once with its log tail instead of a timeout.

The same classes drive ``make demo`` (``hack/demo.py``) and the decision-latency benchmark, so the
stack the tests prove is the stack the demo shows.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TypeVar

import yaml
from prometheus_client.parser import text_string_to_metric_families

from hack.devcluster.client import ApiError, KubeClient
from hack.devcluster.cluster import free_port
from hack.devcluster.processes import signal_group
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL, VPSIENODE_LABEL
from vpsie_autoscaler.cloudsim.bridge import MANAGED_BY_LABEL as SIM_NODE_LABEL
from vpsie_autoscaler.cloudsim.config import (
    DEFAULT_CLUSTER,
    DEFAULT_DATACENTER,
    DEFAULT_OS,
    DEFAULT_PROJECT,
    SimConfig,
)

T = TypeVar("T")
JsonObj = dict[str, Any]

# --- API paths ------------------------------------------------------------------------------------
API_GROUP: Final = "/apis/autoscaler.vpsie.com/v1alpha1"
NODEGROUPS: Final = f"{API_GROUP}/nodegroups"
VPSIENODES: Final = f"{API_GROUP}/vpsienodes"
NODES: Final = "/api/v1/nodes"
EVENTS_NS: Final = "/apis/events.k8s.io/v1/namespaces/{ns}/events"
CLUSTER_SCOPED_EVENTS_NS: Final = "default"  # where Events about Nodes/NodeGroups live
FINALIZER_PATCH_TYPE: Final = "application/merge-patch+json"

# --- the simulated cloud ----------------------------------------------------------------------------
SIM_CLUSTER_NAME: Final = "HEL-Kubernetes-e2e1"
SIM_CLUSTER_ID: Final = DEFAULT_CLUSTER


@dataclass(frozen=True)
class VPSieGroup:
    """A VPSie node group of the simulated managed cluster (VPSie allows one group per size)."""

    name: str
    size_id: int  # plan id: 56 Standard 2 cpu/4 GiB $20, 57 Advanced 4/8 $40, 61 HighMem 4/32 $90
    cpu: int
    memory_mib: int
    monthly_price: float


STANDARD: Final = VPSieGroup("GRP-Standard-e2e", 56, 2, 4096, 20.0)
ADVANCED: Final = VPSieGroup("GRP-Advanced-e2e", 57, 4, 8192, 40.0)
HIGHMEM: Final = VPSieGroup("GRP-HighMem-e2e", 61, 4, 32768, 90.0)
SIM_GROUPS: Final = (STANDARD, ADVANCED, HIGHMEM)

# --- timing (short, so the suite stays within minutes on two cores) ---------------------------------
SIM_START_S: Final = 30.0
AUTOSCALER_READY_S: Final = 60.0
LEADER_S: Final = 30.0
STOP_GRACE_S: Final = 10.0
POLL_S: Final = 0.2
HTTP_TIMEOUT_S: Final = 5.0
BOOT_DELAY_S: Final = 1.0  # cloud create → running instance → Node
PENDING_DELAY_S: Final = 0.2
DELETE_DELAY_S: Final = 0.5
SCAN_INTERVAL_S: Final = 2.0
# A killed leader's Lease must run out before a new process leads: short Lease, fast hand-over.
LEASE_DURATION_S: Final = 4.0
RENEW_DEADLINE_S: Final = 3.0
RETRY_PERIOD_S: Final = 0.5
LOG_TAIL_LINES: Final = 60
CLEANUP_S: Final = 60.0
JOIN_S: Final = 30.0  # a VPSieNode records its Ready Node
SIM_CLIENT_ID: Final = "e2e-client"
SIM_CLIENT_SECRET: Final = "e2e-secret"


class ProcessDied(AssertionError):
    """A process the test needs exited; the message carries its exit code and log tail."""


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline; the message shows the last value seen."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Process:
    """One child process in its own session (its pgid is its pid), output appended to ``log``.

    Signals go to the whole group, never by name, so only what this harness started is touched.
    """

    def __init__(self, name: str, argv: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.env = dict(env) if env is not None else None
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== {datetime.now(UTC).isoformat()} start: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.env,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise ProcessDied(
                f"{self.name} exited with {self.popen.returncode}; last lines of {self.log}:\n{self.tail()}"
            )

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log, lines)

    def kill9(self) -> None:
        """SIGKILL the group: no shutdown code runs, exactly like a node losing power."""
        if self.popen is None or self.popen.poll() is not None:
            return
        signal_group(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=STOP_GRACE_S)

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM the group, SIGKILL after ``grace``; the exit code (None if never started)."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            signal_group(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                signal_group(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        return self.popen.returncode


def cli(*args: str) -> list[str]:
    """``vpsie-autoscaler <args>`` with this interpreter (the installed entry point's module)."""
    return [sys.executable, "-m", "vpsie_autoscaler", *args]


def http_json(method: str, url: str, body: Any = None, timeout: float = HTTP_TIMEOUT_S) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def http_text(url: str, timeout: float = HTTP_TIMEOUT_S) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


def sim_config(groups: Iterable[VPSieGroup] = SIM_GROUPS) -> JsonObj:
    """The simulator's YAML config: one managed cluster with one VPSie node group per size, no nodes."""
    return {
        "client_id": SIM_CLIENT_ID,
        "client_secret": SIM_CLIENT_SECRET,
        "delays": {
            "pending_seconds": PENDING_DELAY_S,
            "boot_seconds": BOOT_DELAY_S,
            "delete_seconds": DELETE_DELAY_S,
        },
        "clusters": [
            {
                "name": SIM_CLUSTER_NAME,
                "identifier": SIM_CLUSTER_ID,
                "groups": [{"name": g.name, "size": g.size_id, "nodes": 0} for g in groups],
            }
        ],
    }


class CloudSim:
    """``vpsie-autoscaler cloudsim`` with the Kubernetes bridge, and its admin endpoints."""

    def __init__(
        self,
        workdir: Path,
        kubeconfig: Path,
        *,
        boot_delay: float = BOOT_DELAY_S,
        groups: Iterable[VPSieGroup] = SIM_GROUPS,
        seed: int = 7,
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "cloudsim.yaml"
        self.ready_file = workdir / "cloudsim-ready.json"
        self.config_path.write_text(yaml.safe_dump(sim_config(groups)))
        argv = cli(
            "cloudsim",
            "--port",
            "0",
            "--config",
            str(self.config_path),
            "--kubeconfig",
            str(kubeconfig),
            "--boot-delay",
            str(boot_delay),
            "--ready-file",
            str(self.ready_file),
            "--seed",
            str(seed),
        )
        self.process = Process("cloudsim", argv, workdir / "cloudsim.log")
        self.base_url = ""

    def start(self) -> CloudSim:
        self.ready_file.unlink(missing_ok=True)
        self.process.start()
        deadline = time.monotonic() + SIM_START_S
        while not (self.ready_file.exists() and self.ready_file.stat().st_size):
            self.process.check_alive()
            if time.monotonic() > deadline:
                raise WaitTimeout(f"cloudsim not listening after {SIM_START_S}s:\n{self.process.tail()}")
            time.sleep(POLL_S / 4)
        self.base_url = json.loads(self.ready_file.read_text())["base_url"]
        return self

    def stop(self) -> None:
        self.process.stop()

    # --- admin endpoints ---------------------------------------------------------------------------
    def state(self) -> JsonObj:
        state: JsonObj = http_json("GET", f"{self.base_url}/_sim/state")
        return state

    def requests(self) -> list[JsonObj]:
        rows: list[JsonObj] = http_json("GET", f"{self.base_url}/_sim/requests")
        return rows

    def add_node_requests(self, group: VPSieGroup | None = None) -> list[JsonObj]:
        """``add/slave`` calls the simulator served (any status), optionally for one VPSie group."""
        suffix = f"/add/slave/group/{self.group_id(group)}" if group else "/add/slave/group/"
        return [r for r in self.requests() if r["method"] == "POST" and suffix in r["path"]]

    def add_fault(self, **spec: Any) -> int:
        fault: JsonObj = http_json("POST", f"{self.base_url}/_sim/faults", spec)
        return int(fault["id"])

    def clear_faults(self) -> None:
        http_json("DELETE", f"{self.base_url}/_sim/faults")

    def _cluster(self) -> JsonObj:
        clusters: list[JsonObj] = self.state()["clusters"]
        [cluster] = [c for c in clusters if c["identifier"] == SIM_CLUSTER_ID]
        return cluster

    def group_id(self, group: VPSieGroup) -> int:
        [found] = [g for g in self._cluster()["groups"] if g["group_name"] == group.name]
        return int(found["id"])

    def workers(self, group: VPSieGroup | None = None, *, include_deleting: bool = False) -> list[JsonObj]:
        """Worker instances in the cloud (what is billed), optionally of one VPSie group."""
        cluster = self._cluster()
        gid = None if group is None else self.group_id(group)
        return [
            n
            for n in cluster["nodes"]
            if n["group_id"] is not None
            and (gid is None or n["group_id"] == gid)
            and (include_deleting or n["phase"] != "deleting")
        ]


def add_node_path(group_id: int) -> str:
    return f"/apps/v2/k8s/cluster/byId/{SIM_CLUSTER_ID}/add/slave/group/{group_id}"


@dataclass
class Autoscaler:
    """``vpsie-autoscaler run`` against the cluster and the simulator; restartable, killable."""

    workdir: Path
    name: str
    kubeconfig: Path
    sim: CloudSim
    namespace: str  # of the leader-election Lease
    lease_id: str
    dry_run: bool = False
    expander: str | None = None
    scan_interval: float = SCAN_INTERVAL_S
    extra_args: tuple[str, ...] = ()
    starts: int = 0
    metrics_port: int = 0
    health_port: int = 0
    process: Process | None = None
    history: list[Process] = field(default_factory=list)

    def argv(self) -> list[str]:
        args = [
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--vpsie-base-url",
            self.sim.base_url,
            "--vpsie-client-id",
            SIM_CLIENT_ID,
            "--metrics-bind-address",
            f"127.0.0.1:{self.metrics_port}",
            "--health-probe-bind-address",
            f"127.0.0.1:{self.health_port}",
            "--leader-election-id",
            self.lease_id,
            "--lease-duration",
            str(LEASE_DURATION_S),
            "--renew-deadline",
            str(RENEW_DEADLINE_S),
            "--retry-period",
            str(RETRY_PERIOD_S),
            "--scan-interval",
            str(self.scan_interval),
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "--dry-run",
            "true" if self.dry_run else "false",
        ]
        if self.expander:
            args += ["--expander", self.expander]
        return cli(*args, *self.extra_args)

    def start(self) -> Autoscaler:
        """Start a new process (fresh ports each time: a killed one may leave its sockets behind)."""
        self.metrics_port = free_port(f"e2e-metrics-{self.name}-{self.starts}")
        self.health_port = free_port(f"e2e-health-{self.name}-{self.starts}")
        env = {**os.environ, "VPSIE_AUTOSCALER_VPSIE_CLIENT_SECRET": SIM_CLIENT_SECRET}
        env.pop("VPSIE_AUTOSCALER_KUBECONFIG", None)
        self.process = Process(self.name, self.argv(), self.workdir / f"{self.name}.log", env)
        self.history.append(self.process)
        self.process.start()
        self.starts += 1
        return self

    @property
    def proc(self) -> Process:
        assert self.process is not None, f"{self.name} was never started"
        return self.process

    def kill9(self) -> None:
        self.proc.kill9()

    def stop(self) -> int | None:
        return self.process.stop() if self.process else None

    def restart(self) -> Autoscaler:
        self.stop()
        return self.start()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def wait_ready(self, timeout: float = AUTOSCALER_READY_S) -> None:
        """Until ``/readyz`` answers 200 (caches synced)."""
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        wait_until(
            lambda: http_text(url)[0],
            lambda code: code == 200,
            timeout=timeout,
            what=f"{self.name} /readyz",
            alive=[self.proc],
        )

    def metrics(self) -> str:
        code, text = http_text(self.metrics_url)
        if code != 200:
            self.proc.check_alive()
            raise AssertionError(f"{self.metrics_url} answered {code}: {text[:500]}")
        return text

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of one sample (``name`` as exposed, e.g. ``..._total``), None when absent."""
        return sample_value(self.metrics(), name, labels)

    def metric_sum(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The sum of every sample named ``name`` whose labels include ``labels``."""
        return sum(v for _, v in samples(self.metrics(), name, labels))

    def is_leader(self) -> bool:
        return bool(self.metric("leader_election_master_status"))

    def wait_leader(self, timeout: float = LEADER_S) -> None:
        wait_until(self.is_leader, bool, timeout=timeout, what=f"{self.name} to lead", alive=[self.proc])


def samples(
    text: str, name: str, labels: Mapping[str, str] | None = None
) -> list[tuple[dict[str, str], float]]:
    want = dict(labels or {})
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and want.items() <= sample.labels.items():
                found.append((dict(sample.labels), float(sample.value)))
    return found


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    found = samples(text, name, labels)
    return found[0][1] if found else None


def wait_until(
    fetch: Callable[[], T],
    predicate: Callable[[T], Any],
    *,
    timeout: float,
    what: str,
    alive: Iterable[Process] = (),
    interval: float = POLL_S,
) -> T:
    """Poll ``fetch()`` until ``predicate`` holds; fail at once if a process in ``alive`` died."""
    procs = list(alive)
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            proc.check_alive()
        value = fetch()
        if predicate(value):
            return value
        if time.monotonic() >= deadline:
            shown = json.dumps(value, default=str)[:3000]
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {shown}")
        time.sleep(interval)


# --- Kubernetes objects -----------------------------------------------------------------------------
def nodegroup(
    name: str,
    group: VPSieGroup,
    *,
    min_nodes: int = 0,
    max_nodes: int = 5,
    priority: int = 0,
    labels: Mapping[str, str] | None = None,
    taints: list[JsonObj] | None = None,
    unneeded_time: str = "10s",
    delay_after_scale_up: str = "5s",
    max_graceful_termination: str = "10s",
    disruption_budget: str | int = "100%",
    max_concurrent_drains: int = 5,
    utilization_threshold: float = 0.5,
    scale_down_enabled: bool = True,
    backoff_initial: str = "30s",
) -> JsonObj:
    """A NodeGroup of the simulated managed cluster, with the short timings the e2e suite runs on."""
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name},
        "spec": {
            "minNodes": min_nodes,
            "maxNodes": max_nodes,
            "managed": {
                "clusterIdentifier": SIM_CLUSTER_ID,
                "nodeGroupName": group.name,
                "sizeId": group.size_id,
            },
            "template": {"labels": dict(labels or {}), "taints": list(taints or [])},
            "scaleUp": {"enabled": True, "priority": priority},
            "scaleDown": {
                "enabled": scale_down_enabled,
                "utilizationThreshold": utilization_threshold,
                "unneededTime": unneeded_time,
                "delayAfterScaleUp": delay_after_scale_up,
                "maxConcurrentDrains": max_concurrent_drains,
                "disruptionBudget": disruption_budget,
                "maxGracefulTermination": max_graceful_termination,
            },
            "provisioning": {"maxProvisionTime": "1m", "backoff": {"initial": backoff_initial, "max": "5m"}},
        },
    }


def pod_spec(
    *,
    cpu: str = "100m",
    memory: str = "64Mi",
    node_selector: Mapping[str, str] | None = None,
    tolerations: list[JsonObj] | None = None,
    anti_affinity_to: str | None = None,
) -> JsonObj:
    """A placeholder pod spec (kwok runs nothing) with the given requests and constraints."""
    spec: JsonObj = {
        "containers": [
            {
                "name": "app",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": cpu, "memory": memory}},
            }
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = list(tolerations)
    if anti_affinity_to:
        spec["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"app": anti_affinity_to}},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
    return spec


def deployment(name: str, replicas: int, **spec: Any) -> JsonObj:
    """A Deployment of placeholder pods; ``spec`` as for :func:`pod_spec`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec(**spec)},
        },
    }


def bare_pod(name: str, app: str, **spec: Any) -> JsonObj:
    """A pod no controller owns (labelled ``app``); ``spec`` as for :func:`pod_spec`."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": pod_spec(**spec),
    }


def pod_disruption_budget(name: str, app: str, *, min_available: int) -> JsonObj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    }


def is_running(pod: JsonObj) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


def phase_of(vn: JsonObj) -> str | None:
    phase: str | None = vn.get("status", {}).get("phase")
    return phase


class E2E:
    """What a scenario needs: the cluster, the simulator, autoscaler processes and waits over them."""

    def __init__(
        self, client: KubeClient, kubeconfig: Path, namespace: str, workdir: Path, sim: CloudSim
    ) -> None:
        self.client = client
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workdir = workdir
        self.sim = sim
        self.autoscalers: list[Autoscaler] = []
        self.nodegroups: list[str] = []
        self.started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")

    # --- processes ---------------------------------------------------------------------------------
    def autoscaler(
        self, name: str = "autoscaler", *, start: bool = True, wait_leader: bool = True, **options: Any
    ) -> Autoscaler:
        """An autoscaler process; by default started and leading before this returns."""
        scaler = Autoscaler(
            workdir=self.workdir,
            name=name,
            kubeconfig=self.kubeconfig,
            sim=self.sim,
            namespace=self.namespace,
            lease_id=f"vpsie-autoscaler-{self.namespace}"[:63],
            **options,
        )
        self.autoscalers.append(scaler)
        if start:
            scaler.start()
            scaler.wait_ready()
            if wait_leader:
                scaler.wait_leader()
        return scaler

    def alive(self) -> list[Process]:
        """Processes that must stay up while a test waits (the running autoscalers and the cloud)."""
        procs = [self.sim.process]
        procs += [a.process for a in self.autoscalers if a.process is not None and a.process.alive()]
        return procs

    def wait(self, fetch: Callable[[], T], predicate: Callable[[T], Any], *, timeout: float, what: str) -> T:
        return wait_until(fetch, predicate, timeout=timeout, what=what, alive=self.alive())

    # --- objects -----------------------------------------------------------------------------------
    def apply_nodegroup(self, body: JsonObj) -> JsonObj:
        created = self.client.create(NODEGROUPS, body)
        self.nodegroups.append(body["metadata"]["name"])
        return created

    def get_nodegroup(self, name: str) -> JsonObj:
        return self.client.get(f"{NODEGROUPS}/{name}")

    def apply_deployment(self, body: JsonObj) -> JsonObj:
        return self.client.create(f"/apis/apps/v1/namespaces/{self.namespace}/deployments", body)

    def scale_deployment(self, name: str, replicas: int) -> None:
        self.client.merge_patch(
            f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}", {"spec": {"replicas": replicas}}
        )

    def apply_pod(self, body: JsonObj) -> JsonObj:
        return self.client.create(f"/api/v1/namespaces/{self.namespace}/pods", body)

    def delete_pod(self, name: str) -> None:
        self.client.delete(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        self.client.wait_gone(f"/api/v1/namespaces/{self.namespace}/pods/{name}")

    def apply_pdb(self, body: JsonObj) -> JsonObj:
        return self.client.create(f"/apis/policy/v1/namespaces/{self.namespace}/poddisruptionbudgets", body)

    def pods(self, app: str) -> list[JsonObj]:
        return self.client.list_objects(
            f"/api/v1/namespaces/{self.namespace}/pods", label_selector=f"app={app}"
        )

    def running_pods(self, app: str) -> list[JsonObj]:
        return [p for p in self.pods(app) if is_running(p)]

    def wait_pods_running(self, app: str, count: int, timeout: float = 60.0) -> list[JsonObj]:
        return self.wait(
            lambda: self.running_pods(app),
            lambda pods: len(pods) == count,
            timeout=timeout,
            what=f"{count} Running pods of {app}",
        )

    def vpsienodes(self, group: str | None = None) -> list[JsonObj]:
        selector = f"{NODEGROUP_LABEL}={group}" if group else None
        return self.client.list_objects(VPSIENODES, label_selector=selector)

    def live_vpsienodes(self, group: str | None = None) -> list[JsonObj]:
        """VPSieNodes that count as capacity: not being deleted, not Failed."""
        return [
            vn
            for vn in self.vpsienodes(group)
            if not vn["metadata"].get("deletionTimestamp") and phase_of(vn) not in ("Failed", "Deleting")
        ]

    def wait_vpsienodes(
        self, group: str, predicate: Callable[[list[JsonObj]], Any], *, timeout: float, what: str
    ) -> list[JsonObj]:
        return self.wait(lambda: self.vpsienodes(group), predicate, timeout=timeout, what=f"{group}: {what}")

    def group_nodes(self, group: str) -> list[JsonObj]:
        """Nodes the autoscaler labelled as members of ``group``."""
        return self.client.list_objects(NODES, label_selector=f"{NODEGROUP_LABEL}={group}")

    def sim_nodes(self) -> list[JsonObj]:
        """Every Node the simulator's bridge registered (booted instances)."""
        return self.client.list_objects(NODES, label_selector=f"{SIM_NODE_LABEL}=true")

    def node_of(self, pod: JsonObj) -> str:
        return str(pod["spec"]["nodeName"])

    def events(
        self,
        namespace: str | None = None,
        *,
        reason: str | None = None,
        regarding: str | None = None,
        kind: str | None = None,
        uid: str | None = None,
    ) -> list[JsonObj]:
        """events.k8s.io Events in ``namespace`` (default: the test's), filtered by reason/object.

        Events about cluster-scoped objects live in ``default`` and outlive the test that caused
        them; filter those by ``uid`` (see :meth:`nodegroup_events`) so an earlier test's object of
        the same name does not count.
        """
        ns = namespace or self.namespace
        found = []
        for ev in self.client.list_objects(EVENTS_NS.format(ns=ns)):
            ref = ev.get("regarding", {})
            if reason and ev.get("reason") != reason:
                continue
            if regarding and ref.get("name") != regarding:
                continue
            if kind and ref.get("kind") != kind:
                continue
            if uid and ref.get("uid") != uid:
                continue
            found.append(ev)
        return found

    def nodegroup_events(self, name: str, reason: str | None = None) -> list[JsonObj]:
        """Events about this test's NodeGroup ``name`` (by uid)."""
        uid = self.get_nodegroup(name)["metadata"]["uid"]
        return self.events(CLUSTER_SCOPED_EVENTS_NS, reason=reason, kind="NodeGroup", uid=uid)

    def wait_event(
        self,
        *,
        reason: str,
        namespace: str | None = None,
        regarding: str | None = None,
        kind: str | None = None,
        timeout: float = 30.0,
    ) -> list[JsonObj]:
        """Events in the test's namespace (pods) matching ``reason``, once there is at least one."""
        where = f"{kind or '*'}/{regarding or '*'} in {namespace or self.namespace}"
        return self.wait(
            lambda: self.events(namespace, reason=reason, regarding=regarding, kind=kind),
            bool,
            timeout=timeout,
            what=f"Event {reason} on {where}",
        )

    def wait_nodegroup_event(self, name: str, reason: str, timeout: float = 30.0) -> list[JsonObj]:
        return self.wait(
            lambda: self.nodegroup_events(name, reason),
            bool,
            timeout=timeout,
            what=f"Event {reason} on {name}",
        )

    def all_events_text(self) -> str:
        """This test's Events: its namespace, and cluster-scoped ones since it started."""
        lines = []
        for ns in (self.namespace, CLUSTER_SCOPED_EVENTS_NS):
            with contextlib.suppress(ApiError):
                for ev in self.events(ns):
                    when = ev.get("eventTime") or ev["metadata"].get("creationTimestamp") or ""
                    if ns == CLUSTER_SCOPED_EVENTS_NS and when < self.started:
                        continue
                    ref = ev.get("regarding", {})
                    lines.append(
                        f"{when} {ev.get('type')} {ev.get('reason')} {ref.get('kind')}/{ref.get('name')}: "
                        f"{ev.get('note')}"
                    )
        return "\n".join(sorted(lines))

    def snapshot(self) -> str:
        """Everything useful when a test fails: objects, cloud state, Events, process log tails."""
        parts = []
        with contextlib.suppress(Exception):
            for ng in self.client.list_objects(NODEGROUPS):
                parts.append(f"NodeGroup {ng['metadata']['name']}: status={json.dumps(ng.get('status'))}")
        with contextlib.suppress(Exception):
            for vn in self.vpsienodes():
                parts.append(f"VPSieNode {vn['metadata']['name']}: {json.dumps(vn.get('status'))}")
        with contextlib.suppress(Exception):
            for node in self.client.list_objects(NODES):
                parts.append(
                    f"Node {node['metadata']['name']}: labels={node['metadata'].get('labels')} "
                    f"taints={node['spec'].get('taints')}"
                )
        with contextlib.suppress(Exception):
            parts.append(f"cloud workers: {json.dumps(self.sim.workers(include_deleting=True))}")
        with contextlib.suppress(Exception):
            parts.append("Events:\n" + self.all_events_text())
        for scaler in self.autoscalers:
            for i, proc in enumerate(scaler.history):
                parts.append(f"--- {scaler.name} #{i} log tail ({proc.log}):\n{proc.tail(120)}")
        parts.append(f"--- cloudsim log tail:\n{self.sim.process.tail(40)}")
        return "\n".join(parts)

    # --- cleanup -----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Leave nothing behind: workloads, processes, NodeGroups, VPSieNodes, instances and Nodes.

        The autoscaler is stopped first and its objects are removed by force (finalizers dropped),
        because a fresh simulator per test means no instance outlives the test anyway; that
        deleting a NodeGroup really deletes its instances is a test of its own
        (``test_seed_traps.py``), not a side effect of every teardown.
        """
        with contextlib.suppress(Exception):
            self.sim.clear_faults()
        ns = self.namespace
        with contextlib.suppress(ApiError):
            for dep in self.client.list_objects(f"/apis/apps/v1/namespaces/{ns}/deployments"):
                self.client.delete(f"/apis/apps/v1/namespaces/{ns}/deployments/{dep['metadata']['name']}")
        for scaler in self.autoscalers:
            scaler.stop()
        self._force_delete()
        self.sim.stop()
        self.client.delete_nodes(f"{SIM_NODE_LABEL}=true")
        wait_until(
            lambda: self.sim_nodes() + self.vpsienodes() + self.client.list_objects(NODEGROUPS),
            lambda objs: not objs,
            timeout=CLEANUP_S,
            what="Nodes, VPSieNodes and NodeGroups gone",
        )

    def _force_delete(self) -> None:
        for path in (VPSIENODES, NODEGROUPS):
            for obj in self.client.list_objects(path):
                url = f"{path}/{obj['metadata']['name']}"
                with contextlib.suppress(ApiError):
                    self.client.merge_patch(url, {"metadata": {"finalizers": None}})
                with contextlib.suppress(ApiError):
                    self.client.delete(url)


def one_to_one(e2e: E2E, group: str, timeout: float = JOIN_S) -> None:
    """Each live VPSieNode of ``group`` has its own Node, labelled with it, and no Node is claimed twice.

    Waits first until every live VPSieNode is Ready (a pod may run on a Node a moment before its
    VPSieNode's status records it).
    """
    vns = e2e.wait(
        lambda: e2e.live_vpsienodes(group),
        lambda vns: all(phase_of(vn) == "Ready" for vn in vns),
        timeout=timeout,
        what=f"every live VPSieNode of {group} Ready",
    )
    node_names = [vn.get("status", {}).get("nodeName") for vn in vns]
    assert all(node_names), f"VPSieNodes without a node: {[vn['metadata']['name'] for vn in vns]}"
    assert len(set(node_names)) == len(node_names), f"two VPSieNodes claim one Node: {node_names}"
    nodes = {n["metadata"]["name"]: n for n in e2e.group_nodes(group)}
    assert set(node_names) == set(nodes), (
        f"VPSieNodes name {sorted(node_names)}, group Nodes are {sorted(nodes)}"
    )
    for vn in vns:
        node = nodes[vn["status"]["nodeName"]]
        assert node["metadata"]["labels"].get(VPSIENODE_LABEL) == vn["metadata"]["name"]


@contextlib.contextmanager
def timed(record: dict[str, float], key: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        record[key] = time.monotonic() - start


# --- kill matrix support (tests/e2e/test_kill_matrix.py) ---------------------------------------------
# VM NodeGroups (plain VPSie VMs, the simulator's default catalogue), the create/delete calls per source
# in the simulator's request log, fault hit counters, and a Kubernetes watch to act the moment an
# object appears.
VM_CREATE_PATHS: Final = frozenset({"/apps/v2/vm", "/api/v2/vm"})
MANAGED_DELETE_SUFFIX: Final = "/delete/slave"


def plan_identifier(group: VPSieGroup) -> str:
    """The VPSie plan identifier (a VM's ``resourceIdentifier``) of the size of ``group``."""
    [plan] = [p for p in SimConfig().plans if p.id == group.size_id]
    return plan.identifier


def vm_nodegroup(name: str, size: VPSieGroup, **options: Any) -> JsonObj:
    """A NodeGroup of plain VPSie VMs of the size of ``size`` (options as for :func:`nodegroup`)."""
    body = nodegroup(name, size, **options)
    del body["spec"]["managed"]
    body["spec"]["vm"] = {
        "resourceIdentifier": plan_identifier(size),
        "osIdentifier": DEFAULT_OS,
        "dcIdentifier": DEFAULT_DATACENTER,
        "projectId": DEFAULT_PROJECT,
    }
    return body


def sim_vms(sim: CloudSim, prefix: str = "", *, include_deleting: bool = False) -> list[JsonObj]:
    """VMs in the cloud whose hostname starts with ``prefix`` (``pending`` ones too: they are billed)."""
    return [
        v
        for v in sim.state()["vms"]
        if v["hostname"].startswith(prefix) and (include_deleting or v["phase"] != "deleting")
    ]


def vm_create_requests(sim: CloudSim) -> list[JsonObj]:
    """VM create calls the simulator served (any status)."""
    return [r for r in sim.requests() if r["method"] == "POST" and r["path"] in VM_CREATE_PATHS]


def delete_requests(sim: CloudSim, *, vm: bool = False) -> list[JsonObj]:
    """Targeted deletes the simulator served (any status): managed node deletes, or VM deletes."""
    return [
        r
        for r in sim.requests()
        if r["method"] == "DELETE"
        and (r["path"] in VM_CREATE_PATHS if vm else r["path"].endswith(MANAGED_DELETE_SUFFIX))
    ]


def sim_faults(sim: CloudSim) -> list[JsonObj]:
    """The simulator's faults with their ``hits``: a hit is counted when a request *arrives*, whereas
    ``/_sim/requests`` lists a request only once it has been answered (after any latency)."""
    faults: list[JsonObj] = http_json("GET", f"{sim.base_url}/_sim/faults")
    return faults


def fault_hits(sim: CloudSim, fault_id: int) -> int:
    return next((int(f["hits"]) for f in sim_faults(sim) if f["id"] == fault_id), 0)


def watch(
    client: KubeClient,
    path: str,
    *,
    label_selector: str | None = None,
    resource_version: str | None = None,
    timeout: float = 60.0,
) -> Generator[tuple[str, JsonObj], None, None]:
    """``(type, object)`` of each watch event on the collection ``path`` (from ``resource_version``),
    for at most ``timeout`` seconds; the caller stops early by closing the generator."""
    query = {"watch": "1", "timeoutSeconds": str(max(1, int(timeout)))}
    if label_selector:
        query["labelSelector"] = label_selector
    if resource_version:
        query["resourceVersion"] = resource_version
    headers = {"Accept": "application/json"}
    if client._token is not None:
        headers["Authorization"] = f"Bearer {client._token}"
    conn = http.client.HTTPSConnection(client._host, client._port, context=client._ssl, timeout=timeout + 5)
    try:
        conn.request("GET", f"{path}?{urllib.parse.urlencode(query)}", headers=headers)
        resp = conn.getresponse()
        if resp.status >= 400:
            raise ApiError("GET", path, resp.status, resp.read().decode(errors="replace"))
        for line in resp:
            if line.strip():
                event = json.loads(line)
                yield str(event["type"]), event["object"]
    finally:
        conn.close()


def collection_version(client: KubeClient, path: str) -> str:
    """The resourceVersion of a list of ``path``: a watch from it sees every later change."""
    return str(client.get(path)["metadata"]["resourceVersion"])
