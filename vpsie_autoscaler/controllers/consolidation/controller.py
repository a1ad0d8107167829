"""The consolidation controller: every ``scan_interval``, on the leader, the pure planner
(:func:`~vpsie_autoscaler.scaling.consolidation.plan_consolidation`) over the caches, then at most
one action through the mechanisms that already exist (docs/lifecycle.md):

- **removal**: the drain request the scale-down controller writes (``drain-requested`` and
  ``drain-reason`` annotations on each node's VPSieNode); the VPSieNode controller taints, evicts
  through the Eviction API (PDBs) and deletes;
- **replacement**: first a new VPSieNode of the cheaper NodeGroup (as scale-up creates them),
  annotated ``autoscaler.vpsie.com/consolidation-replaces=<nodes>``; the old nodes are drained only
  once it is Ready, after re-validating that their pods fit the remaining nodes (the new one
  included). The annotation lives in the API server, so a new leader resumes a replacement half way.
  A replacement whose new node fails (Failed, deleted) is abandoned: the old nodes stay.

Every action is re-validated just before it starts: the planner runs again on a fresh snapshot and
the action must come out the same. While a replacement is in flight no other action is planned.

Reports: an Event per node when its verdict changes (``Consolidating`` on chosen nodes,
``NotConsolidated`` with the blocker as the action, quiet verdicts such as "not enabled" or "not
stable yet" counted only), ``vpsie_autoscaler_consolidation_projected_savings_hourly``,
``vpsie_autoscaler_consolidation_nodes{verdict}``, ``scale_down_total{reason="Consolidate…"}`` per
drain requested. ``--dry-run``: the same plan in logs, Events (``dry-run:``) and metrics, announced
once per action; nothing is written.

The planner runs in a worker thread (``asyncio.to_thread``) and within its time budget, so the event
loop keeps serving the other controllers during a pass. The pod-change times behind
``consolidateAfter`` and the hourly eviction count are kept in memory: a new leader starts them from
what the snapshot shows (pod start times) and from zero.
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Gauge

from vpsie_autoscaler.api.labels import DRAIN_REASON_ANNOTATION, DRAIN_REQUESTED_ANNOTATION, GROUP
from vpsie_autoscaler.controllers.cluster_state import ClusterSnapshot, SnapshotBuilder, VPSieNodeView
from vpsie_autoscaler.controllers.deps import Deps, UsesDeps
from vpsie_autoscaler.controllers.metrics import PREFIX
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.events import NORMAL
from vpsie_autoscaler.scaling.consolidation import (
    CONSOLIDATE_REPLACE,
    QUIET_VERDICTS,
    ConsolidationAction,
    ConsolidationPlan,
    ConsolidationPolicy,
    ConsolidationSettings,
    check_removal,
    plan_consolidation,
    policy_of,
)
from vpsie_autoscaler.scaling.scaledown import movable_pods

log = structlog.get_logger("vpsie_autoscaler.controllers.consolidation")

REPLACES_ANNOTATION: Final = f"{GROUP}/consolidation-replaces"
"""On a VPSieNode created by consolidation: the Nodes (comma-separated) it replaces."""
REASON_CONSOLIDATING: Final = "Consolidating"
REASON_NOT_CONSOLIDATED: Final = "NotConsolidated"
ACTION_CONSOLIDATE: Final = "Consolidate"
READY_PHASE: Final = "Ready"
VERDICT_EVENT_REPEAT_SECONDS: Final = 600.0
"""An unchanged verdict is re-announced at most this often (as scale-down's blockers)."""
HOUR: Final = timedelta(hours=1)


@dataclass(frozen=True)
class ConsolidationMetrics:
    projected_savings: Gauge
    nodes: Gauge


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, ConsolidationMetrics] = weakref.WeakKeyDictionary()


def consolidation_metrics(registry: CollectorRegistry) -> ConsolidationMetrics:
    """The consolidation families on ``registry`` (created once, then shared)."""
    found = _metrics.get(registry)
    if found is None:
        found = ConsolidationMetrics(
            projected_savings=Gauge(
                PREFIX + "consolidation_projected_savings_hourly",
                "Hourly saving of the consolidation action planned in the last pass (0: none).",
                registry=registry,
            ),
            nodes=Gauge(
                PREFIX + "consolidation_nodes",
                "Nodes of NodeGroups with consolidation, by the last pass's verdict.",
                ["verdict"],
                registry=registry,
            ),
        )
        _metrics[registry] = found
    return found


@dataclass(frozen=True, slots=True)
class ConsolidationOptions:
    scan_interval: float = 10.0
    settings: ConsolidationSettings = field(default_factory=ConsolidationSettings)


class ConsolidationController(UsesDeps):
    """See the module docstring. :meth:`run` is the leader-only runnable."""

    def __init__(
        self,
        deps: Deps,
        *,
        builder: SnapshotBuilder,
        registry: CollectorRegistry,
        options: ConsolidationOptions = ConsolidationOptions(),
    ) -> None:
        super().__init__(deps)
        self.builder = builder
        self.options = options
        self.own_metrics = consolidation_metrics(registry)
        self._pods_seen: dict[str, frozenset[str]] = {}
        self._pod_changes: dict[str, datetime] = {}
        self._evictions: deque[tuple[datetime, int]] = deque()
        self._verdict_events: dict[str, tuple[str, float]] = {}
        self._dry_run_announced: set[tuple[tuple[str, ...], str | None]] = set()
        self.passes = 0

    async def run(self) -> None:
        while True:
            try:
                await self.consolidate_once()
            except errors.KubeError as exc:
                log.error("consolidation pass failed", error=str(exc))
            except Exception:  # a bug must not stop consolidation for good
                log.exception("consolidation pass crashed")
            await self.clock.sleep(self.options.scan_interval)

    async def consolidate_once(self) -> ConsolidationPlan | None:
        """One pass; the plan it made (None while a replacement is in flight)."""
        now = self.clock.now()
        snap = self.builder.build(now, with_pods=True)
        self._track_pod_changes(snap, now)
        self.passes += 1
        replacement = self._replacement_in_flight(snap)
        if replacement is not None:
            await self._continue_replacement(snap, replacement, now)
            return None
        plan = await self._plan(snap, now)
        self._report(plan, snap)
        if not plan.actions:
            return plan
        action = plan.actions[0]
        fresh = self.builder.build(self.clock.now(), with_pods=True)  # re-validate just before acting
        again = await self._plan(fresh, fresh.now)
        same = again.actions and (again.actions[0].nodes, again.actions[0].replacement) == (
            action.nodes,
            action.replacement,
        )
        if not same:
            log.info("consolidation action no longer valid", action=action.describe())
            return plan
        await self._act(fresh, again.actions[0], fresh.now)
        return plan

    # -- planning ------------------------------------------------------------------------------------

    def _policies(self, snap: ClusterSnapshot) -> dict[str, ConsolidationPolicy]:
        return {name: policy_of(ng) for name, ng in snap.nodegroups.items()}

    def _settings(self, now: datetime) -> ConsolidationSettings:
        while self._evictions and self._evictions[0][0] <= now - HOUR:
            self._evictions.popleft()
        return dataclasses.replace(
            self.options.settings, evictions_last_hour=sum(n for _, n in self._evictions)
        )

    async def _plan(self, snap: ClusterSnapshot, now: datetime) -> ConsolidationPlan:
        policies = self._policies(snap)
        if not any(p.enabled for p in policies.values()):
            return ConsolidationPlan((), {}, 0, timed_out=False)
        return await asyncio.to_thread(
            plan_consolidation,
            snap.nodes,
            snap.groups,
            policies,
            snap.pdbs,
            now=now,
            settings=self._settings(now),
            pod_changes=dict(self._pod_changes),
        )

    def _track_pod_changes(self, snap: ClusterSnapshot, now: datetime) -> None:
        """Remember when each node's set of pods that must move last changed (``consolidateAfter``
        also sees pods that left, which the snapshot alone cannot show)."""
        seen: dict[str, frozenset[str]] = {}
        for n in snap.nodes:
            pods = frozenset(p.key for p in movable_pods(n))
            seen[n.name] = pods
            before = self._pods_seen.get(n.name)
            if before is not None and before != pods:
                self._pod_changes[n.name] = now
        self._pods_seen = seen
        self._pod_changes = {k: v for k, v in self._pod_changes.items() if k in seen}

    # -- acting --------------------------------------------------------------------------------------

    async def _act(self, snap: ClusterSnapshot, action: ConsolidationAction, now: datetime) -> None:
        log.info("consolidation action", dry_run=self.writes.dry_run, **action.describe())
        if self.writes.dry_run:
            key = (action.nodes, action.replacement)
            if key in self._dry_run_announced:
                return
            self._dry_run_announced.add(key)
        for name in action.nodes:
            node = snap.node_objects.get(name)
            if node is not None:
                self.writes.report(node, NORMAL, REASON_CONSOLIDATING, action.message, ACTION_CONSOLIDATE)
        if action.replacement is None:
            await self._drain(snap, action.nodes, action.kind, now)
            return
        ng = snap.nodegroups.get(action.replacement)
        if ng is None:
            return
        body = creation_body(new_vpsienode(ng))
        body["metadata"].setdefault("annotations", {})[REPLACES_ANNOTATION] = ",".join(action.nodes)
        try:
            created = await self.writes.create(VPSIENODES, body)
        except errors.KubeError as exc:
            log.error("could not create the replacement", nodegroup=ng.metadata.name, error=str(exc))
            return
        if created is not None:
            self.metrics.scale_up_total.labels(action.replacement, action.kind).inc()
        log.info("replacement requested", vpsienode=body["metadata"]["name"], replaces=list(action.nodes))

    async def _drain(self, snap: ClusterSnapshot, nodes: tuple[str, ...], reason: str, now: datetime) -> None:
        evictions = 0
        for name in nodes:
            vn = snap.node_vpsienode.get(name)
            if vn is None or vn.leaving:
                continue
            patch = {
                "metadata": {
                    "annotations": {
                        DRAIN_REQUESTED_ANNOTATION: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        DRAIN_REASON_ANNOTATION: reason,
                    }
                }
            }
            try:
                await self.writes.merge_patch(VPSIENODES, vn.name, patch)
            except errors.KubeError as exc:
                log.error("could not request the drain", vpsienode=vn.name, error=str(exc))
                continue
            self.metrics.scale_down_total.labels(vn.group, reason).inc()
            node = next((n for n in snap.nodes if n.name == name), None)
            evictions += len(movable_pods(node)) if node is not None else 0
        if evictions and not self.writes.dry_run:
            self._evictions.append((now, evictions))

    # -- replacements in flight ---------------------------------------------------------------------

    def _replacement_in_flight(self, snap: ClusterSnapshot) -> tuple[VPSieNodeView, tuple[str, ...]] | None:
        """A replacement VPSieNode whose old nodes are not all leaving yet (None: none)."""
        for vn in snap.vpsienodes:
            replaces = ((vn.raw.get("metadata") or {}).get("annotations") or {}).get(REPLACES_ANNOTATION)
            if not replaces:
                continue
            old = tuple(n for n in replaces.split(",") if n)
            staying = [n for n in old if n in snap.node_vpsienode and not snap.node_vpsienode[n].leaving]
            if not staying:
                continue  # done: the old nodes are leaving or gone
            if vn.leaving:
                continue  # the new node failed or is going: abandoned, the old nodes stay
            return vn, tuple(staying)
        return None

    async def _continue_replacement(
        self, snap: ClusterSnapshot, replacement: tuple[VPSieNodeView, tuple[str, ...]], now: datetime
    ) -> None:
        vn, old = replacement
        if vn.phase != READY_PHASE:
            log.info("replacement not Ready yet", vpsienode=vn.name, phase=vn.phase, replaces=list(old))
            return
        action, reason = await asyncio.to_thread(
            check_removal,
            old,
            snap.nodes,
            snap.groups,
            self._policies(snap),
            snap.pdbs,
            now=now,
            settings=self._settings(now),
        )
        if action is None:
            log.warning("replacement Ready, but the old nodes cannot go now", vpsienode=vn.name,
                        replaces=list(old), reason=str(reason))  # fmt: skip
            return
        log.info("replacement Ready: draining the old nodes", vpsienode=vn.name, **action.describe())
        for name in old:
            node = snap.node_objects.get(name)
            if node is not None:
                note = f"replaced by {vn.name} (Ready): {action.message}"
                self.writes.report(node, NORMAL, REASON_CONSOLIDATING, note, ACTION_CONSOLIDATE)
        await self._drain(snap, old, CONSOLIDATE_REPLACE, now)

    # -- reporting ----------------------------------------------------------------------------------

    def _report(self, plan: ConsolidationPlan, snap: ClusterSnapshot) -> None:
        self.own_metrics.projected_savings.set(plan.projected_savings)
        counts: dict[str, int] = {}
        for reason in plan.verdicts.values():
            counts[reason.code] = counts.get(reason.code, 0) + 1
        self.own_metrics.nodes.clear()
        for code, n in counts.items():
            self.own_metrics.nodes.labels(code).set(n)
        log.info(
            "consolidation plan",
            dry_run=self.writes.dry_run,
            actions=[a.describe() for a in plan.actions],
            verdicts=counts,
            evaluated=plan.evaluated,
            timed_out=plan.timed_out,
        )
        chosen = {n for a in plan.actions for n in a.nodes}
        now = self.clock.monotonic()
        for name, reason in plan.verdicts.items():
            if name in chosen or reason.code in QUIET_VERDICTS:
                continue
            previous = self._verdict_events.get(name)
            if (
                previous is not None
                and previous[0] == reason.code
                and now - previous[1] < VERDICT_EVENT_REPEAT_SECONDS
            ):
                continue
            self._verdict_events[name] = (reason.code, now)
            node = snap.node_objects.get(name)
            if node is not None:
                note = f"consolidation: {reason}"
                self.writes.report(node, NORMAL, REASON_NOT_CONSOLIDATED, note, reason.code)
