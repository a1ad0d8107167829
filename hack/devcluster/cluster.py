"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver, scheduler, controller manager, kwok.

The lifecycle follows envtest (controller-runtime ``pkg/internal/testing/controlplane``): start each
binary with a free port and its own log file, poll a readiness endpoint with a deadline, and fail
fast with the log tail if the process dies meanwhile. Unlike envtest we also run the scheduler, the
controller manager and kwok, because the autoscaler's behaviour depends on real scheduling
decisions (``PodScheduled=False/Unschedulable``), ReplicaSets, PodDisruptionBudgets, node lifecycle
and garbage collection. kwok (sigs.k8s.io/kwok, run like kwokctl's ``binary`` runtime) plays the
kubelets: Nodes carrying ``kwok.x-k8s.io/node=fake`` become Ready and heartbeat, and their bound
pods become Running.

Start order and readiness (see docs/devcluster.md for the measured times):

1. PKI and kubeconfigs (``pki.py``);
2. etcd, ready when ``/health`` says ``"health":"true"``;
3. kube-apiserver, ready when ``/readyz`` (all post-start hooks, RBAC bootstrap) answers 200;
4. controller manager and scheduler, ready on ``/healthz``; then the ServiceAccount controller's
   ``default/default`` ServiceAccount proves the controllers run;
5. kwok, ready on ``/healthz``; then a canary Node must become Ready, proving stages and leases.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hack.devcluster import pki as pkimod
from hack.devcluster.client import DEFAULT_TOKEN_SECONDS, ApiError, DevKubeClient
from hack.devcluster.nodes import KWOK_ANNOTATION, KWOK_ANNOTATION_VALUE, make_kwok_node
from hack.devcluster.processes import STOP_GRACE_S, ProcessRecord, stop_popen

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "helm")
KWOK_STAGES_FILE = "kwok-stages.yaml"
# Environment overrides: a prebuilt binary dir (skips build.py), and fixed ports for debugging.
BIN_DIR_ENV = "DEVCLUSTER_BIN_DIR"
PORT_ENV_PREFIX = "DEVCLUSTER_PORT_"  # e.g. DEVCLUSTER_PORT_KUBE_APISERVER=6443

# Readiness deadlines. Generous because the machine may be a loaded 2-core CI runner (the apiserver
# alone compiles its OpenAPI and runs ~40 post-start hooks), bounded so a broken start fails in
# minutes, not at the CI timeout.
ETCD_READY_S = 30.0
APISERVER_READY_S = 120.0
CONTROLLERS_READY_S = 60.0
KWOK_READY_S = 60.0
CANARY_READY_S = 60.0
PROBE_TIMEOUT_S = 2.0
POLL_S = 0.1
LOG_TAIL_LINES = 50
_LOG_TAIL_BYTES = 64 * 1024
# A port chosen free can be taken before the component binds it; one retry with fresh ports.
PORT_RETRIES = 2
ADDRESS_IN_USE = "address already in use"

# Cluster network layout: service IPs for the apiserver, pod CIDRs the controller manager hands to
# Nodes (kwok assigns pod IPs from each Node's podCIDR, so thousands of pods fit), and the address
# kwok reports as every Node's InternalIP.
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.244.0.0/16"
NODE_CIDR_MASK = "24"
KWOK_NODE_IP = "10.255.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Faster node lifecycle than upstream defaults (5 s / 50 s), matched with a 20 s kwok lease renewed
# every 5 s, so "node died" scenarios resolve in tens of seconds.
NODE_MONITOR_PERIOD = "2s"
NODE_MONITOR_GRACE = "20s"
KWOK_LEASE_SECONDS = 20
# kwok's own default worker counts (v0.8.0 zz_generated.defaults.go).
KWOK_PARALLELISM = 4
# NoExecute tolerations for not-ready/unreachable default to 300 s; 30 s keeps eviction tests short.
DEFAULT_TOLERATION_SECONDS = "30"
CLIENT_QPS = "100"
CLIENT_BURST = "200"
ETCD_QUOTA_BYTES = str(4 * 1024**3)
CANARY_NODE = "devcluster-canary"


class ComponentError(RuntimeError):
    """A control-plane component failed; the message ends with the last lines of its log."""


class ComponentDied(ComponentError):
    pass


class ComponentNotReady(ComponentError):
    pass


def find_binaries() -> Path | None:
    """The directory with the built tools, or None if they are not built yet.

    ``$DEVCLUSTER_BIN_DIR`` wins (it must then be complete); otherwise ask ``build.py`` for the cache
    directory of the current pins, which needs ``go`` only to compute the cache key.
    """
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        path = Path(override)
        missing = [b for b in BINARIES if not (path / b).exists()]
        if missing:
            raise FileNotFoundError(f"${BIN_DIR_ENV}={path} lacks {', '.join(missing)}")
        return path
    if shutil.which("go") is None:
        return None
    from hack.devcluster import build

    path = build.bin_dir()
    return path if (path / ".complete").exists() else None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
            data = f.read().decode(errors="replace")
    except OSError as err:
        return f"(no log: {err})"
    return "\n".join(data.splitlines()[-lines:])


_taken_ports: set[int] = set()


def free_port(name: str) -> int:
    """A free TCP port on 127.0.0.1 (or ``$DEVCLUSTER_PORT_<NAME>``), never one handed out before."""
    env = os.environ.get(PORT_ENV_PREFIX + name.upper().replace("-", "_"))
    if env:
        return int(env)
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _taken_ports:
            _taken_ports.add(port)
            return port


def http_probe(url: str, *, expect: str | None = None, context: ssl.SSLContext | None = None) -> bool:
    """True when ``url`` answers 200 (and contains ``expect``); any connection error means not yet."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S, context=context) as resp:
            body = resp.read().decode(errors="replace")
            return bool(resp.status == 200 and (expect is None or expect in body))
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _insecure_context() -> ssl.SSLContext:
    # The controller manager and scheduler serve /healthz with an in-memory self-signed certificate,
    # and always allow /healthz unauthenticated; there is nothing to verify.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Component:
    """One control-plane process: argv, log file, readiness probe, and its own process group."""

    name: str
    argv: list[str]
    log_path: Path
    probe: Callable[[], bool]
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"# {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: teardown signals only this component
                env=dict(self.env) if self.env is not None else None,
            )

    def tail(self) -> str:
        return log_tail(self.log_path)

    def check_alive(self) -> None:
        """Raise ``ComponentDied`` with the log tail if the process has exited."""
        if self.proc is None:
            raise ComponentDied(f"{self.name} was never started")
        code = self.proc.poll()
        if code is not None:
            raise ComponentDied(
                f"{self.name} exited with code {code}; last lines of {self.log_path}:\n{self.tail()}"
            )

    def wait_ready(self, timeout: float) -> float:
        """Poll the probe until it passes; return the seconds it took. Fails fast if the process dies."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            self.check_alive()
            if self.probe():
                return time.monotonic() - started
            if time.monotonic() >= deadline:
                raise ComponentNotReady(
                    f"{self.name} not ready after {timeout:.0f}s; "
                    f"last lines of {self.log_path}:\n{self.tail()}"
                )
            time.sleep(POLL_S)

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        if self.proc is not None:
            stop_popen(self.proc, grace)

    def record(self) -> ProcessRecord:
        assert self.proc is not None
        return ProcessRecord.of(self.name, self.proc, self.log_path)


@dataclass
class ClusterHandle:
    """What tests and tools need to use a running cluster; the object the ``k8s_cluster`` fixture yields.

    * ``kubeconfig``: admin kubeconfig (``system:masters``, certificates embedded);
    * ``api_url``: ``https://127.0.0.1:<port>``;
    * ``bin_dir``: the built tools (``helm``, ``kwok``, ``etcd``, the Kubernetes components);
    * ``client``: a ``DevKubeClient`` authenticated as admin;
    * ``sa_kubeconfig(namespace, name)``: a kubeconfig with a fresh ServiceAccount token (RBAC applies).
    """

    kubeconfig: Path
    api_url: str
    bin_dir: Path
    client: DevKubeClient
    workdir: Path
    check_alive: Callable[[], None] = field(default=lambda: None)

    def sa_kubeconfig(
        self,
        namespace: str,
        sa_name: str,
        *,
        path: Path | None = None,
        expiration_seconds: int = DEFAULT_TOKEN_SECONDS,
    ) -> Path:
        """Write a kubeconfig that acts as ServiceAccount ``namespace/sa_name`` via ``TokenRequest``."""
        token = self.client.request_token(namespace, sa_name, expiration_seconds=expiration_seconds)
        target = path or self.workdir / "sa-kubeconfigs" / f"{namespace}.{sa_name}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{sa_name}"
        return pkimod.write_token_kubeconfig(target, self.api_url, self.client.ca_pem, user, token)

    def tool(self, name: str) -> Path:
        """Path of a built tool, e.g. ``tool("helm")``."""
        path = self.bin_dir / name
        if not path.exists():
            raise FileNotFoundError(f"{name} not found in {self.bin_dir}")
        return path

    @classmethod
    def attach(cls, kubeconfig: Path, bin_dir: Path, workdir: Path) -> ClusterHandle:
        """Use a cluster that is already running (e.g. from ``make devcluster``) through its kubeconfig."""
        client = DevKubeClient.from_kubeconfig(kubeconfig)
        return cls(
            kubeconfig=kubeconfig, api_url=client.server, bin_dir=bin_dir, client=client, workdir=workdir
        )


class DevCluster:
    """Starts and stops the control plane in ``workdir`` with the binaries in ``bin_dir``.

    Use as a context manager, or ``start()``/``stop()``. ``detach()`` leaves the processes running
    after this Python process exits (``make devcluster``); otherwise an ``atexit`` hook stops them
    even if the caller crashes.
    """

    def __init__(self, bin_dir: Path, workdir: Path, *, verbosity: int = 1) -> None:
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.verbosity = verbosity
        self.components: list[Component] = []
        self.timings: dict[str, float] = {}
        self.kubeconfig = workdir / "kubeconfig"
        self.logs = workdir / "logs"
        self.handle: ClusterHandle | None = None
        self.etcd_url = ""
        self._atexit_registered = False

    # --- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> ClusterHandle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ClusterHandle:
        missing = [b for b in BINARIES if not (self.bin_dir / b).exists()]
        if missing:
            raise FileNotFoundError(f"{self.bin_dir} lacks {', '.join(missing)}; run make devcluster-build")
        atexit.register(self.stop)
        self._atexit_registered = True
        began = time.monotonic()
        try:
            self._start_all()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began
        assert self.handle is not None
        return self.handle

    def stop(self) -> None:
        """Stop our components in reverse start order (kwok first, etcd last). Idempotent."""
        for comp in reversed(self.components):
            comp.stop()
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    def detach(self) -> list[ProcessRecord]:
        """Keep the components running past this process; return the records needed to stop them."""
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False
        return [c.record() for c in self.components]

    def check_alive(self) -> None:
        """Raise ``ComponentDied`` (with its log tail) if any started component has exited."""
        for comp in self.components:
            comp.check_alive()

    # --- start sequence ---------------------------------------------------------------------------

    def _launch(self, make: Callable[[], Component], timeout: float) -> Component:
        for attempt in range(PORT_RETRIES):
            comp = make()
            comp.start()
            self.components.append(comp)
            try:
                self.timings[comp.name] = comp.wait_ready(timeout)
            except ComponentDied as err:
                if ADDRESS_IN_USE in str(err) and attempt + 1 < PORT_RETRIES:
                    self.components.remove(comp)
                    continue
                raise
            return comp
        raise AssertionError("unreachable")

    def _start_all(self) -> None:
        began = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        certs = pkimod.generate(self.workdir / "pki")
        self.timings["pki"] = time.monotonic() - began

        self._launch(self._etcd, ETCD_READY_S)
        apiserver_port = 0

        def make_apiserver() -> Component:
            nonlocal apiserver_port
            apiserver_port = free_port("kube-apiserver")
            return self._apiserver(certs, apiserver_port)

        self._launch(make_apiserver, APISERVER_READY_S)
        api_url = f"https://127.0.0.1:{apiserver_port}"
        pkimod.write_admin_kubeconfig(self.kubeconfig, api_url, certs)
        client = DevKubeClient.from_kubeconfig(self.kubeconfig, liveness=self.check_alive)
        self.handle = ClusterHandle(
            kubeconfig=self.kubeconfig,
            api_url=api_url,
            bin_dir=self.bin_dir,
            client=client,
            workdir=self.workdir,
            check_alive=self.check_alive,
        )

        began = time.monotonic()
        self._launch(lambda: self._controller_manager(certs), CONTROLLERS_READY_S)
        self._launch(self._scheduler, CONTROLLERS_READY_S)
        client.wait_for(
            "/api/v1/namespaces/default/serviceaccounts/default",
            lambda sa: sa is not None,
            timeout=CONTROLLERS_READY_S,
            what="the ServiceAccount controller to create default/default",
        )
        self.timings["controllers"] = time.monotonic() - began

        self._launch(self._kwok, KWOK_READY_S)
        began = time.monotonic()
        client.create_node(make_kwok_node(CANARY_NODE, cpu="1", memory="1Gi"))
        client.wait_node_ready(CANARY_NODE, timeout=CANARY_READY_S)
        client.delete_node(CANARY_NODE)
        client.wait_gone(f"/api/v1/nodes/{CANARY_NODE}", timeout=CANARY_READY_S)
        self.timings["canary-node"] = time.monotonic() - began

    # --- components -------------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _etcd(self) -> Component:
        client_port, peer_port = free_port("etcd"), free_port("etcd-peer")
        data = self.workdir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        argv = [
            self._bin("etcd"),
            "--name=node0",
            f"--data-dir={data}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=node0={peer}",
            "--unsafe-no-fsync=true",  # throw-away data: fsync only slows a shared disk
            f"--quota-backend-bytes={ETCD_QUOTA_BYTES}",
            "--auto-compaction-retention=1",
            "--log-level=warn",
        ]
        url = f"{self.etcd_url}/health"
        return Component("etcd", argv, self._log("etcd"), lambda: http_probe(url, expect='"health":"true"'))

    def _apiserver(self, certs: pkimod.Pki, port: int) -> Component:
        argv = [
            self._bin("kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            # Without these the apiserver picks a default-route address (and fails without one) and
            # keeps trying to publish a loopback IP in the "kubernetes" Endpoints.
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={certs.apiserver_cert}",
            f"--tls-private-key-file={certs.apiserver_key}",
            f"--client-ca-file={certs.ca_cert}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={certs.sa_pub}",
            f"--service-account-signing-key-file={certs.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--requestheader-client-ca-file={certs.ca_cert}",
            f"--requestheader-allowed-names={pkimod.FRONT_PROXY_USER}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={certs.front_proxy_cert}",
            f"--proxy-client-key-file={certs.front_proxy_key}",
            "--enable-aggregator-routing=true",  # no kube-proxy: reach aggregated APIs via endpoints
            "--authorization-mode=RBAC",  # so the autoscaler's ClusterRole is really exercised
            "--allow-privileged=true",
            f"--default-not-ready-toleration-seconds={DEFAULT_TOLERATION_SECONDS}",
            f"--default-unreachable-toleration-seconds={DEFAULT_TOLERATION_SECONDS}",
            "--enable-priority-and-fairness=false",  # less overhead on a small machine
            f"--cert-dir={self.workdir / 'apiserver'}",
            "--profiling=false",
            f"--v={self.verbosity}",
        ]
        ca = certs.ca_cert.read_bytes()
        probe_client = DevKubeClient(
            f"https://127.0.0.1:{port}",
            ca,
            cert_pem=certs.admin_cert.read_bytes(),
            key_pem=certs.admin_key.read_bytes(),
        )

        def ready() -> bool:
            try:
                probe_client.get("/readyz")
            except (OSError, ApiError):  # refused, TLS not up yet, or 500 while hooks run: not yet
                return False
            return True

        return Component("kube-apiserver", argv, self._log("kube-apiserver"), ready)

    def _controller_manager(self, certs: pkimod.Pki) -> Component:
        port = free_port("kube-controller-manager")
        kc = str(self.kubeconfig)
        argv = [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--leader-elect=false",  # no lease wait after a restart
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--controllers=*",
            f"--service-account-private-key-file={certs.sa_key}",
            f"--root-ca-file={certs.ca_cert}",
            f"--node-monitor-period={NODE_MONITOR_PERIOD}",
            f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={CLUSTER_CIDR}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--node-cidr-mask-size={NODE_CIDR_MASK}",
            f"--kube-api-qps={CLIENT_QPS}",
            f"--kube-api-burst={CLIENT_BURST}",
            "--profiling=false",
            f"--v={self.verbosity}",
        ]
        url = f"https://127.0.0.1:{port}/healthz"
        ctx = _insecure_context()
        return Component(
            "kube-controller-manager",
            argv,
            self._log("kube-controller-manager"),
            lambda: http_probe(url, context=ctx),
        )

    def _scheduler(self) -> Component:
        port = free_port("kube-scheduler")
        config = self.workdir / "kube-scheduler.yaml"
        config.write_text(
            json.dumps(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {
                        "kubeconfig": str(self.kubeconfig),
                        "qps": int(CLIENT_QPS),
                        "burst": int(CLIENT_BURST),
                    },
                    "leaderElection": {"leaderElect": False},
                },
                indent=2,
            )
        )
        kc = str(self.kubeconfig)
        argv = [
            self._bin("kube-scheduler"),
            f"--config={config}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--profiling=false",
            f"--v={self.verbosity}",
        ]
        url = f"https://127.0.0.1:{port}/healthz"
        ctx = _insecure_context()
        return Component(
            "kube-scheduler", argv, self._log("kube-scheduler"), lambda: http_probe(url, context=ctx)
        )

    def _kwok(self) -> Component:
        port = free_port("kwok")
        home = self.workdir / "kwok-home"  # kwok loads ~/.kwok/kwok.yaml if present: isolate HOME
        home.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "kwok.yaml"
        stages = (self.bin_dir / KWOK_STAGES_FILE).read_text()
        # A KwokConfiguration read from --config is not defaulted (kwok v0.8.0 only defaults the one it
        # creates when none is given), so every option kwok needs is spelled out here.
        kwok_conf = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            "options": {
                "manageAllNodes": False,
                "manageNodesWithAnnotationSelector": f"{KWOK_ANNOTATION}={KWOK_ANNOTATION_VALUE}",
                "nodeLeaseDurationSeconds": KWOK_LEASE_SECONDS,
                "cidr": CLUSTER_CIDR,
                "nodeIP": KWOK_NODE_IP,
                "serverAddress": f"127.0.0.1:{port}",
                "enableDebuggingHandlers": False,
                "enableContentionProfiling": False,
                "enableProfilingHandler": False,
                "podPlayStageParallelism": KWOK_PARALLELISM,
                "nodePlayStageParallelism": KWOK_PARALLELISM,
                "nodeLeaseParallelism": KWOK_PARALLELISM,
                "podsOnNodeSyncParallelism": 1,
                "enablePodsOnNodeSyncListPager": True,
                "enablePodsOnNodeSyncStreamWatch": False,
            },
        }
        config.write_text(json.dumps(kwok_conf, indent=2) + "\n---\n" + stages)
        argv = [self._bin("kwok"), f"--kubeconfig={self.kubeconfig}", f"--config={config}"]
        env = {**os.environ, "HOME": str(home)}
        url = f"http://127.0.0.1:{port}/healthz"
        return Component("kwok", argv, self._log("kwok"), lambda: http_probe(url), env=env)
