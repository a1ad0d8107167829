"""The chaos harness: two leader-elected replicas, a managed and a VM NodeGroup, a changing workload,
a watcher, and end checks after things settle. Scenarios plug in through :class:`Scenario`.

A run (:func:`run_scenario`):

1. :class:`ChaosStack` applies the NodeGroups (``chaos-managed``: the simulated managed cluster's
   Advanced group; ``chaos-vm``: plain VMs of the Advanced plan), starts two ``vpsie-autoscaler run``
   replicas sharing one Lease (:class:`Replicas`), the :class:`~tests.chaos.watcher.Watcher` and the
   :class:`~tests.chaos.workload.Workload`;
2. the workload churns on a seeded schedule in a background thread while ``scenario.disturb(stack)``
   does its damage (kills, faults, ...);
3. the churn stops, the workload takes its final sizes, ``scenario.calm(stack)`` undoes what must be
   undone (faults cleared), and the stack waits until it settles;
4. the end checks add figures: duplicates 0, orphans 0, PDB violations 0, evictions of
   ``safe-to-evict: "false"`` pods 0, the node count each group needs, every pod Running; then
   ``scenario.figures(stack)`` adds its own.

To add a scenario (Kubernetes API faults through ``tests/support/kube_proxy.py``, credentials,
load): write a class with ``name``, ``disturb``, ``calm`` and ``figures``; to point the replicas at
a proxy, subclass :class:`ChaosStack` and override :meth:`ChaosStack.autoscaler_args` (extra ``run``
flags) or hand the replicas another kubeconfig; new figures go through :class:`~tests.chaos.figures.Figures`.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

from tests.chaos.figures import REGISTRY, Figures
from tests.chaos.watcher import Watcher, current_orphans
from tests.chaos.workload import EPHEMERAL_GROUP, Workload, default_apps
from tests.e2e.harness import (
    ADVANCED,
    E2E,
    NODEGROUPS,
    Autoscaler,
    JsonObj,
    WaitTimeout,
    is_running,
    nodegroup,
    phase_of,
    vm_nodegroup,
    wait_until,
)
from vpsie_autoscaler.controllers.cloud import vm_hostname_prefix

MANAGED_GROUP: Final = "chaos-managed"
VM_GROUP: Final = "chaos-vm"
GROUP_TIMINGS: Final = {
    "unneeded_time": "8s",
    "delay_after_scale_up": "5s",
    "max_graceful_termination": "10s",
}
ORPHAN_MARKS: Final = re.compile("has no VPSieNode|has no instance|not in the cloud")
PROVISIONING_S: Final = 60.0  # the groups' maxProvisionTime: an unbound record or instance older is an orphan
HANDOVER_MARK: Final = "leading; starting controllers"
ACTION_LOGGERS: Final = ("vpsie_autoscaler.controllers", "vpsie_autoscaler.vpsie")


# --- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Lease:
    duration: float
    renew: float
    retry: float

    @classmethod
    def parse(cls, text: str) -> Lease:
        if text in LEASES:
            return LEASES[text]
        duration, renew, retry = (float(v) for v in text.split(","))
        return cls(duration, renew, retry)

    def __str__(self) -> str:
        return f"lease {self.duration:g}s/renew {self.renew:g}s/retry {self.retry:g}s"


LEASES: Final = {
    "fast": Lease(4.0, 3.0, 0.5),  # the e2e suite's: a killed leader is replaced in seconds
    "production": Lease(15.0, 10.0, 2.0),  # `vpsie-autoscaler run` defaults
}


@dataclass(frozen=True)
class ChaosConfig:
    """One run's parameters. ``full`` reads CHAOS_KILLS, CHAOS_FAULT_MINUTES, CHAOS_GRACEFUL_STOPS,
    CHAOS_LEASE (``fast``, ``production`` or ``duration,renew,retry``), CHAOS_SETTLE_S; both read
    CHAOS_SEED (printed with the figures, so a failing run replays)."""

    profile: str
    seed: int
    kills: int
    fault_minutes: float
    graceful_stops: int
    lease: Lease
    settle_s: float
    kill_gap: tuple[float, float] = (1.0, 6.0)  # seconds between a standby being ready and the next kill
    churn_gap: tuple[float, float] = (2.0, 6.0)  # seconds between two workload changes
    fault_rate: float = 0.30

    @classmethod
    def from_env(cls, profile: str) -> ChaosConfig:
        env = os.environ
        seed = int(env.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
        if profile == "short":
            return cls(
                "short",
                seed,
                kills=10,
                fault_minutes=2.0,
                graceful_stops=3,
                lease=LEASES["fast"],
                settle_s=120.0,
            )
        return cls(
            "full",
            seed,
            kills=int(env.get("CHAOS_KILLS", "100")),
            fault_minutes=float(env.get("CHAOS_FAULT_MINUTES", "10")),
            graceful_stops=int(env.get("CHAOS_GRACEFUL_STOPS", "10")),
            lease=Lease.parse(env.get("CHAOS_LEASE", "production")),
            settle_s=float(env.get("CHAOS_SETTLE_S", "300")),
        )

    def rng(self, scenario: str) -> random.Random:
        """A random source per scenario, derived from the seed (scenarios do not shift each other)."""
        return random.Random(f"{self.seed}:{scenario}")


# --- replicas --------------------------------------------------------------------------------------
@dataclass
class ChaosAutoscaler(Autoscaler):
    """An e2e :class:`Autoscaler` with the run's Lease timings and optional extra argv/env."""

    lease: Lease = LEASES["fast"]

    def argv(self) -> list[str]:
        args = super().argv()
        for flag, value in (
            ("--lease-duration", self.lease.duration),
            ("--renew-deadline", self.lease.renew),
            ("--retry-period", self.lease.retry),
        ):
            args[args.index(flag) + 1] = str(value)
        return args


@dataclass(frozen=True)
class Failover:
    """One hand-over: the leader SIGKILLed (or SIGTERMed), the standby's first action after it."""

    graceful: bool
    victim: str
    successor: str
    stopped_at: float  # wall clock
    acquired_at: float  # the successor's "leading; starting controllers"
    first_action_at: float  # its first controller log line after that
    first_action: str
    moment: str  # what the cluster was doing when it happened

    @property
    def seconds(self) -> float:
        return self.first_action_at - self.stopped_at


FAILOVERS: Final[list[Failover]] = []
"""Every hand-over of the session (scenario 5 reports over scenario 1's kills)."""


def _log_time(line: JsonObj) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def first_action_after(log: Path, offset: int) -> tuple[float, float, str] | None:
    """In ``log`` from byte ``offset``: (time it started leading, time of its first controller line,
    that line's event), or None while it has not acted yet."""
    try:
        with log.open("rb") as f:
            f.seek(offset)
            raw = f.read()
    except OSError:
        return None
    acquired: float | None = None
    for text in raw.decode(errors="replace").splitlines():
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if acquired is None:
            if line.get("event") == HANDOVER_MARK:
                acquired = _log_time(line)
            continue
        if str(line.get("logger", "")).startswith(ACTION_LOGGERS):
            return acquired, _log_time(line), str(line.get("event"))
    return None


class Replicas:
    """Two replicas of ``vpsie-autoscaler run`` under one Lease; hand-overs on demand."""

    def __init__(self, e2e: E2E, lease: Lease, extra_args: tuple[str, ...] = ()) -> None:
        self.e2e = e2e
        self.lease = lease
        lease_id = f"vpsie-autoscaler-{e2e.namespace}"[:63]
        self.all = [
            ChaosAutoscaler(
                workdir=e2e.workdir,
                name=name,
                kubeconfig=e2e.kubeconfig,
                sim=e2e.sim,
                namespace=e2e.namespace,
                lease_id=lease_id,
                extra_args=extra_args,
                lease=lease,
            )
            for name in ("replica-a", "replica-b")
        ]
        e2e.autoscalers.extend(self.all)

    def start(self) -> None:
        first, second = self.all
        first.start()
        first.wait_ready()
        first.wait_leader(timeout=self.lease.duration * 2 + 30)
        second.start()
        second.wait_ready()

    @staticmethod
    def _leads(scaler: Autoscaler) -> bool:
        if scaler.process is None or not scaler.process.alive():
            return False
        try:
            return scaler.is_leader()
        except (AssertionError, OSError):
            return False

    def roles(self, timeout: float = 60.0) -> tuple[Autoscaler, Autoscaler]:
        """(leader, standby), once exactly one leads."""
        leaders = wait_until(
            lambda: [s for s in self.all if self._leads(s)],
            lambda found: len(found) == 1,
            timeout=timeout,
            what="exactly one leading replica",
            alive=[self.e2e.sim.process],
        )
        [leader] = leaders
        [standby] = [s for s in self.all if s is not leader]
        return leader, standby

    def fail_over(self, *, graceful: bool, moment: str = "") -> Failover:
        """SIGKILL (or SIGTERM) the leader; wait for the standby's first action; restart the victim as
        the new standby and wait until it is ready."""
        leader, standby = self.roles()
        log = standby.proc.log
        offset = log.stat().st_size
        how = "stopped" if graceful else "killed"
        stopped_at = time.time()
        if graceful:
            stopper = threading.Thread(target=leader.stop, daemon=True)
            stopper.start()
        else:
            leader.kill9()
        found = wait_until(
            lambda: first_action_after(log, offset),
            bool,
            timeout=self.lease.duration + self.lease.retry + 60,
            what=f"{standby.name} to lead and act after {leader.name} was {how}",
            alive=[self.e2e.sim.process, standby.proc],
            interval=0.1,
        )
        assert found is not None
        if graceful:
            stopper.join(timeout=30)
        acquired, acted, event = found
        failover = Failover(graceful, leader.name, standby.name, stopped_at, acquired, acted, event, moment)
        FAILOVERS.append(failover)
        leader.start()
        leader.wait_ready()
        return failover


# --- the stack -------------------------------------------------------------------------------------
def group_body(name: str, *, vm: bool) -> JsonObj:
    options: dict[str, Any] = {"max_nodes": 6, "backoff_initial": "5s", **GROUP_TIMINGS}
    body = vm_nodegroup(name, ADVANCED, **options) if vm else nodegroup(name, ADVANCED, **options)
    body["spec"]["provisioning"]["backoff"]["max"] = "20s"  # the settle must not wait out a 5 min backoff
    return body


class ChurnThread(threading.Thread):
    """Calls ``workload.step()`` every ``gap`` seconds (seeded) until stopped."""

    def __init__(self, workload: Workload, rng: random.Random, gap: tuple[float, float]) -> None:
        super().__init__(name="chaos-churn", daemon=True)
        self.workload = workload
        self.rng = rng
        self.gap = gap
        self.halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.halt.wait(self.rng.uniform(*self.gap)):
            try:
                self.workload.step()
            except Exception:
                self.errors.append(traceback.format_exc(limit=3))

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


@dataclass
class Settled:
    seconds: float
    instances: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class ChaosStack:
    """The cluster side of a run: NodeGroups, replicas, watcher, workload."""

    def __init__(self, e2e: E2E, config: ChaosConfig, scenario: str, *, ephemeral: bool = False) -> None:
        self.e2e = e2e
        self.config = config
        self.scenario = scenario
        self.rng = config.rng(scenario)
        self.groups = [MANAGED_GROUP, VM_GROUP]
        self.replicas = Replicas(e2e, config.lease, self.autoscaler_args())
        self.watcher = Watcher(e2e, self.classify)
        self.workload = Workload(
            e2e,
            random.Random(self.rng.random()),
            default_apps(MANAGED_GROUP, VM_GROUP),
            ephemeral=ephemeral,
            guard=self.watcher.guard,
            group_timings=GROUP_TIMINGS,
        )
        self.churn = ChurnThread(self.workload, random.Random(self.rng.random()), config.churn_gap)
        self._managed_group_id: int | None = None

    def autoscaler_args(self) -> tuple[str, ...]:
        return ()

    def classify(self, inst: JsonObj) -> str | None:
        if inst.get("group_id") is not None:
            if self._managed_group_id is None:
                self._managed_group_id = self.e2e.sim.group_id(ADVANCED)
            return MANAGED_GROUP if inst["group_id"] == self._managed_group_id else None
        host = str(inst.get("hostname", ""))
        for group in (VM_GROUP, EPHEMERAL_GROUP):
            if host.startswith(vm_hostname_prefix(group)):
                return group
        return None

    def start(self) -> None:
        self.e2e.apply_nodegroup(group_body(MANAGED_GROUP, vm=False))
        self.e2e.apply_nodegroup(group_body(VM_GROUP, vm=True))
        self.replicas.start()
        self.watcher.start()
        self.workload.deploy()
        self.churn.start()

    def stop(self) -> None:
        self.churn.stop()
        self.watcher.stop()

    # --- the end -----------------------------------------------------------------------------------
    def cloud_instances(self) -> list[tuple[str, str]]:
        state = self.e2e.sim.state()
        found: list[JsonObj] = [
            n for c in state["clusters"] for n in c["nodes"] if n.get("group_id") is not None
        ]
        found += state["vms"]
        return [
            (self.classify(i) or "", str(i["hostname"]).lower())
            for i in found
            if i.get("phase") != "deleting"
        ]

    def observe(self) -> Settled:
        """The end state and everything wrong with it (empty ``problems``: settled)."""
        problems: list[str] = []
        live: dict[str, list[JsonObj]] = {}
        records: dict[str, int] = {}
        for group in self.groups:
            vns = self.e2e.vpsienodes(group)
            live[group] = [
                v for v in vns if not v["metadata"].get("deletionTimestamp") and phase_of(v) != "Failed"
            ]
            records[group] = len(live[group])
            others = [
                v["metadata"]["name"]
                for v in vns
                if v not in live[group] and not (phase_of(v) == "Failed" and not _bound(v))
            ]
            if others:
                problems.append(f"{group}: VPSieNodes still going: {others}")
            not_ready = [v["metadata"]["name"] for v in live[group] if phase_of(v) != "Ready"]
            if not_ready:
                problems.append(f"{group}: VPSieNodes not Ready: {not_ready}")
            need = self.workload.needed_nodes(group)
            if len(live[group]) != need:
                problems.append(
                    f"{group}: {len(live[group])} live VPSieNodes, the final workload needs {need}"
                )
        instances = self.cloud_instances()
        by_group: dict[str, list[str]] = {}
        for group, host in instances:
            by_group.setdefault(group, []).append(host)
        for group in self.groups:
            need = self.workload.needed_nodes(group)
            have = len(by_group.get(group, []))
            if have != need:
                problems.append(f"{group}: {have} instances in the cloud, the final workload needs {need}")
        for group in set(by_group) - set(self.groups):
            problems.append(f"instances of {group or 'no NodeGroup'} left: {by_group[group]}")
        if self.e2e.client.get_or_none(f"{NODEGROUPS}/{EPHEMERAL_GROUP}") is not None:
            problems.append(f"NodeGroup {EPHEMERAL_GROUP} still there")
        problems += current_orphans(
            [i for i in instances if i[0] in self.groups],
            live,
            instance_age=self.watcher.instance_age,
            provisioning_s=PROVISIONING_S,
        )
        waiting = [
            f"{v['metadata']['name']} ({phase_of(v)})" for vns in live.values() for v in vns if not _bound(v)
        ]
        if waiting:
            problems.append(f"VPSieNodes still provisioning: {waiting}")
        pods = self.e2e.client.list_objects(f"/api/v1/namespaces/{self.e2e.namespace}/pods")
        not_running = [p["metadata"]["name"] for p in pods if not is_running(p)]
        if not_running:
            problems.append(f"pods not Running: {not_running}")
        if len(pods) != self.workload.final_pods():
            problems.append(f"{len(pods)} pods, the final workload has {self.workload.final_pods()}")
        return Settled(0.0, by_group, records, problems)

    def settle(self) -> Settled:
        start = time.monotonic()
        last = Settled(0.0)
        with contextlib.suppress(WaitTimeout):
            last = wait_until(
                self.observe,
                lambda s: not s.problems,
                timeout=self.config.settle_s,
                what="settled",
                alive=[self.e2e.sim.process],
                interval=2.0,
            )
        if last.problems or not last.records:
            last = self.observe()
        last.seconds = time.monotonic() - start
        return last

    def end_checks(self, figures: Figures, settled: Settled) -> None:
        s = self.scenario
        w = self.watcher
        dups = w.duplicates([*self.groups, EPHEMERAL_GROUP])
        figures.count(s, "duplicates", len(dups), detail="; ".join(dups)[:2000])
        orphans = [p for p in settled.problems if ORPHAN_MARKS.search(p)]
        figures.count(s, "orphans", len(orphans), detail="; ".join(orphans)[:2000])
        dips = w.dips
        figures.count(
            s,
            "PDB violations",
            len(dips),
            detail="; ".join(f"{d.pdb}: {d.healthy} < {d.minimum}: {d.evidence}" for d in dips)[:2000],
        )
        pinned = [d for d in w.evictions() if d.pinned]
        figures.count(
            s,
            "safe-to-evict=false evictions",
            len(pinned),
            detail="; ".join(f"{d.pod} {d.reason}" for d in pinned),
        )
        lost = [d for d in w.disruptions if d.reason == "DeletionByPodGC"]
        figures.count(
            s,
            "pods lost with their node",
            len(lost),
            detail="; ".join(
                f"{d.pod} on {d.node} (not evicted: its Node was removed under it)" for d in lost
            ),
        )
        rest = [p for p in settled.problems if p not in orphans]
        figures.count(
            s,
            "settle problems",
            len(rest),
            detail=(
                "; ".join(rest)[:2000] if rest else f"settled in {settled.seconds:.0f}s: {settled.records}"
            ),
        )
        figures.count(s, "evictions", len(w.evictions()), goal=None, detail=w.summary())
        errors = self.churn.errors
        figures.count(s, "workload errors", len(errors), detail="; ".join(errors)[:1500])


# --- scenarios -------------------------------------------------------------------------------------
class Scenario(Protocol):
    """A kind of chaos. ``disturb`` runs while the workload churns and returns when the disturbance is
    over; ``calm`` undoes what must be undone before the settle; ``figures`` reports."""

    name: str
    ephemeral: bool  # the workload also creates and deletes a NodeGroup

    def disturb(self, stack: ChaosStack) -> None: ...

    def calm(self, stack: ChaosStack) -> None: ...

    def figures(self, stack: ChaosStack, figures: Figures) -> None: ...


def moment(stack: ChaosStack) -> str:
    """What the cluster is doing now, in lifecycle terms (for labelling a kill)."""
    phases: Counter[str] = stack.watcher.snapshot_phases()
    parts = []
    if any(p.split("+")[0] in ("", "Pending", "Provisioning") for p in phases):
        parts.append("launch")
    if any(p.startswith("Joining") for p in phases):
        parts.append("join")
    if any(p.startswith(("Draining", "Deleting")) or p.endswith("+deleting") for p in phases):
        parts.append("drain/delete")
    if stack.workload.ephemeral_state == "deleted":
        parts.append("nodegroup-deletion")
    return "+".join(parts) or "steady"


def run_scenario(e2e: E2E, config: ChaosConfig, scenario: Scenario, figures: Figures = REGISTRY) -> list[str]:
    """Run ``scenario`` on a fresh stack; its figures go to ``figures``; returns the off-goal lines."""
    return run_on(ChaosStack(e2e, config, scenario.name, ephemeral=scenario.ephemeral), scenario, figures)


def run_on(stack: ChaosStack, scenario: Scenario, figures: Figures = REGISTRY) -> list[str]:
    """Run ``scenario`` on a stack built by the caller (scenarios that need extra ``run`` flags or a
    supervisor); a scenario may have a ``before_checks(stack)`` step between settling and the checks."""
    config = stack.config
    figures.seed = config.seed
    print(
        f"\n[chaos] {scenario.name}: profile {config.profile}, seed {config.seed}, {config.lease}", flush=True
    )
    before = len(figures.items)
    try:
        stack.start()
        started = time.monotonic()
        scenario.disturb(stack)
        stack.churn.stop()
        stack.workload.finish()
        scenario.calm(stack)
        churned = time.monotonic() - started
        settled = stack.settle()
        stack.watcher.stop()
        print(
            f"[chaos] {scenario.name}: churned {churned:.0f}s ({stack.workload.steps} workload changes), "
            f"settled in {settled.seconds:.0f}s",
            flush=True,
        )
        before_checks = getattr(scenario, "before_checks", None)
        if before_checks is not None:
            before_checks(stack)
        stack.end_checks(figures, settled)
        scenario.figures(stack, figures)
    finally:
        stack.stop()
    mine = figures.items[before:]
    for fig in mine:
        print(f"[chaos] {fig.line()}", flush=True)
    return [f.line() for f in mine if not f.ok]


def _bound(vn: JsonObj) -> bool:
    return bool(((vn.get("status") or {}).get("launch") or {}).get("boundHostname"))
