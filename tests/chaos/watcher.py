"""What a chaos run saw: every VPSie instance, every VPSieNode, every pod disruption, every PDB dip.

Two daemon threads, started and stopped by the scenario runner:

* a **poller** (every ``interval``): the simulator's state (managed workers and VMs, kept by
  identifier with first/last sighting), the VPSieNodes (every status seen: phases, launch record,
  bound hostnames over time), the PodDisruptionBudgets' status;
* a **pod watch** on the test namespace: each pod's last state; a pod that leaves Running/Ready
  (deleted, evicted, its Node gone) is a *disruption* when it carries a ``DisruptionTarget``
  condition (eviction API, pod GC of a vanished Node, preemption) and is recorded with its reason.

The checks at the end are pure functions of what was recorded (:meth:`Watcher.duplicates`,
:meth:`Watcher.orphans`, :meth:`Watcher.pdb_violations`, ...), each returning the evidence lines,
so a figure off its goal says exactly which instance, record or pod it was about.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hack.devcluster.client import ApiError
from tests.e2e.harness import E2E, VPSIENODES, JsonObj, watch
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL, SAFE_TO_EVICT_ANNOTATION

PDBS = "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
PODS = "/api/v1/namespaces/{ns}/pods"
WATCH_S = 30.0
GONE = 410


@dataclass
class InstanceSeen:
    identifier: str
    hostname: str
    group: str  # the NodeGroup it belongs to ("" when no group claims its shape)
    first_seen: float
    last_seen: float
    phase: str = ""
    gone: bool = False


@dataclass
class RecordSeen:
    name: str
    uid: str
    group: str
    first_seen: float
    last_seen: float
    phases: list[str] = field(default_factory=list)
    bound: set[str] = field(default_factory=set)  # lower-case hostnames it was ever bound to
    sent: bool = False  # a launch record was written (a create may have reached VPSie)
    adopt: bool = False
    refused_then_bound: str = ""  # evidence: its create was refused (CreateFailed), later it was bound
    refused: bool = False
    last: JsonObj = field(default_factory=dict)
    gone: bool = False


@dataclass(frozen=True)
class Disruption:
    at: float
    pod: str
    app: str
    node: str
    reason: str  # DisruptionTarget reason, or "deleted" (no condition: a ReplicaSet scale-down)
    pinned: bool  # cluster-autoscaler.kubernetes.io/safe-to-evict: "false"


@dataclass(frozen=True)
class PdbDip:
    at: float
    pdb: str
    healthy: int
    minimum: int
    evidence: str


def _healthy(pod: JsonObj) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return not ready or ready[0].get("status") == "True"


def _disruption_reason(pod: JsonObj) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return str(cond.get("reason") or "DisruptionTarget")
    return None


class Watcher:
    """Records a run; ``classify(instance) -> group name | None`` maps cloud instances to groups."""

    def __init__(
        self,
        e2e: E2E,
        classify: Callable[[JsonObj], str | None],
        *,
        interval: float = 0.5,
    ) -> None:
        self.e2e = e2e
        self.classify = classify
        self.interval = interval
        self.instances: dict[str, InstanceSeen] = {}
        self.records: dict[str, RecordSeen] = {}
        self.disruptions: list[Disruption] = []
        self.dips: list[PdbDip] = []
        self.pdb_minimum: dict[str, tuple[str, int]] = {}  # pdb -> (app, minAvailable)
        self.pods: dict[str, JsonObj] = {}
        self.poll_errors: Counter[str] = Counter()
        self.polls = 0
        self._pdb_status: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._poll_loop, name="chaos-poller", daemon=True),
            threading.Thread(target=self._pod_loop, name="chaos-pods", daemon=True),
        ]

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Watcher:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=WATCH_S + 10)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def guard(self, pdb: str, app: str, min_available: int) -> None:
        """Tell the watcher that ``pdb`` keeps ``min_available`` pods of ``app``."""
        with self._lock:
            self.pdb_minimum[pdb] = (app, min_available)

    # --- the poller --------------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            for what, step in (
                ("cloud", self.poll_cloud),
                ("vpsienodes", self.poll_records),
                ("pdbs", self._poll_pdbs),
            ):
                try:
                    step()
                except Exception as exc:  # the run goes on; the count is reported
                    self.poll_errors[f"{what}: {type(exc).__name__}"] += 1
            self.polls += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def poll_cloud(self) -> None:
        state = self.e2e.sim.state()
        now = time.monotonic()
        current: list[JsonObj] = [
            n for c in state["clusters"] for n in c["nodes"] if n.get("group_id") is not None
        ]
        current += state["vms"]
        present = set()
        with self._lock:
            for inst in current:
                ident = str(inst["identifier"])
                present.add(ident)
                seen = self.instances.get(ident)
                if seen is None:
                    seen = InstanceSeen(
                        ident, str(inst["hostname"]).lower(), self.classify(inst) or "", now, now
                    )
                    self.instances[ident] = seen
                seen.last_seen = now
                seen.phase = str(inst.get("phase", ""))
            for ident, seen in self.instances.items():
                if ident not in present:
                    seen.gone = True

    def poll_records(self) -> None:
        now = time.monotonic()
        objs = self.e2e.client.list_objects(VPSIENODES)
        present = set()
        with self._lock:
            for vn in objs:
                meta = vn["metadata"]
                uid = str(meta["uid"])
                present.add(uid)
                rec = self.records.get(uid)
                if rec is None:
                    group = (meta.get("labels") or {}).get(NODEGROUP_LABEL, "")
                    rec = RecordSeen(str(meta["name"]), uid, group, now, now)
                    self.records[uid] = rec
                rec.last_seen = now
                rec.last = vn
                status = vn.get("status") or {}
                phase = str(status.get("phase") or "")
                if meta.get("deletionTimestamp"):
                    phase = f"{phase}+deleting"
                if not rec.phases or rec.phases[-1] != phase:
                    rec.phases.append(phase)
                launch = status.get("launch") or {}
                if launch.get("sentAt") or launch.get("requestedHostname"):
                    rec.sent = True
                if (vn.get("spec") or {}).get("adopt"):
                    rec.adopt = True
                if str(status.get("lastError") or "").startswith("CreateFailed"):
                    rec.refused = True
                for host in (launch.get("boundHostname"), status.get("nodeName")):
                    if host:
                        rec.bound.add(str(host).lower())
                if rec.refused and launch.get("boundHostname") and not rec.refused_then_bound:
                    rec.refused_then_bound = (
                        f"VPSieNode {rec.name}: its create was refused ({status.get('lastError')}, "
                        f"phase {status.get('phase')}), yet it was bound to {launch.get('boundHostname')} at "
                        f"{launch.get('boundAt')} (sentAt {launch.get('sentAt')}): a refused launch took an "
                        "instance another launch created"
                    )
            for uid, rec in self.records.items():
                if uid not in present:
                    rec.gone = True

    def _poll_pdbs(self) -> None:
        ns = self.e2e.namespace
        now = time.monotonic()
        for pdb in self.e2e.client.list_objects(PDBS.format(ns=ns)):
            name = str(pdb["metadata"]["name"])
            status = pdb.get("status") or {}
            healthy = int(status.get("currentHealthy", 0))
            desired = int(status.get("desiredHealthy", 0))
            before = self._pdb_status.get(name)
            self._pdb_status[name] = (healthy, desired)
            # A drop from at/above the minimum to below it: a healthy pod went while none could.
            if before is not None and before[0] >= before[1] > healthy and desired == before[1]:
                with self._lock:
                    self.dips.append(
                        PdbDip(
                            now, name, healthy, desired, f"PDB status currentHealthy {before[0]} -> {healthy}"
                        )
                    )

    # --- the pod watch -----------------------------------------------------------------------------
    def _pod_loop(self) -> None:
        client = self.e2e.client
        path = PODS.format(ns=self.e2e.namespace)
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = client.get(path)
                    with self._lock:
                        self.pods = {p["metadata"]["name"]: p for p in listing.get("items", [])}
                    version = str(listing["metadata"]["resourceVersion"])
                events = watch(client, path, resource_version=version, timeout=5.0)
                with contextlib.closing(events):
                    for kind, obj in events:
                        if kind == "ERROR":
                            version = None
                            break
                        version = str(obj["metadata"].get("resourceVersion") or version)
                        self._on_pod(kind, obj)
                        if self._stop.is_set():
                            break
            except ApiError as err:
                self.poll_errors[f"pod watch: {err.status}"] += 1
                if err.status == GONE:
                    version = None
                time.sleep(0.2)
            except Exception as exc:
                self.poll_errors[f"pod watch: {type(exc).__name__}"] += 1
                time.sleep(0.2)

    def _on_pod(self, kind: str, pod: JsonObj) -> None:
        name = str(pod["metadata"]["name"])
        now = time.monotonic()
        with self._lock:
            before = self.pods.get(name)
            if kind == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = pod
            was = before is not None and _healthy(before)
            still = kind != "DELETED" and _healthy(pod)
            if not was or still:
                return
            app = str((pod["metadata"].get("labels") or {}).get("app", ""))
            reason = _disruption_reason(pod) or (_disruption_reason(before) if before else None)
            node = str((pod.get("spec") or {}).get("nodeName") or "")
            pinned = (pod["metadata"].get("annotations") or {}).get(
                SAFE_TO_EVICT_ANNOTATION, ""
            ).lower() == "false"
            self.disruptions.append(Disruption(now, name, app, node, reason or "deleted", pinned))
            for pdb, (guarded_app, minimum) in self.pdb_minimum.items():
                if guarded_app != app:
                    continue
                healthy = sum(
                    1
                    for p in self.pods.values()
                    if _healthy(p) and (p["metadata"].get("labels") or {}).get("app") == app
                )
                if healthy < minimum:
                    self.dips.append(
                        PdbDip(
                            now,
                            pdb,
                            healthy,
                            minimum,
                            f"pod {name} on {node or '?'} left Running ({reason or 'deleted'}, {kind})",
                        )
                    )

    # --- what the run saw --------------------------------------------------------------------------
    def snapshot_phases(self) -> Counter[str]:
        """Phases of the VPSieNodes present now (for labelling a kill's moment)."""
        with self._lock:
            return Counter(r.phases[-1] for r in self.records.values() if not r.gone and r.phases)

    def evictions(self) -> list[Disruption]:
        return [d for d in self.disruptions if d.reason != "deleted"]

    def duplicates(self, groups: list[str]) -> list[str]:
        """Two instances for one record, one instance for two records, more instances than launches."""
        found: list[str] = []
        with self._lock:
            records = list(self.records.values())
            instances = list(self.instances.values())
        found += [r.refused_then_bound for r in records if r.refused_then_bound]
        for rec in records:
            hosts = set(rec.bound)
            if len(hosts) > 1:
                found.append(f"VPSieNode {rec.name} bound to {len(hosts)} instances: {sorted(hosts)}")
        owners: dict[str, set[str]] = defaultdict(set)
        for rec in records:
            for host in rec.bound:
                owners[host].add(rec.name)
        for host, names in owners.items():
            # An adopted instance is owned by its adopting record after the launching one gave up.
            live = {n for n in names if not any(r.name == n and r.gone for r in records)}
            if len(live) > 1:
                found.append(f"instance {host} claimed by {len(live)} live VPSieNodes: {sorted(live)}")
        for group in groups:
            created = [i for i in instances if i.group == group]
            launched = [r for r in records if r.group == group and r.sent and not r.adopt]
            if len(created) > len(launched):
                found.append(
                    f"{group}: {len(created)} instances created for {len(launched)} launched VPSieNodes "
                    f"(instances {sorted(i.hostname for i in created)}; "
                    f"launched {sorted(r.name for r in launched)})"
                )
            by_host = Counter(i.hostname for i in created)
            found += [f"{group}: {n} instances named {h}" for h, n in by_host.items() if n > 1]
        return found

    def instance_age(self, hostname: str) -> float:
        """Seconds since the watcher first saw an instance named ``hostname`` (0 if never)."""
        with self._lock:
            seen = [i.first_seen for i in self.instances.values() if i.hostname == hostname.lower()]
        return time.monotonic() - max(seen) if seen else 0.0

    def summary(self) -> str:
        with self._lock:
            groups = Counter(i.group or "(none)" for i in self.instances.values())
            evictions = Counter(d.reason for d in self.disruptions)
        return (
            f"instances created per group {dict(groups)}; VPSieNodes {len(self.records)}; "
            f"pod disruptions {dict(evictions)}; polls {self.polls}; poll errors {dict(self.poll_errors)}"
        )


def current_orphans(
    instances: list[tuple[str, str]],
    live: dict[str, list[JsonObj]],
    *,
    instance_age: Callable[[str], float],
    provisioning_s: float,
) -> list[str]:
    """Orphans now: an instance ``(group, hostname)`` no live VPSieNode is bound to, older than
    ``provisioning_s``; a live VPSieNode not bound past ``provisioning_s`` after its launch was sent,
    or bound to an instance the cloud does not have. Younger ones are still on their way."""
    found = []
    now = datetime.now(UTC)
    bound: dict[str, set[str]] = defaultdict(set)
    for group, vns in live.items():
        for vn in vns:
            host = ((vn.get("status") or {}).get("launch") or {}).get("boundHostname")
            if host:
                bound[group].add(str(host).lower())
                continue
            launch = (vn.get("status") or {}).get("launch") or {}
            sent = launch.get("sentAt") or vn["metadata"]["creationTimestamp"]
            waited = (now - datetime.fromisoformat(str(sent).replace("Z", "+00:00"))).total_seconds()
            if waited > provisioning_s:
                found.append(
                    f"VPSieNode {vn['metadata']['name']} ({group}) has no instance {waited:.0f}s after "
                    f"its launch: {vn.get('status')}"
                )
    hosts: dict[str, set[str]] = defaultdict(set)
    for group, host in instances:
        hosts[group].add(host)
        age = instance_age(host)
        if host not in bound.get(group, set()) and age > provisioning_s:
            found.append(
                f"instance {host} ({group or 'no group'}) has no VPSieNode {age:.0f}s after it appeared"
            )
    for group, names in bound.items():
        found += [
            f"VPSieNode of {group} bound to {h}, which is not in the cloud" for h in names - hosts[group]
        ]
    return found
