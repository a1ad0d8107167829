"""Scenario 3: Kubernetes API faults under a changing workload (docs/reliability.md).

Both ``vpsie-autoscaler run`` replicas reach the apiserver only through :class:`FaultProxy` (the
HTTP proxy of ``tests/support/kube_proxy.py``, extended to cut *every* client connection, not only
watches, and to answer every held watch with 410 Gone). Three faults, one after the other, on one
stack (a managed and a VM NodeGroup, the chaos workload churning):

1. **cuts**: every connection between the autoscaler and the apiserver is cut every 10 s for
   ``cut_s`` seconds (requests in flight, keep-alive connections, watches);
2. **410 Gone**: every watch is dropped, the re-watches are held while the workload changes, then
   every held watch is answered with a 410 Expired (``test_runtime_informer.py``'s way, for all of
   them at once): every informer must relist;
3. **apiserver restart** (last, see :meth:`KubeFaultsScenario.before_checks`): a scale-up is forced
   (two Deployments above their range), and as soon as a new VPSieNode exists and is not yet bound,
   ``kube-apiserver`` is stopped, left down a few seconds and started again (the same argv and port:
   ``hack/devcluster/cluster.py``'s component).

With ``rounds`` > 1, faults 1 and 2 repeat ``rounds`` times, then fault 3 does.
After each fault the workload is frozen and the time until it has *converged* is measured: every
pod Running (no pending pod without its node), every live VPSieNode bound and Ready. Goal ≤ 30 s.
Then the run ends like every chaos run (final sizes, settle, duplicates 0, orphans 0, ...).

A replica that exits is started again by :class:`Supervisor` (the kubelet's job in a cluster); a
leader that cannot renew its Lease exits by design (``runtime/manager.py``), so restarts are
reported (not judged) in this scenario, with the exit reasons.

The module also holds what scenarios 4 and 6 share: :class:`SupervisedStack` (a :class:`ChaosStack`
with extra ``run`` flags, a supervisor and pausable churn) and :func:`wait_converged`; such a stack
runs its scenario with :func:`tests.chaos.harness.run_on`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp
import orjson
import yaml
from aiohttp import web

from hack.devcluster.cluster import APISERVER_READY_S, ClusterHandle, Component, DevCluster
from tests.chaos.figures import Figure, Figures
from tests.chaos.harness import ChaosConfig, ChaosStack, ChurnThread
from tests.chaos.watcher import PdbDip
from tests.e2e.harness import E2E, JsonObj, phase_of
from tests.support.kube_proxy import KubeProxy

T = TypeVar("T")

CONVERGE_GOAL_S: Final = 30.0
CONVERGE_TIMEOUT_S: Final = 120.0
CUT_EVERY_S: Final = 10.0
APISERVER_DOWN_S: Final = 5.0
SCALE_UP_SEEN_S: Final = 30.0
GONE_HOLD_S: Final = 3.0
SUPERVISE_EVERY_S: Final = 0.5


# --- the proxy -------------------------------------------------------------------------------------
class FaultProxy(KubeProxy):
    """:class:`KubeProxy` that can also cut every client connection and 410 every held watch; an
    apiserver that cannot be reached is answered with 503 (as a load balancer in front of a
    restarting apiserver would)."""

    def __init__(self, kubeconfig: Path) -> None:
        super().__init__(kubeconfig)
        self.connections: set[asyncio.BaseTransport] = set()
        self.cuts = 0
        self.cut_connections = 0
        self.held_now = 0
        self.gone_answers = 0
        self.upstream_errors = 0
        self.requests = 0
        self._gone_all = False

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if request.transport is not None:
            self.connections.add(request.transport)
        try:
            return await super()._handle(request)
        except (aiohttp.ClientError, OSError) as exc:
            self.upstream_errors += 1
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 503,
                "reason": "ServiceUnavailable",
                "message": f"apiserver unreachable (test proxy): {type(exc).__name__}",
            }
            return web.json_response(status, status=503)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        held = not self._gate.is_set()
        if held:
            self.held_now += 1
        try:
            await self._gate.wait()
        finally:
            if held:
                self.held_now -= 1
        if held and self._gone_all:
            self.gone_answers += 1
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version (forced by the chaos proxy)",
            }
            await resp.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
            await resp.write_eof()
            return resp
        return await super()._watch(request)

    def cut_all(self) -> int:
        """Close every client connection (in flight, idle keep-alive, watches); how many."""
        live = [t for t in self.connections if not t.is_closing()]
        for transport in live:
            transport.close()
        self.connections.clear()
        self._active.clear()
        self.cuts += 1
        self.cut_connections += len(live)
        return len(live)

    def release_all_gone(self) -> None:
        """Answer every held watch with 410 Expired (later watches stream normally)."""
        self._gone_all = True
        self._gate.set()

    def gone_off(self) -> None:
        self._gone_all = False


class ProxyThread:
    """A :class:`FaultProxy` on its own event loop thread; ``call`` runs a function on that loop."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self._kubeconfig = kubeconfig
        self.kubeconfig_path = workdir / "proxy.kubeconfig"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="chaos-kube-proxy", daemon=True)
        self.proxy: FaultProxy | None = None

    def start(self) -> ProxyThread:
        self._thread.start()

        async def make() -> FaultProxy:
            proxy = FaultProxy(self._kubeconfig)
            await proxy.start()
            return proxy

        self.proxy = self._run(make())
        self.kubeconfig_path.write_text(yaml.safe_dump(proxy_kubeconfig(self.proxy.url)))
        return self

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[FaultProxy], T]) -> T:
        proxy = self.proxy
        assert proxy is not None

        async def run() -> T:
            return fn(proxy)

        return self._run(run())

    def stop(self) -> None:
        if self.proxy is not None:
            with contextlib.suppress(Exception):
                self._run(self.proxy.stop(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


def proxy_kubeconfig(url: str) -> JsonObj:
    """A kubeconfig for the proxy: plain HTTP, no credentials (the proxy authenticates upstream)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "chaos-proxy", "cluster": {"server": url}}],
        "users": [{"name": "chaos-proxy", "user": {}}],
        "contexts": [{"name": "chaos-proxy", "context": {"cluster": "chaos-proxy", "user": "chaos-proxy"}}],
        "current-context": "chaos-proxy",
    }


# --- the apiserver ---------------------------------------------------------------------------------
def apiserver_of(cluster: ClusterHandle) -> Component | None:
    """The kube-apiserver component of a cluster this pytest session started (None when attached
    to a running one with DEVCLUSTER_KUBECONFIG: that one is not ours to restart)."""
    owner = getattr(cluster.check_alive, "__self__", None)
    if not isinstance(owner, DevCluster):
        return None
    return next((c for c in owner.components if c.name == "kube-apiserver"), None)


def restart_apiserver(component: Component, down_s: float) -> tuple[float, float]:
    """Stop kube-apiserver, leave it down ``down_s`` s, start it again (same argv, same port) and
    wait until /readyz; (seconds it was unreachable, wall-clock time it was ready again)."""
    stopped = time.monotonic()
    component.stop()
    time.sleep(down_s)
    component.start()
    component.wait_ready(APISERVER_READY_S)
    return time.monotonic() - stopped, time.time()


# --- supervised replicas ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Restart:
    replica: str
    code: int | None
    reason: str
    at: float


def exit_reason(log: Path) -> str:
    """The last error the process logged (its last line otherwise)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    for text in reversed(lines[-200:]):
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                line = json.loads(text)
                if line.get("level") in ("error", "critical"):
                    return str(line.get("event"))
    return lines[-1][:200] if lines else "(empty log)"


class Supervisor(threading.Thread):
    """Starts again a replica whose process exited, as the kubelet restarts a container."""

    def __init__(self, stack: ChaosStack) -> None:
        super().__init__(name="chaos-supervisor", daemon=True)
        self.stack = stack
        self.halt = threading.Event()
        self.restarts: list[Restart] = []

    def run(self) -> None:
        while not self.halt.wait(SUPERVISE_EVERY_S):
            for scaler in self.stack.replicas.all:
                proc = scaler.process
                if proc is None or proc.alive() or self.halt.is_set():
                    continue
                code = proc.popen.returncode if proc.popen is not None else None
                self.restarts.append(Restart(scaler.name, code, exit_reason(proc.log), time.time()))
                print(f"[chaos] {scaler.name} exited ({code}): restarting it", flush=True)
                with contextlib.suppress(Exception):
                    scaler.start()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def summary(self) -> str:
        return "; ".join(f"{r.replica} exit {r.code}: {r.reason}" for r in self.restarts)


class SupervisedStack(ChaosStack):
    """A :class:`ChaosStack` whose replicas get extra ``run`` flags, are restarted when they exit,
    and whose churn can be paused (a frozen workload to measure convergence against)."""

    def __init__(
        self, e2e: E2E, config: ChaosConfig, scenario: str, *, extra: tuple[str, ...], ephemeral: bool = False
    ) -> None:
        self._extra = extra  # read by autoscaler_args() during ChaosStack.__init__
        super().__init__(e2e, config, scenario, ephemeral=ephemeral)
        self.supervisor = Supervisor(self)

    def autoscaler_args(self) -> tuple[str, ...]:
        return self._extra

    def start(self) -> None:
        super().start()
        self.supervisor.start()

    def stop(self) -> None:
        if self.supervisor.is_alive():
            self.supervisor.stop()
        super().stop()

    def pause_churn(self) -> None:
        self.churn.stop()

    def resume_churn(self) -> None:
        errors = self.churn.errors
        self.churn = ChurnThread(self.workload, random.Random(self.rng.random()), self.config.churn_gap)
        self.churn.errors = errors
        self.churn.start()


# --- convergence -----------------------------------------------------------------------------------
def unconverged(stack: ChaosStack) -> list[str]:
    """Why the cluster has not converged on the current workload: pods not Running (a pending pod
    without its node), live VPSieNodes not bound or not Ready."""
    e2e = stack.e2e
    problems: list[str] = []
    pods = e2e.client.list_objects(f"/api/v1/namespaces/{e2e.namespace}/pods")
    pending = [
        p["metadata"]["name"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") != "Running"
    ]
    if pending:
        problems.append(f"pods not Running: {pending}")
    for group in stack.groups:
        for vn in e2e.vpsienodes(group):
            if vn["metadata"].get("deletionTimestamp") or phase_of(vn) == "Failed":
                continue
            bound = ((vn.get("status") or {}).get("launch") or {}).get("boundHostname")
            if phase_of(vn) != "Ready" or not bound:
                problems.append(f"{vn['metadata']['name']} {phase_of(vn)} bound={bound}")
    return problems


def wait_converged(stack: ChaosStack, since: float, timeout: float = CONVERGE_TIMEOUT_S) -> tuple[float, str]:
    """Seconds from ``since`` (monotonic) until :func:`unconverged` is empty (NaN on timeout), and
    the last problems seen."""
    deadline = since + timeout
    last: list[str] = []
    while time.monotonic() < deadline:
        try:
            last = unconverged(stack)
        except Exception as exc:  # the apiserver may still be warming up
            last = [f"{type(exc).__name__}: {str(exc)[:200]}"]
        if not last:
            return time.monotonic() - since, ""
        time.sleep(0.5)
    return math.nan, "; ".join(last)[:1500]


def converge_figure(scenario: str, fault: str, seconds: float, detail: str) -> Figure:
    return Figure(
        scenario, f"converged after {fault}", seconds, CONVERGE_GOAL_S, unit="s", detail=detail or "ok"
    )


# --- scenario 3 ------------------------------------------------------------------------------------
@dataclass
class KubeFaultsScenario:
    """Scenario 3 (see the module docstring). ``cut_s``: seconds of cuts; ``apiserver``: the
    component to restart (None: that fault is skipped and reported so)."""

    config: ChaosConfig
    proxy: ProxyThread
    apiserver: Component | None
    cut_s: float = 40.0
    rounds: int = 1
    name: str = "3-kube-api-faults"
    ephemeral: bool = False
    converged: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    outage_from: float | None = None  # monotonic: the first apiserver stop
    outage_dips: list[PdbDip] = field(default_factory=list)

    def disturb(self, stack: ChaosStack) -> None:
        assert isinstance(stack, SupervisedStack)
        for i in range(self.rounds):
            if self.rounds > 1:
                print(f"[chaos] {self.name}: round {i + 1}/{self.rounds}", flush=True)
            self._cuts(stack)
            self._gone(stack)
        # Last: after an apiserver outage the kube-controller-manager marks every Node (and so every
        # pod) not Ready and kwok does not mark the pods Ready again, so PDB counts mean nothing
        # afterwards (see before_checks).
        for _ in range(self.rounds):
            self._apiserver_restart(stack)

    def _measure(self, stack: SupervisedStack, fault: str, ended: float) -> None:
        stack.pause_churn()
        seconds, last = wait_converged(stack, ended)
        self.converged.setdefault(fault, []).append((seconds, last))
        print(f"[chaos] {fault}: converged after {seconds:.1f}s {last}", flush=True)
        stack.resume_churn()

    def _cuts(self, stack: SupervisedStack) -> None:
        until = time.monotonic() + self.cut_s
        while True:
            time.sleep(CUT_EVERY_S)
            cut = self.proxy.call(FaultProxy.cut_all)
            print(f"[chaos] cut {cut} connections to the apiserver", flush=True)
            if time.monotonic() >= until:
                break
        p = self.proxy.proxy
        assert p is not None
        self.notes["cuts"] = f"{p.cuts} cuts every {CUT_EVERY_S:g}s, {p.cut_connections} connections cut"
        self._measure(stack, "cuts", time.monotonic())

    def _apiserver_restart(self, stack: SupervisedStack) -> None:
        if self.apiserver is None:
            self.notes["apiserver restart"] = "skipped: cluster attached with DEVCLUSTER_KUBECONFIG"
            return
        e2e = stack.e2e
        stack.pause_churn()  # the test's own client cannot change the workload while it is down
        before = {v["metadata"]["uid"] for v in e2e.vpsienodes()}
        workload = stack.workload
        for app in workload.apps:
            if app.name in ("m-web", "v-web"):
                workload.scale(app, app.high + 2)
        deadline = time.monotonic() + SCALE_UP_SEEN_S
        launching: list[str] = []
        while time.monotonic() < deadline and not launching:
            launching = [
                f"{v['metadata']['name']} ({phase_of(v) or 'new'})"
                for v in e2e.vpsienodes()
                if v["metadata"]["uid"] not in before
                and not ((v.get("status") or {}).get("launch") or {}).get("boundHostname")
            ]
            time.sleep(0.1)
        if self.outage_from is None:
            self.outage_from = time.monotonic()
        down, _ = restart_apiserver(self.apiserver, APISERVER_DOWN_S)
        self.notes["apiserver restart"] = (
            f"unreachable {down:.1f}s while launching {launching or 'nothing seen'}; "
            f"proxy answered 503 {self._proxy().upstream_errors} times"
        )
        print(f"[chaos] apiserver restarted ({self.notes['apiserver restart']})", flush=True)
        ended = time.monotonic()
        seconds, last = wait_converged(stack, ended)
        self.converged.setdefault("apiserver restart", []).append((seconds, last))
        print(f"[chaos] apiserver restart: converged after {seconds:.1f}s {last}", flush=True)
        stack.resume_churn()

    def before_checks(self, stack: ChaosStack) -> None:
        """PDB dips from the first apiserver stop on are set aside (reported, not judged): the
        control plane itself then marks every Node not Ready ("master disruption mode") and every
        pod not Ready with it, so a PodDisruptionBudget's currentHealthy drops to 0 whatever the
        autoscaler does. The autoscaler drains only through the Eviction API, which refuses an
        eviction below a PDB's minimum in any case."""
        if self.outage_from is None:
            return
        watcher = stack.watcher
        self.outage_dips = [d for d in watcher.dips if d.at >= self.outage_from]
        watcher.dips = [d for d in watcher.dips if d.at < self.outage_from]

    def _proxy(self) -> FaultProxy:
        assert self.proxy.proxy is not None
        return self.proxy.proxy

    def _gone(self, stack: SupervisedStack) -> None:
        proxy = self._proxy()
        self.proxy.call(FaultProxy.hold_watches)
        dropped = self.proxy.call(FaultProxy.drop_watches)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proxy.held_now < dropped:
            time.sleep(0.1)
        stack.workload.step()  # a change the informers can only learn from the relist
        time.sleep(GONE_HOLD_S)
        held = proxy.held_now
        self.proxy.call(FaultProxy.release_all_gone)
        time.sleep(1.0)
        self.proxy.call(FaultProxy.gone_off)
        self.notes["410 Gone"] = (
            f"{dropped} watches dropped, {held} re-watches held, {proxy.gone_answers} answered 410"
        )
        print(f"[chaos] 410: {self.notes['410 Gone']}", flush=True)
        self._measure(stack, "410 Gone", time.monotonic())

    def calm(self, stack: ChaosStack) -> None:
        pass

    def figures(self, stack: ChaosStack, figures: Figures) -> None:
        for fault, runs in self.converged.items():
            worst = max((r[0] for r in runs), key=lambda v: math.inf if math.isnan(v) else v)
            lasts = "; ".join(r[1] for r in runs if r[1])
            shown = ", ".join(f"{r[0]:.1f}" for r in runs)
            detail = f"{len(runs)}x ({shown} s); {self.notes.get(fault, '')}; {lasts}"
            figures.add(converge_figure(self.name, fault, worst, detail))
        for fault in ("apiserver restart",):
            if fault not in self.converged:
                figures.count(self.name, f"{fault} skipped", 1, goal=None, detail=self.notes.get(fault, ""))
        figures.count(
            self.name,
            "PDB dips after the apiserver outage (not judged)",
            len(self.outage_dips),
            goal=None,
            detail="; ".join(f"{d.pdb}: {d.healthy} < {d.minimum}: {d.evidence}" for d in self.outage_dips)[
                :1500
            ],
        )
        if isinstance(stack, SupervisedStack):
            figures.count(
                self.name,
                "replica restarts",
                len(stack.supervisor.restarts),
                goal=None,
                detail=stack.supervisor.summary() or "none",
            )
        proxy = self._proxy()
        figures.count(
            self.name,
            "apiserver requests via proxy",
            proxy.requests,
            goal=None,
            detail=f"{len(proxy.watches)} watches, {len(proxy.lists)} GETs",
        )


def kube_faults_stack(e2e: E2E, config: ChaosConfig, proxy: ProxyThread, scenario: str) -> SupervisedStack:
    """The chaos stack with both replicas talking to the apiserver through ``proxy``."""
    return SupervisedStack(e2e, config, scenario, extra=("--kubeconfig", str(proxy.kubeconfig_path)))
