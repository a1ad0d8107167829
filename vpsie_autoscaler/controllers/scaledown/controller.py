"""The scale-down controller: every ``scan_interval``, the pure planner over the caches, then
persist its timers, request drains, and clean up after ourselves.

Each pass (cluster-autoscaler's ``RunOnce`` scale-down half; Karpenter's disruption controller):

1. Remove our ``to-be-deleted`` taint from every Node whose VPSieNode is not being drained or
   deleted (a crash or an aborted drain must not leave nodes unschedulable: cluster-autoscaler #5657).
2. :func:`~vpsie_autoscaler.scaling.plan_scale_down` over one
   :class:`~vpsie_autoscaler.controllers.cluster_state.ClusterSnapshot` (nodes with their pods, groups,
   PDBs; nodes whose VPSieNode is leaving are ``deleting``: never candidates, never destinations).
3. Persist the ``unneededTime`` timers as ``autoscaler.vpsie.com/unneeded-since`` annotations on the
   Nodes (set on ``became_unneeded``, removed on ``no_longer_unneeded``): a restart or a new leader
   resumes the timers instead of starting them over (cluster-autoscaler issue #7873).
4. For each ``NodeRemoval``, request the drain on the Node's VPSieNode (drain protocol,
   docs/architecture.md): annotations ``drain-requested=<now>`` and ``drain-reason=<reason>``. The
   lifecycle controller taints, evicts and deletes; this controller never evicts or deletes. A Node of
   a group without a VPSieNode (multi-key lookup) cannot be removed: logged as an error, counted in
   ``unremovable_nodes{reason="NoVPSieNode"}`` and reported as a Warning Event.
5. A group above ``maxNodes`` (the user lowered it) is not planned here: the NodeGroup controller
   alone converges it (docs/architecture.md: it requests drains on the surplus, not-ready nodes
   first). Its nodes are candidates like any other, so an idle one still goes after its
   ``unneededTime``; a node already asked to drain is never asked twice.
6. Report: ``unremovable_nodes{reason}`` (first blocker per node), Events ``ScaleDown`` on each
   removed Node and ``ScaledDown`` on the NodeGroup (one for all the empty nodes of the pass,
   ``removing 50 empty nodes of NodeGroup web at once: …``, one per drain), one decision per group
   and pass (:func:`~vpsie_autoscaler.scaling.scaledown.describe_removals`) handed to the NodeGroup
   controller, the single writer of ``status.lastDecision``
   (:class:`~vpsie_autoscaler.controllers.decisions.DecisionLog`), and
   ``ScaleDownBlocked`` on Nodes that stay for a reason worth telling (a PDB, min size, the budget…),
   deduplicated: an Event only when a node's blocker changes or every
   :data:`BLOCKED_EVENT_REPEAT_SECONDS`.

``scale_down_total{nodegroup,reason}`` is counted by the requester, once per drain request (the
NodeGroup controller counts its ``AboveMaxSize`` requests); in dry-run, the requests it would make.

``--dry-run``: the same plan, logs, metrics, Events and decisions (notes prefixed ``dry-run:``); no
annotation, taint or drain request is written. A dry-run removal is counted
once per node and reason (the node stays, so it would be planned again every loop).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    NODEGROUP_LABEL,
    TO_BE_DELETED_TAINT,
    UNNEEDED_SINCE_ANNOTATION,
)
from vpsie_autoscaler.api.times import rfc3339
from vpsie_autoscaler.controllers.cluster_state import ClusterSnapshot, SnapshotBuilder, VPSieNodeView
from vpsie_autoscaler.controllers.deps import Deps, UsesDeps
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import NODES, VPSIENODES
from vpsie_autoscaler.runtime.events import NORMAL, WARNING
from vpsie_autoscaler.scaling import ScaleDownSettings, plan_scale_down, reasons
from vpsie_autoscaler.scaling.scaledown import NodeRemoval, ScaleDownPlan, describe_removals

log = structlog.get_logger("vpsie_autoscaler.controllers.scaledown")

# Event reasons (stable: users and tests grep for them).
REASON_SCALE_DOWN: Final = "ScaleDown"
"""On the Node: its removal was requested (note: why, and where its pods go)."""
REASON_SCALED_DOWN: Final = "ScaledDown"
"""On the NodeGroup: one of its nodes is being removed."""
REASON_BLOCKED: Final = "ScaleDownBlocked"
"""On the Node: it is unneeded or empty but stays, and why (PDB, min size, budget, …)."""
REASON_NO_VPSIENODE: Final = "NoVPSieNode"
"""Warning on the Node, and the ``unremovable_nodes`` reason: a group's Node without a VPSieNode."""
REASON_STALE_TAINT: Final = "StaleTaintRemoved"
ACTION_SCALE_DOWN: Final = "ScaleDown"

DRAINING_PHASES: Final = frozenset({"Draining", "Deleting"})
"""VPSieNode phases in which our to-be-deleted taint belongs on the Node."""
QUIET_BLOCKERS: Final = frozenset(
    {
        reasons.NOT_UNDERUTILIZED,
        reasons.NOT_UNNEEDED_LONG_ENOUGH,
        reasons.NODE_NOT_READY,
        reasons.RECEIVES_MOVED_PODS,
        reasons.SCALE_DOWN_DISABLED,
        reasons.NODE_CORDONED,
        reasons.MAX_BULK_DELETE,
    }
)
"""Blockers that describe a busy or transient node, or one the user excluded on purpose (the group's
scale-down disabled, cordoned by someone else), or an empty node left for the next pass by the
per-pass bulk cap: counted in the gauge, no Event (a cluster with a disabled group would otherwise get
an Event per node every few minutes). A node's own protections (``protected``, ``scale-down-disabled``,
``scale-down=disabled``, allowed hours) do get one: ``kubectl describe node`` then says why it stays."""
WARNING_BLOCKERS: Final = frozenset({reasons.INVALID_ALLOWED_HOURS})
"""Blockers that are a mistake to fix (an unreadable ``scale-down-allowed-hours``): Warning Events."""
BLOCKED_EVENT_REPEAT_SECONDS: Final = 600.0
"""A node's unchanged blocker is re-announced at most this often (Events are cheap to read, costly
to write at scale; ten minutes keeps ``kubectl describe node`` current without flooding etcd)."""


@dataclass(frozen=True, slots=True)
class ScaleDownOptions:
    scan_interval: float = 10.0
    settings: ScaleDownSettings = field(default_factory=ScaleDownSettings)


class ScaleDownController(UsesDeps):
    """See the module docstring. :meth:`run` is the leader-only runnable."""

    def __init__(
        self, deps: Deps, *, builder: SnapshotBuilder, options: ScaleDownOptions = ScaleDownOptions()
    ) -> None:
        super().__init__(deps)
        self.builder = builder
        self.options = options
        self._blocked_events: dict[str, tuple[str, str, float]] = {}
        self._dry_run_reported: set[tuple[str, str]] = set()
        self.passes = 0
        """Completed passes (observability for tests and debugging)."""

    async def run(self) -> None:
        while True:
            try:
                await self.scale_down_once()
            except errors.KubeError as exc:
                log.error("scale-down pass failed", error=str(exc))
            except Exception:  # a bug must not stop scale-down for good (controller-runtime recovers)
                log.exception("scale-down pass crashed")
            await self.clock.sleep(self.options.scan_interval)

    async def scale_down_once(self) -> ScaleDownPlan:
        now = self.clock.now()
        snap = self.builder.build(now, with_pods=True)
        await self._remove_stale_taints(snap)
        plan = plan_scale_down(snap.nodes, snap.groups, snap.pdbs, now=now, settings=self.options.settings)
        await self._persist_timers(plan, now)
        missing = await self._request_drains(plan, snap, now)
        self._report_blocked(plan, snap, missing)
        log.info(
            "scale-down decision",
            dry_run=self.writes.dry_run,
            removals=[{"node": x.node, "nodegroup": x.group, "reason": x.reason} for x in plan.removals],
            unneeded=len(plan.unneeded),
            blocked=len(plan.blocked),
            no_vpsienode=missing or None,
        )
        self.passes += 1
        return plan

    # -- 1. our taints ------------------------------------------------------------------------------

    async def _remove_stale_taints(self, snap: ClusterSnapshot) -> None:
        for name, node in snap.node_objects.items():
            taints = (node.get("spec") or {}).get("taints") or []
            if not any(t.get("key") == TO_BE_DELETED_TAINT for t in taints):
                continue
            meta = node.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            vn = snap.node_vpsienode.get(name)
            if vn is not None and (vn.deleting or vn.drain_requested or vn.phase in DRAINING_PHASES):
                continue
            why = "no VPSieNode" if vn is None else f"its VPSieNode {vn.name} is {vn.phase}, not draining"
            note = f"removed the stale {TO_BE_DELETED_TAINT} taint: {why}"
            log.warning("stale to-be-deleted taint", node=name, reason=why, dry_run=self.writes.dry_run)
            self.writes.report(node, NORMAL, REASON_STALE_TAINT, note, ACTION_SCALE_DOWN)
            kept = [t for t in taints if t.get("key") != TO_BE_DELETED_TAINT]
            patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": {"taints": kept}}
            try:
                await self.writes.merge_patch(NODES, name, patch)
            except errors.KubeError as exc:  # Conflict/NotFound: the next pass reads again
                log.warning("could not remove the stale taint", node=name, error=str(exc))

    # -- 3. timers ----------------------------------------------------------------------------------

    async def _persist_timers(self, plan: ScaleDownPlan, now: datetime) -> None:
        stamp = rfc3339(now)
        for name in plan.became_unneeded:
            await self._annotate_node(name, stamp)
        for name in plan.no_longer_unneeded:
            await self._annotate_node(name, None)

    async def _annotate_node(self, name: str, value: str | None) -> None:
        try:
            await self.writes.merge_patch(
                NODES, name, {"metadata": {"annotations": {UNNEEDED_SINCE_ANNOTATION: value}}}
            )
        except errors.KubeError as exc:
            log.warning("could not persist the unneeded-since timer", node=name, error=str(exc))

    # -- 4. removals --------------------------------------------------------------------------------

    async def _request_drains(self, plan: ScaleDownPlan, snap: ClusterSnapshot, now: datetime) -> list[str]:
        missing: list[str] = []
        requested: dict[str, list[NodeRemoval]] = {}
        for removal in plan.removals:
            vn = snap.node_vpsienode.get(removal.node)
            if vn is None:
                missing.append(removal.node)
                log.error(
                    "no VPSieNode for a node the planner would remove",
                    node=removal.node,
                    nodegroup=removal.group,
                    looked_up_by="vpsienode label, status.nodeName, hostname",
                )
                continue
            if vn.drain_requested:
                continue
            if await self._drain(snap, vn, removal, now):
                requested.setdefault(removal.group, []).append(removal)
        for group, removals in requested.items():
            self._report_group(snap, group, removals)
        return missing

    async def _drain(
        self, snap: ClusterSnapshot, vn: VPSieNodeView, removal: NodeRemoval, now: datetime
    ) -> bool:
        """Request one drain (in dry-run: announce it once); True when it was requested or announced."""
        if self.writes.dry_run:  # the node stays, so it is planned again: announce it once
            key = (vn.name, removal.reason)
            if key in self._dry_run_reported:
                return False
            self._dry_run_reported.add(key)
        patch = {
            "metadata": {
                "annotations": {
                    DRAIN_REQUESTED_ANNOTATION: rfc3339(now),
                    DRAIN_REASON_ANNOTATION: removal.reason,
                }
            }
        }
        try:
            await self.writes.merge_patch(VPSIENODES, vn.name, patch)
        except errors.KubeError as exc:
            log.error("could not request the drain", vpsienode=vn.name, error=str(exc))
            return False
        self.metrics.scale_down_total.labels(removal.group, removal.reason).inc()  # counted by the requester
        log.info(
            "drain requested",
            vpsienode=vn.name,
            node=removal.node,
            nodegroup=removal.group,
            reason=removal.reason,
            pods_to_evict=[p.key for p in removal.pods_to_evict],
            dry_run=self.writes.dry_run,
        )
        node = snap.node_objects.get(removal.node)
        if node:
            self.writes.report(node, NORMAL, REASON_SCALE_DOWN, removal.message, ACTION_SCALE_DOWN)
        return True

    def _report_group(self, snap: ClusterSnapshot, group: str, removals: list[NodeRemoval]) -> None:
        """Per group and pass: one ``ScaledDown`` Event for all its empty nodes (a bulk is one
        decision), one per drain (with its planned destinations), and one recorded decision."""
        group_obj = snap.nodegroup_objects.get(group)
        if group_obj is None:
            return
        empty = [x for x in removals if x.reason == reasons.REMOVE_EMPTY]
        if empty:
            # related = the first Node of the bulk: Events of different passes stay separate (the
            # note is not part of an Event's identity, the related object is).
            self.writes.report(
                group_obj,
                NORMAL,
                REASON_SCALED_DOWN,
                describe_removals(group, empty),
                ACTION_SCALE_DOWN,
                related=self._related(snap, empty[0]),
            )
        for removal in removals:
            if removal.reason == reasons.REMOVE_EMPTY:
                continue
            note = removal.message
            if removal.destinations:
                note += "; planned destinations: " + ", ".join(
                    f"{pod} -> {dest}" for pod, dest in sorted(removal.destinations.items())
                )
            self.writes.report(
                group_obj,
                NORMAL,
                REASON_SCALED_DOWN,
                note,
                ACTION_SCALE_DOWN,
                related=self._related(snap, removal),
            )
        text = self.writes.note(describe_removals(group, removals))
        self.decisions.record(group, text, by="scaledown", at=self.clock.now())

    @staticmethod
    def _related(snap: ClusterSnapshot, removal: NodeRemoval) -> Mapping[str, Any] | None:
        node = snap.node_objects.get(removal.node)
        if node:
            return node
        vn = snap.node_vpsienode.get(removal.node)
        return vn.raw if vn is not None else None

    # -- 6. reporting -------------------------------------------------------------------------------

    def _report_blocked(self, plan: ScaleDownPlan, snap: ClusterSnapshot, missing: list[str]) -> None:
        counts: dict[str, int] = {}
        for reason in plan.blocked.values():
            counts[reason.code] = counts.get(reason.code, 0) + 1
        if missing:
            counts[REASON_NO_VPSIENODE] = len(missing)
        self.metrics.unremovable_nodes.clear()
        for code, n in counts.items():
            self.metrics.unremovable_nodes.labels(code).set(n)

        now = self.clock.monotonic()
        seen: set[str] = set()
        for name, reason in plan.blocked.items():
            if reason.code in QUIET_BLOCKERS:
                continue
            seen.add(name)
            labels = (snap.node_objects.get(name, {}).get("metadata") or {}).get("labels") or {}
            note = f"node of NodeGroup {labels.get(NODEGROUP_LABEL, '?')} stays: {reason}"
            type_ = WARNING if reason.code in WARNING_BLOCKERS else NORMAL
            self._blocked_event(name, snap, reason.code, reason.detail, note, now, type_, REASON_BLOCKED)
        for name in missing:
            seen.add(name)
            note = (
                f"node {name} cannot be removed: no VPSieNode found for it (looked up by the "
                f"vpsienode label, status.nodeName and hostname)"
            )
            self._blocked_event(name, snap, REASON_NO_VPSIENODE, "", note, now, WARNING, REASON_NO_VPSIENODE)
        for name in [n for n in self._blocked_events if n not in seen]:
            del self._blocked_events[name]

    def _blocked_event(  # noqa: PLR0917 - private, called twice
        self,
        name: str,
        snap: ClusterSnapshot,
        code: str,
        detail: str,
        note: str,
        now: float,
        type_: str,
        reason: str,
    ) -> None:
        previous = self._blocked_events.get(name)
        if (
            previous is not None
            and previous[:2] == (code, detail)
            and now - previous[2] < (BLOCKED_EVENT_REPEAT_SECONDS)
        ):
            return
        self._blocked_events[name] = (code, detail, now)
        node = snap.node_objects.get(name)
        if node is not None:
            # The blocker is the action: events.k8s.io merges Events that differ only in their note
            # into a series of the first one, which would keep showing a blocker that has changed.
            self.writes.report(node, type_, reason, note, code)
