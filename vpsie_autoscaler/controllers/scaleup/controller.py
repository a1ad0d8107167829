"""The scale-up controller: unschedulable pods → the pure planner → new VPSieNodes, Events, metrics.

Flow (cluster-autoscaler's ``RunOnce`` scale-up half, Karpenter's provisioner batching):

1. A pods informer handler notes every pod the scheduler marked ``PodScheduled=False`` with reason
   ``Unschedulable`` into a :class:`~.batcher.Batcher` (1 s idle / 10 s max). A resync every
   ``scan_interval`` re-plans while any pod is still unschedulable (a back-off ended, an in-flight
   node failed): the informer alone would not tell us.
2. When a batch closes, one :class:`~vpsie_autoscaler.controllers.cluster_state.ClusterSnapshot` is built
   from the caches and :func:`~vpsie_autoscaler.scaling.plan_scale_up` decides. The planner counts
   in-flight capacity, so pods that fit on nodes already being created trigger nothing.
3. For each ``GroupIncrease``: ``nodes`` VPSieNodes built by ``new_vpsienode`` and POSTed with
   ``creation_body`` (409 AlreadyExists → a new suffix). The lifecycle controller turns each into the
   VPSie add-node call; this controller never calls VPSie.
4. Report: ``TriggeredScaleUp`` / ``NotTriggerScaleUp`` Events on pods (each group's reason), a
   ``ScaledUp`` Event on the NodeGroup and the decision handed to the NodeGroup controller
   (:class:`~vpsie_autoscaler.controllers.decisions.DecisionLog`), which alone writes the group's
   status (``lastDecision``; ``lastScaleUpTime`` and ``desiredNodes`` it derives from the new
   VPSieNodes), metrics, one structured log line per decision.

Flexible groups and headroom (docs/flexible-plans.md): each run of new nodes carries its plan, which
goes into the VPSieNode (a VM record's ``resourceIdentifier``); a group with ``spec.headroom`` is
re-planned every ``scan_interval`` and whenever a pod is bound, with virtual pods for the headroom
its nodes no longer hold, so capacity that pods took is replaced within seconds.

Created objects the VPSieNode cache has not shown yet are fed back into the next snapshot
(controller-runtime's "expectations"), so a second batch a second later cannot grow again for the
same pods (ignoring in-flight capacity orders too many nodes).

Runs only on the leader (a manager runnable with ``needs_leader=True``): standbys keep their caches
warm but never plan, create or emit (scale-up on every replica would order every node N times).

``--dry-run``: the same plan, logs, metrics, Events and decisions (notes prefixed ``dry-run:``); no
VPSieNode is created. A dry-run decision identical to the previous one for the
same group is not counted again (the pods stay pending, so it would repeat every loop).

Decision latency (``vpsie_autoscaler_scale_up_decision_latency_seconds``): for each pod, once, the
first time it triggers a scale-up: from the moment the scheduler marked it ``PodScheduled=False``
(``Unschedulable``) to the moment the API server accepted the first VPSieNode of that increase — the
object whose creation the lifecycle controller turns into the add-node call (within milliseconds,
after adding its finalizer). It includes the watch delay and the batch window. The start is
estimated from ``lastTransitionTime`` (whole seconds): see :meth:`ScaleUpController.became_unschedulable`
(error at most 0.5 s). Clock skew between the API server and us is clamped at 0. In dry-run it is
measured at the decision, as no object is created.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.controllers.cluster_state import (
    ClusterSnapshot,
    SnapshotBuilder,
    is_unschedulable,
    unschedulable_since,
)
from vpsie_autoscaler.controllers.decisions import GroupFacts
from vpsie_autoscaler.controllers.deps import Deps, UsesDeps
from vpsie_autoscaler.controllers.flexible import headroom_pods, headroom_text, with_plan
from vpsie_autoscaler.controllers.new_vpsienode import creation_body, new_vpsienode
from vpsie_autoscaler.controllers.scaleup.batcher import Batcher
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.events import NORMAL, WARNING
from vpsie_autoscaler.runtime.expectations import Expectations
from vpsie_autoscaler.scaling import ClusterLimits, ExpanderChain, PodInfo, plan_scale_up
from vpsie_autoscaler.scaling.plans import PlanShape
from vpsie_autoscaler.scaling.resources import EMPTY, Resources
from vpsie_autoscaler.scaling.scaleup import (
    NOT_TRIGGERED,
    SCHEDULABLE,
    TRIGGERED,
    GroupIncrease,
    ScaleUpPlan,
)

log = structlog.get_logger("vpsie_autoscaler.controllers.scaleup")

# Event reasons (stable: users and tests grep for them).
REASON_TRIGGERED: Final = "TriggeredScaleUp"
REASON_NOT_TRIGGERED: Final = "NotTriggerScaleUp"
REASON_SCALED_UP: Final = "ScaledUp"
REASON_SCALE_UP_FAILED: Final = "ScaleUpFailed"
ACTION_SCALE_UP: Final = "ScaleUp"

METRIC_REASON: Final = "UnschedulablePods"
"""``reason`` label of ``scale_up_total`` for nodes requested by this controller (minNodes enforcement
by the NodeGroup controller uses its own)."""

MAX_NAME_ATTEMPTS: Final = 5
"""New suffixes tried after 409 AlreadyExists (a collision has probability 36**-5 per pair)."""
LOGGED_NAMES: Final = 50
"""At most this many node names per debug line."""
CREATE_CONCURRENCY: Final = 8
"""VPSieNodes created in parallel for one increase: 50 new nodes take ~7 round trips, not 50, while
a burst stays far below the API server's default max-in-flight (400 mutating requests)."""
EXPECTATION_SECONDS: Final = 60.0
"""How long a created VPSieNode the cache has not shown yet still counts as in flight. The watch
normally delivers it within milliseconds; a minute covers a relisting informer."""
TRANSITION_TIME_RESOLUTION: Final = timedelta(seconds=1)
"""Condition ``lastTransitionTime`` values are RFC 3339 with whole seconds (metav1.Time)."""
POD_EVENT_REPEAT_SECONDS: Final = 300.0
"""The same pod Event (reason and note) is not repeated more often than this (the pod stays pending
and is re-planned every loop; the recorder's series dedup only merges identical writes)."""


@dataclass(frozen=True, slots=True)
class ScaleUpOptions:
    expander: str = "priority,least-waste"
    limits: ClusterLimits = field(default_factory=ClusterLimits)
    scan_interval: float = 10.0
    headroom: Resources = EMPTY
    """Cluster-wide headroom (``AutoscalerSettings`` ``spec.headroom``), kept with the groups' own."""


class ScaleUpController(UsesDeps):
    """See the module docstring. :meth:`run` is the leader-only runnable."""

    def __init__(
        self,
        deps: Deps,
        *,
        builder: SnapshotBuilder,
        options: ScaleUpOptions = ScaleUpOptions(),
        batcher: Batcher | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(deps)
        self.builder = builder
        self.options = options
        self.expanders = ExpanderChain.parse(options.expander)
        self.batcher = batcher or Batcher(deps.clock)
        self.rng = rng or random.Random()  # noqa: S311 - names and tie-breaks, not secrets
        self._created: Expectations[str, dict[str, Any]] = Expectations(deps.clock, EXPECTATION_SECONDS)
        self._latency_seen: set[str] = set()
        self._pod_events: dict[str, tuple[str, str, float]] = {}
        self._dry_run_reported: dict[str, tuple[int, frozenset[str]]] = {}
        self._last_created: dict[str, Any] | None = None
        self._first_seen: dict[str, datetime] = {}
        self.passes = 0
        """Completed decisions (observability for tests and debugging)."""

    # -- informer side (every replica; cheap) -----------------------------------------------------

    def on_pod(self, obj: Mapping[str, Any]) -> None:
        uid = (obj.get("metadata") or {}).get("uid") or ""
        if is_unschedulable(obj):
            # Only a pod that *becomes* unschedulable opens or extends a batch: the status updates of a
            # pod already waiting (the scheduler retries it) must not keep re-opening the idle window,
            # or a steady trickle of updates would postpone the decision up to the batch maximum.
            # Pods that stay pending are re-planned by the periodic resync.
            if uid not in self._first_seen:
                self._first_seen[uid] = self.clock.now()
                self.batcher.add()
        else:
            self._first_seen.pop(uid, None)

    def on_pod_update(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        self.on_pod(new)
        bound_now = (new.get("spec") or {}).get("nodeName") and not (old.get("spec") or {}).get("nodeName")
        if not bound_now:
            return
        # A binding changes the free room of a node. While pods wait, that is what decides whether
        # they still fit where the plan put them: the scheduler spreads a burst over the new nodes
        # (it does not follow our packing), and the pods it leaves over need a node now, not at the
        # next periodic resync. A binding wave keeps the batch open; the re-plan runs 1 s after it.
        # Pods that still fit a Ready node's free room wait for the scheduler (WaitsForScheduler).
        if self._first_seen or self._headroom_configured():  # headroom: the pod may have taken it
            self.batcher.add()

    def _headroom_configured(self) -> bool:
        """Whether any NodeGroup, or the cluster, keeps headroom (then it is re-planned without pending
        pods)."""
        if self.options.headroom:
            return True
        return any((o.get("spec") or {}).get("headroom") for o in self.builder.nodegroups.list())

    def on_pod_delete(self, obj: Any) -> None:
        meta = obj.get("metadata") if isinstance(obj, Mapping) else None
        self._first_seen.pop((meta or {}).get("uid") or "", None)

    def became_unschedulable(self, pod: Mapping[str, Any]) -> datetime | None:
        """Estimate of when the scheduler marked ``pod`` Unschedulable.

        ``lastTransitionTime`` has whole seconds, so the transition lies in ``[t, t + 1 s)`` and, as
        we saw it afterwards, no later than when our informer first saw it unschedulable. The
        midpoint of that interval is the estimate: never more than 0.5 s off, and unbiased.
        """
        since = unschedulable_since(pod)
        if since is None:
            return None
        upper = since + TRANSITION_TIME_RESOLUTION
        seen = self._first_seen.get((pod.get("metadata") or {}).get("uid") or "")
        if seen is not None and since <= seen < upper:
            upper = seen
        return since + (upper - since) / 2

    def replan(self) -> None:
        """Something the decision depends on changed (plan facts): re-plan if pods are waiting."""
        if any(is_unschedulable(p) for p in self.builder.pods.list()):
            self.batcher.add()

    # -- leader side --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Plan once per batch, and re-plan every ``scan_interval`` while pods stay unschedulable."""
        resync = asyncio.get_running_loop().create_task(self._resync(), name="scaleup-resync")
        try:
            while True:
                await self.batcher.wait()
                try:
                    await self.scale_up_once()
                except errors.KubeError as exc:
                    log.error("scale-up pass failed", error=str(exc))
                except Exception:  # a bug must not stop scale-up for good (controller-runtime recovers)
                    log.exception("scale-up pass crashed")
        finally:
            resync.cancel()

    async def _resync(self) -> None:
        while True:
            await self.clock.sleep(self.options.scan_interval)
            pending = sum(1 for p in self.builder.pods.list() if is_unschedulable(p))
            self.metrics.unschedulable_pods.set(pending)  # also falls to 0 when no batch runs
            if pending or self._headroom_configured():
                self.batcher.add()

    def _expected(self) -> list[dict[str, Any]]:
        """Created VPSieNodes the cache has not shown yet (and not too old to wait for)."""
        cached = {(o.get("metadata") or {}).get("name") for o in self.builder.vpsienodes.list()}
        return list(self._created.pending(lambda name, _obj: name in cached).values())

    async def scale_up_once(self) -> ScaleUpPlan | None:
        """One decision over the current caches. Returns the plan (None when nothing is pending)."""
        now = self.clock.now()
        try:
            return await self._decide(now)
        finally:
            self.passes += 1

    async def _decide(self, now: datetime) -> ScaleUpPlan | None:
        wants_headroom = self._headroom_configured()
        # Every bound pod: the free room of every Ready node decides which pending pods merely wait
        # for the scheduler (and headroom, when configured).
        snap = self.builder.build(now, with_pods=True, extra_vpsienodes=self._expected())
        self.metrics.unschedulable_pods.set(len(snap.pending_pods))
        self._forget_gone(snap)
        nodes = [*snap.nodes, *snap.virtual_nodes]
        spare = headroom_pods(snap.groups, nodes, self.options.headroom) if wants_headroom else ()
        self._headroom_facts(snap, spare)
        if not snap.pending_pods and not spare:
            return None
        plan = plan_scale_up(
            snap.pending_pods,
            snap.groups,
            in_flight_nodes=snap.in_flight_nodes,
            ready_nodes=snap.ready_nodes,
            limits=self.options.limits,
            expanders=self.expanders,
            rng=self.rng,
            now=now,
            usage=snap.usage,
            headroom_pods=spare,
        )
        self._log_plan(plan, snap)
        for inc in plan.increases:
            await self._apply_increase(snap, inc)
            if inc.plan_choice:
                facts = self.decisions.facts(inc.group) or GroupFacts()
                choice = self.writes.note(inc.plan_choice)
                self.decisions.note_facts(inc.group, dataclasses.replace(facts, last_plan_choice=choice))
        self._pod_events_for(plan, snap)
        return plan

    def _headroom_facts(self, snap: ClusterSnapshot, spare: Sequence[PodInfo]) -> None:
        """Headroom for the NodeGroup status (its one writer folds it in) and the metric."""
        nodes = [*snap.nodes, *snap.virtual_nodes]
        for group in snap.groups:
            facts = self.decisions.facts(group.name) or GroupFacts()
            if group.spare.empty:
                if facts.headroom is not None:  # headroom removed from the spec: so is its status
                    self.decisions.note_facts(group.name, dataclasses.replace(facts, headroom=None))
                continue
            missing = sum(1 for p in spare if p.controller_name == group.name)
            self.metrics.nodegroup_headroom_missing_pods.labels(group.name).set(missing)
            text = headroom_text(group, nodes)
            self.decisions.note_facts(group.name, dataclasses.replace(facts, headroom=text))

    def _log_plan(self, plan: ScaleUpPlan, snap: ClusterSnapshot) -> None:
        counts: dict[str, int] = {}
        for o in plan.pods:
            counts[o.status] = counts.get(o.status, 0) + 1
        log.info(
            "scale-up decision",
            dry_run=self.writes.dry_run,
            pending=len(plan.pods),
            outcomes=counts,
            increases=[
                {
                    "nodegroup": i.group,
                    "from": i.from_size,
                    "to": i.to_size,
                    "pods": len(i.pods),
                    "expander": list(i.expander_trail),
                    "limited_by": str(i.limited_by) if i.limited_by else None,
                    "plans": i.plan_choice or None,
                    "headroom_pods": i.headroom_pods or None,
                }
                for i in plan.increases
            ],
            unusable_groups=dict(snap.group_errors) or None,
            in_flight_nodes=len(snap.in_flight_nodes),
        )
        log.debug("capacity on the way", nodes=[n.name for n in snap.in_flight_nodes][:LOGGED_NAMES])
        waiting = plan.by_status(SCHEDULABLE)
        if waiting:
            log.info(
                "pending pods fit on Ready nodes: they wait for the scheduler, no scale-up for them",
                pods=len(waiting),
                nodes=sorted({o.node or "" for o in waiting})[:LOGGED_NAMES],
            )

    async def _apply_increase(self, snap: ClusterSnapshot, inc: GroupIncrease) -> None:
        ng = snap.nodegroups[inc.group]
        raw = snap.nodegroup_objects[inc.group]
        if self.writes.dry_run:  # nothing is created: the increase is reported once as planned
            key = (inc.to_size, frozenset(p.uid or p.key for p in inc.pods))
            if self._dry_run_reported.get(inc.group) == key:
                return
            self._dry_run_reported[inc.group] = key
            created, error = inc.nodes, None
            accepted_at: datetime | None = snap.now
            first = None
        else:
            created, error, accepted_at = await self._create(
                ng, [r.plan for r in inc.runs for _ in range(r.count)]
            )
            first = self._last_created
        if created:
            self.metrics.scale_up_total.labels(inc.group, METRIC_REASON).inc(created)
            complete = created == inc.nodes
            note = inc.message if complete else f"{inc.message}; only {created} created: {error}"
            # related = the first new VPSieNode: each decision is its own Event, not a series of the
            # group's first one (events.k8s.io merges Events that differ only in their note).
            self.writes.report(raw, NORMAL, REASON_SCALED_UP, note, ACTION_SCALE_UP, related=first)
            self.decisions.record(inc.group, self.writes.note(note), by="scaleup", at=self.clock.now())
        if error is not None:
            self.writes.report(
                raw, WARNING, REASON_SCALE_UP_FAILED, f"scale-up {inc.group} failed: {error}", ACTION_SCALE_UP
            )
        if accepted_at is not None:
            for pod in inc.pods:
                uid = pod.uid or pod.key
                if uid in self._latency_seen:
                    continue
                self._latency_seen.add(uid)
                since = self.became_unschedulable(snap.pending_objects.get(pod.key, {}))
                if since is not None:
                    latency = max(0.0, (accepted_at - since).total_seconds())
                    self.metrics.scale_up_decision_latency_seconds.observe(latency)
                    log.debug("decision latency", pod=pod.key, seconds=round(latency, 3))

    async def _create(
        self, ng: NodeGroup, plans: list[PlanShape | None]
    ) -> tuple[int, str | None, datetime | None]:
        """Create one VPSieNode per entry of ``plans`` (its plan; None: the group's own),
        :data:`CREATE_CONCURRENCY` at a time; stop after a wave with an error. Returns (created, first
        error, time the first was accepted)."""
        created = 0
        first_at: datetime | None = None
        error: str | None = None
        self._last_created = None
        remaining = list(plans)
        while remaining and error is None:
            wave, remaining = remaining[:CREATE_CONCURRENCY], remaining[CREATE_CONCURRENCY:]
            results = await asyncio.gather(
                *(self._create_one(ng, plan) for plan in wave), return_exceptions=True
            )
            for res in results:
                if isinstance(res, errors.KubeError):
                    log.error("creating a VPSieNode failed", nodegroup=ng.metadata.name, error=str(res))
                    error = error or str(res)
                    continue
                if isinstance(res, BaseException):
                    raise res
                if res is None:  # dry-run (never asked to create, but the facade says so)
                    continue
                if first_at is None:
                    first_at = self.clock.now()
                    self._last_created = res
                name = (res.get("metadata") or {}).get("name", "")
                self._created.expect(name, res)
                created += 1
                log.info("VPSieNode created", nodegroup=ng.metadata.name, vpsienode=name)
        return created, error, first_at

    async def _create_one(self, ng: NodeGroup, plan: PlanShape | None = None) -> dict[str, Any] | None:
        last: errors.KubeError | None = None
        for _ in range(MAX_NAME_ATTEMPTS):
            try:
                record = with_plan(new_vpsienode(ng, rng=self.rng), plan)
                return await self.writes.create(VPSIENODES, creation_body(record))
            except errors.AlreadyExists as exc:
                last = exc
        assert last is not None
        raise last

    def _pod_events_for(self, plan: ScaleUpPlan, snap: ClusterSnapshot) -> None:
        unusable = "; ".join(f"{g}: {why}" for g, why in sorted(snap.group_errors.items()))
        now = self.clock.monotonic()
        for o in plan.pods:
            if o.status == TRIGGERED:
                reason, note = REASON_TRIGGERED, o.message
            elif o.status == NOT_TRIGGERED:
                reason, note = REASON_NOT_TRIGGERED, o.message
                if unusable and set(o.reasons) <= {""}:  # the planner saw no group at all
                    note = f"pod didn't trigger scale-up: no usable NodeGroup: {unusable}"
                elif unusable:
                    note += f"; not usable: {unusable}"
            else:
                log.debug("pod not reported", pod=o.pod.key, status=o.status, detail=o.message)
                continue
            uid = o.pod.uid or o.pod.key
            previous = self._pod_events.get(uid)
            if (
                previous is not None
                and previous[:2] == (reason, note)
                and now - previous[2] < (POD_EVENT_REPEAT_SECONDS)
            ):
                continue
            self._pod_events[uid] = (reason, note, now)
            raw = snap.pending_objects.get(o.pod.key)
            if raw is not None:
                # related = the chosen group: when another group takes over (back-off) that is a new
                # Event, not a series of the first one still naming the old group.
                group = snap.nodegroup_objects.get(o.group or "") if reason == REASON_TRIGGERED else None
                self.writes.report(raw, NORMAL, reason, note, ACTION_SCALE_UP, related=group)

    def _forget_gone(self, snap: ClusterSnapshot) -> None:
        """Bound the per-pod memory to the pods still pending."""
        live = {p.uid or p.key for p in snap.pending_pods}
        for uid in [u for u in self._pod_events if u not in live]:
            del self._pod_events[uid]
        self._latency_seen &= live
