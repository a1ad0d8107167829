"""The consolidation planner: fewer or cheaper nodes, without churn, every verdict explained.

Karpenter's disruption controller (``pkg/controllers/disruption``) consolidates in two ways, and so
does this planner, over the same snapshots scale-down uses (:class:`NodeInfo` with its pods,
:class:`GroupTemplate`, :class:`PDBInfo`):

- **multi-node** (Karpenter's ``MultiNodeConsolidation``): the candidates, ordered by savings per
  disruption, are tried as growing prefixes (binary search over the prefix length, at most
  :data:`MAX_MULTI_NODE_CANDIDATES`); a prefix works when all its pods fit on the remaining nodes plus
  at most one new node of a cheaper NodeGroup, across the NodeGroups of the cluster;
- **single-node** (``SingleNodeConsolidation``): one node removed (its pods fit elsewhere) or replaced
  by one node of a cheaper plan.

One action per pass, like Karpenter's one command per disruption loop: the controller re-validates
it just before it starts and the next pass sees its effect.

Against churn (sigs/karpenter #2388: thousands of evictions a day, a 90 %-full node replaced by the
same type):

- an action goes ahead only when its hourly saving exceeds the threshold of the NodeGroups it removes
  nodes from (``minSavingsPercent`` of each removed node's price, default 20 %);
- a replacement is never of the plan of a removed node (same NodeGroup, or same allocatable and
  price);
- a node is a candidate only ``consolidateAfter`` after the last change of its pods;
- pods that must not move block their node exactly as in scale-down (``karpenter.sh/do-not-disrupt``,
  ``safe-to-evict: "false"``, PDBs, local storage, kube-system without PDB, pods without controller:
  :data:`~vpsie_autoscaler.scaling.scaledown.POD_RULES`), node annotations that disable scale-down too;
- a cluster-wide budget of evictions per hour; each group's ``minNodes``, disruption budget,
  ``maxConcurrentDrains`` and disruption windows.

Disruption of a set is Karpenter's ``disruption.EvictionCost`` summed over its pods: per pod
``1 + pod-deletion-cost / 2**27 + priority / 2**25`` clamped to ``[-10, 10]``
(``controller.kubernetes.io/pod-deletion-cost``), so pods their owners marked as expensive to delete
make a node a worse candidate. Empty nodes disrupt nothing and go first.

Every node of a NodeGroup with consolidation enabled gets a verdict (:class:`Reason`, codes below):
why it is consolidated, or why not. A time budget bounds a pass (:attr:`ConsolidationSettings.time_budget`):
candidates not reached are reported with :data:`TIME_BUDGET_EXCEEDED` and the loop is never stalled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from vpsie_autoscaler.api.durations import format_duration, parse_duration
from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.scaling.groups import GroupTemplate, budget_nodes
from vpsie_autoscaler.scaling.headroom import blocker as headroom_blocker
from vpsie_autoscaler.scaling.predicates import host_ports
from vpsie_autoscaler.scaling.reasons import (
    AT_MIN_SIZE,
    DISRUPTION_BUDGET_EXHAUSTED,
    MAX_CONCURRENT_DRAINS,
    NODE_CORDONED,
    NODE_NOT_READY,
    POD_BLOCKS_EVICTION,
    POD_DISRUPTION_BUDGET,
    Reason,
)
from vpsie_autoscaler.scaling.resources import CPU, MEMORY
from vpsie_autoscaler.scaling.scaledown import (
    Candidate,
    ScaleDownSettings,
    movable_pods,
    node_scale_down_disabled,
    pods_must_stay,
    utilization,
)
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PDBInfo, PodInfo
from vpsie_autoscaler.scaling.simulation import SimNode
from vpsie_autoscaler.scaling.windows import CronError, DisruptionWindow, window_active

# --- verdict codes (Events on the Node, metric labels, the dry-run plan) -----------------------------
CONSOLIDATE_DELETE: Final = "ConsolidateDelete"
"""Chosen: the node is removed, its pods fit on the remaining nodes."""
CONSOLIDATE_REPLACE: Final = "ConsolidateReplace"
"""Chosen: the node is replaced by a node of a cheaper plan (launched and Ready first)."""
CONSOLIDATABLE: Final = "Consolidatable"
"""Could be consolidated, but another action was chosen in this pass (one action per pass)."""
CONSOLIDATION_DISABLED: Final = "ConsolidationDisabled"
NOT_STABLE: Final = "NotStableLongEnough"
"""Its pods changed less than ``consolidateAfter`` ago."""
PRICE_UNKNOWN: Final = "PriceUnknown"
"""Its NodeGroup has no price (``spec.template`` price, or the VPSie plan's): savings are unknown."""
OUTSIDE_WINDOW: Final = "OutsideDisruptionWindow"
EVICTION_BUDGET_EXHAUSTED: Final = "EvictionBudgetExhausted"
SAVINGS_BELOW_THRESHOLD: Final = "SavingsBelowThreshold"
NO_CHEAPER_PLAN: Final = "NoCheaperPlan"
"""Its pods fit neither on the remaining nodes nor on one node of a cheaper NodeGroup."""
NODE_GONE: Final = "NodeGone"
"""Re-validation: a node of the action is gone or already leaving."""
TIME_BUDGET_EXCEEDED: Final = "ConsolidationTimeBudget"
"""The pass ran out of time before this node; the next pass starts again."""

QUIET_VERDICTS: Final = frozenset(
    {CONSOLIDATION_DISABLED, NOT_STABLE, NODE_NOT_READY, NODE_CORDONED, TIME_BUDGET_EXCEEDED}
)
"""Verdicts of a busy, transient or excluded node: counted, not announced as Events."""

DEFAULT_CONSOLIDATE_AFTER: Final = timedelta(minutes=15)
DEFAULT_MIN_SAVINGS_PERCENT: Final = 20
DEFAULT_EVICTIONS_PER_HOUR: Final = 100
"""Cluster-wide pods evicted by consolidation per hour (cluster-autoscaler users see a few hundred a
day; Karpenter's #2388 reports 6 000)."""
DEFAULT_TIME_BUDGET_SECONDS: Final = 0.5
MAX_MULTI_NODE_CANDIDATES: Final = 100
"""Karpenter's multi-node consolidation also looks at most at 100 candidates per pass."""
NEW_NODE_PREFIX: Final = "new:"
"""Destination name of pods planned onto the replacement node (it has no name yet)."""
DELETION_COST_ANNOTATION: Final = "controller.kubernetes.io/pod-deletion-cost"
_DELETION_COST_SCALE: Final = 2.0**27
_PRIORITY_SCALE: Final = 2.0**25
_EVICTION_COST_BOUND: Final = 10.0
_MIN_DISRUPTION: Final = 0.01
"""Disruption of an empty node in the savings-per-disruption order (it stays finite)."""


@dataclass(frozen=True, slots=True)
class ConsolidationPolicy:
    """A NodeGroup's ``spec.consolidation``, parsed."""

    enabled: bool = False
    consolidate_after: timedelta = DEFAULT_CONSOLIDATE_AFTER
    min_savings_percent: int = DEFAULT_MIN_SAVINGS_PERCENT
    windows: tuple[DisruptionWindow, ...] = ()


def policy_of(ng: NodeGroup) -> ConsolidationPolicy:
    """A NodeGroup's ``spec.consolidation`` as the planner reads it."""
    spec = ng.spec.consolidation
    return ConsolidationPolicy(
        enabled=spec.enabled,
        consolidate_after=spec.consolidate_after_delta,
        min_savings_percent=spec.min_savings_percent,
        windows=tuple(DisruptionWindow(w.schedule, parse_duration(w.duration)) for w in spec.windows),
    )


@dataclass(frozen=True, slots=True)
class ConsolidationSettings:
    """Cluster-wide knobs and the state the controller keeps between passes."""

    evictions_per_hour: int = DEFAULT_EVICTIONS_PER_HOUR
    """Budget of pods evicted by consolidation per hour, all groups together (0: empty nodes only)."""
    evictions_last_hour: int = 0
    """Evictions consolidation requested in the past hour (the controller counts them)."""
    time_budget: float = DEFAULT_TIME_BUDGET_SECONDS
    """Seconds one pass may spend simulating (after the linear screening of the nodes); candidates it
    does not reach are reported as such and wait for the next pass. The multi-node search runs first."""
    max_multi_node: int = MAX_MULTI_NODE_CANDIDATES
    scale_down: ScaleDownSettings = field(default_factory=ScaleDownSettings)
    """The pod rules' knobs (local storage, system pods, unreplicated pods), as scale-down's."""


@dataclass(frozen=True, slots=True)
class ConsolidationAction:
    """Remove ``nodes`` (and, for a replacement, first launch one node of ``replacement``)."""

    nodes: tuple[str, ...]
    groups: Mapping[str, str]
    """Node → its NodeGroup."""
    replacement: str | None
    """The cheaper NodeGroup of the one new node, or None (pure removal)."""
    pods_to_evict: tuple[PodInfo, ...]
    destinations: Mapping[str, str]
    """Simulated new home per pod key (``new:<group>`` for the replacement node)."""
    removed_cost: float
    """Hourly price of the removed nodes."""
    new_cost: float
    disruption: float
    """Sum of the evicted pods' eviction costs."""

    @property
    def kind(self) -> str:
        return CONSOLIDATE_DELETE if self.replacement is None else CONSOLIDATE_REPLACE

    @property
    def savings(self) -> float:
        """Hourly saving."""
        return self.removed_cost - self.new_cost

    @property
    def evictions(self) -> int:
        return len(self.pods_to_evict)

    @property
    def message(self) -> str:
        nodes = ", ".join(self.nodes)
        what = (
            f"removing {nodes}"
            if self.replacement is None
            else f"replacing {nodes} by one node of NodeGroup {self.replacement}"
        )
        return (
            f"consolidation: {what}: saves {self.savings:.4f}/h of {self.removed_cost:.4f}/h, "
            f"{self.evictions} pod(s) to evict"
        )

    def describe(self) -> dict[str, Any]:
        """The action as structured data (logs, the dry-run plan)."""
        return {
            "kind": self.kind,
            "nodes": list(self.nodes),
            "replacement": self.replacement,
            "savings_per_hour": round(self.savings, 6),
            "removed_cost_per_hour": round(self.removed_cost, 6),
            "new_cost_per_hour": round(self.new_cost, 6),
            "evictions": self.evictions,
            "disruption": round(self.disruption, 6),
        }


@dataclass(frozen=True, slots=True)
class ConsolidationPlan:
    """The result of :func:`plan_consolidation`."""

    actions: tuple[ConsolidationAction, ...]
    """At most one per pass."""
    verdicts: Mapping[str, Reason]
    """Per node of a NodeGroup with consolidation enabled: why it is (not) consolidated."""
    evaluated: int
    """Candidates simulated before the time budget ran out (all of them when it did not)."""
    timed_out: bool

    @property
    def projected_savings(self) -> float:
        """Hourly saving of the planned actions."""
        return sum(a.savings for a in self.actions)


# --- disruption cost --------------------------------------------------------------------------------
def eviction_cost(pod: PodInfo) -> float:
    """Karpenter's ``disruption.EvictionCost``: 1, plus the pod-deletion-cost and the priority scaled
    down, clamped to [-10, 10]. A bad annotation counts as no annotation (as Karpenter logs and
    ignores it)."""
    cost = 1.0
    raw = pod.annotations.get(DELETION_COST_ANNOTATION)
    if raw is not None:
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if math.isfinite(value):
            cost += value / _DELETION_COST_SCALE
    cost += pod.priority / _PRIORITY_SCALE
    return max(-_EVICTION_COST_BOUND, min(_EVICTION_COST_BOUND, cost))


def last_pod_change(node: NodeInfo) -> datetime | None:
    """The latest time visible in the snapshot at which the node's pods changed: its creation, or
    the latest creation/start of a pod on it. Removals are invisible here: the controller adds the
    times it saw the node's pod set change (``pod_changes``)."""
    times = [t for t in (node.created, *(p.start_time or p.created for p in node.pods)) if t is not None]
    return max(times) if times else None


# --- the pass -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Cand:
    node: NodeInfo
    group: GroupTemplate
    policy: ConsolidationPolicy
    price: float
    movable: tuple[PodInfo, ...]
    disruption: float

    @property
    def rank(self) -> tuple[float, str]:
        """Savings per disruption, best first (then by name: deterministic)."""
        return (-self.price / max(self.disruption, _MIN_DISRUPTION), self.node.name)


@dataclass(slots=True)
class _Room:
    """What a group may still lose to consolidation in this pass (scale-down's limits)."""

    above_min: int
    budget: int
    drains: int


def plan_consolidation(
    nodes: Sequence[NodeInfo],
    groups: Sequence[GroupTemplate],
    policies: Mapping[str, ConsolidationPolicy],
    pdbs: Sequence[PDBInfo] = (),
    *,
    now: datetime,
    settings: ConsolidationSettings = ConsolidationSettings(),
    pod_changes: Mapping[str, datetime] | None = None,
    monotonic: Callable[[], float] = time.perf_counter,
) -> ConsolidationPlan:
    """Plan at most one consolidation action over every node of the cluster and every NodeGroup.

    ``policies``: per NodeGroup name (absent: consolidation disabled). ``pod_changes``: per node, the
    last time the controller saw its pod set change. ``monotonic`` measures the time budget only.
    """
    return _Pass(nodes, groups, policies, pdbs, now, settings, pod_changes or {}, monotonic).run()


def check_removal(
    names: Sequence[str],
    nodes: Sequence[NodeInfo],
    groups: Sequence[GroupTemplate],
    policies: Mapping[str, ConsolidationPolicy],
    pdbs: Sequence[PDBInfo] = (),
    *,
    now: datetime,
    settings: ConsolidationSettings = ConsolidationSettings(),
) -> tuple[ConsolidationAction | None, Reason]:
    """Re-validate removing exactly ``names`` (their pods on the remaining nodes, no new node): the
    second half of a replacement, once its new node is Ready, and just before the drains start."""
    run = _Pass(nodes, groups, policies, pdbs, now, settings, {}, time.perf_counter)
    cands = {c.node.name: c for c in run.candidates()}
    for name in names:
        if name not in cands:
            return None, run.verdicts.get(name) or Reason(NODE_GONE, f"node {name} is gone or leaving")
    return run.evaluate([cands[n] for n in names], replace=False)


class _Pass:
    def __init__(  # noqa: PLR0917 - private, built by plan_consolidation only
        self,
        nodes: Sequence[NodeInfo],
        groups: Sequence[GroupTemplate],
        policies: Mapping[str, ConsolidationPolicy],
        pdbs: Sequence[PDBInfo],
        now: datetime,
        settings: ConsolidationSettings,
        pod_changes: Mapping[str, datetime],
        monotonic: Callable[[], float],
    ) -> None:
        self.nodes = nodes
        self.groups = {g.name: g for g in groups}
        self.policies = policies
        self.pdbs = pdbs
        self.now = now
        self.settings = settings
        self.pod_changes = pod_changes
        self.monotonic = monotonic
        self.deadline = math.inf  # set once the candidates are screened (see run)
        self.timed_out = False
        self.evaluated = 0
        self.verdicts: dict[str, Reason] = {}
        live = [n for n in nodes if not n.deleting and not n.unschedulable and n.ready]
        live.sort(key=lambda n: (-utilization(n), n.name))  # busiest first, as scale-down
        self.sims = [SimNode(n) for n in live]
        self.sim_index = {s.name: i for i, s in enumerate(self.sims)}
        self.keys: dict[int, tuple[Any, ...]] = {}
        self.label_class: dict[int, int] = {}  # id(pod) -> class of (namespace, labels)
        self.term_class: dict[int, int] = {}  # id(pod) -> class of its anti-affinity terms
        self.classes: dict[Any, int] = {}
        self.class_values: list[Any] = []
        self.selects: dict[tuple[int, int], bool] = {}
        self.covering: dict[tuple[str, frozenset[tuple[str, str]]], tuple[PDBInfo, ...]] = {}
        self.present: list[dict[int, int]] = []
        """Per destination: how many of its pods have each label class, and each non-empty term class
        (anti-affinity is checked per distinct class, not per resident pod)."""
        for sim in self.sims:
            counts: dict[int, int] = {}
            for p in sim.pods:
                self._count(counts, p, 1)
            self.present.append(counts)
        self.rooms = {name: self._room(g, nodes) for name, g in self.groups.items()}
        self.eviction_room = settings.evictions_per_hour - settings.evictions_last_hour

    @staticmethod
    def _room(g: GroupTemplate, nodes: Sequence[NodeInfo]) -> _Room:
        draining = sum(1 for n in nodes if n.group == g.name and n.deleting and movable_pods(n))
        budget = budget_nodes(g.scale_down.disruption_budget, g.size + g.deleting) - g.deleting
        return _Room(
            above_min=g.size - g.min_nodes,
            budget=budget,
            drains=g.scale_down.max_concurrent_drains - draining,
        )

    def out_of_time(self) -> bool:
        if not self.timed_out and self.monotonic() > self.deadline:
            self.timed_out = True
        return self.timed_out

    # -- candidates ----------------------------------------------------------------------------------
    def candidates(self) -> list[_Cand]:
        out: list[_Cand] = []
        for node in self.nodes:
            group = self.groups.get(node.group or "")
            if group is None or node.deleting:
                continue  # not ours, or already leaving: never a candidate
            policy = self.policies.get(group.name, ConsolidationPolicy())
            reason = self.node_blocker(node, group, policy)
            if reason is not None:
                self.verdicts[node.name] = reason
                continue
            movable = movable_pods(node)
            out.append(
                _Cand(
                    node,
                    group,
                    policy,
                    group.hourly_price or 0.0,
                    movable,
                    sum(eviction_cost(p) for p in movable),
                )
            )
        out.sort(key=lambda c: c.rank)
        return out

    def node_blocker(
        self, node: NodeInfo, group: GroupTemplate, policy: ConsolidationPolicy
    ) -> Reason | None:
        """The node rules, first blocker wins (cheap ones first)."""
        if not policy.enabled:
            return Reason(CONSOLIDATION_DISABLED, f"consolidation is not enabled for NodeGroup {group.name}")
        if not node.ready:
            return Reason(NODE_NOT_READY, "node is not Ready")
        if node.unschedulable:
            return Reason(NODE_CORDONED, "node is cordoned by someone else; left alone")
        if group.hourly_price is None:
            return Reason(PRICE_UNKNOWN, f"NodeGroup {group.name} has no price: savings cannot be computed")
        try:
            open_now = window_active(policy.windows, self.now)
        except CronError as exc:  # never "fail open": a bad schedule keeps consolidation off
            return Reason(
                OUTSIDE_WINDOW, f"invalid disruption window schedule of NodeGroup {group.name}: {exc}"
            )
        if not open_now:
            return Reason(OUTSIDE_WINDOW, f"outside the disruption windows of NodeGroup {group.name}")
        changes = [t for t in (last_pod_change(node), self.pod_changes.get(node.name)) if t is not None]
        if changes and max(changes) + policy.consolidate_after > self.now:
            return Reason(
                NOT_STABLE,
                f"pods changed at {max(changes).isoformat()}, "
                f"consolidateAfter is {format_duration(policy.consolidate_after)}",
            )
        movable = movable_pods(node)
        relevant = tuple(dict.fromkeys(b for p in movable for b in self.pdbs_of(p)))
        c = Candidate(node, group, 0.0, movable, self.now, self.settings.scale_down, relevant)
        return node_scale_down_disabled(c) or pods_must_stay(c)

    # -- limits ------------------------------------------------------------------------------------
    def limit_blocker(self, cands: Sequence[_Cand]) -> Reason | None:
        """Group rooms, the eviction budget and the PDBs, for removing all of ``cands`` together."""
        per_group: dict[str, list[_Cand]] = {}
        for c in cands:
            per_group.setdefault(c.group.name, []).append(c)
        for name, members in per_group.items():
            room, g, n = self.rooms[name], self.groups[name], len(members)
            if room.above_min < n:
                return Reason(AT_MIN_SIZE, f"NodeGroup {name} would go below its minimum of {g.min_nodes}")
            if room.budget < n:
                return Reason(
                    DISRUPTION_BUDGET_EXHAUSTED,
                    f"disruption budget {g.scale_down.disruption_budget} of NodeGroup {name} allows "
                    f"{max(room.budget, 0)} more node(s)",
                )
            drains = sum(1 for c in members if c.movable)
            if room.drains < drains:
                return Reason(
                    MAX_CONCURRENT_DRAINS,
                    f"NodeGroup {name} may drain {max(room.drains, 0)} more node(s) "
                    f"(maxConcurrentDrains {g.scale_down.max_concurrent_drains})",
                )
        evictions = sum(len(c.movable) for c in cands)
        if evictions > max(self.eviction_room, 0):
            return Reason(
                EVICTION_BUDGET_EXHAUSTED,
                f"{evictions} eviction(s) needed, {max(self.eviction_room, 0)} left of "
                f"{self.settings.evictions_per_hour} per hour",
            )
        return self.pdb_blocker([p for c in cands for p in c.movable])

    def pdbs_of(self, pod: PodInfo) -> tuple[PDBInfo, ...]:
        """The PDBs covering ``pod``, memoized by namespace and labels (pods of one workload share them)."""
        if not self.pdbs:
            return ()
        k = (pod.namespace, frozenset(pod.labels.items()))
        found = self.covering.get(k)
        if found is None:
            found = tuple(b for b in self.pdbs if b.covers(pod))
            self.covering[k] = found
        return found

    def pdb_blocker(self, pods: Sequence[PodInfo]) -> Reason | None:
        """All of ``pods`` evicted together within every PDB's ``disruptionsAllowed``."""
        need: dict[int, int] = {}
        for p in pods:
            for b in self.pdbs_of(p):
                need[id(b)] = need.get(id(b), 0) + 1
        for b in self.pdbs:
            n = need.get(id(b), 0)
            if n > b.disruptions_allowed:
                return Reason(
                    POD_BLOCKS_EVICTION,
                    f"PodDisruptionBudget {b.namespace}/{b.name} allows {b.disruptions_allowed} "
                    f"disruption(s), {n} needed",
                    detail=POD_DISRUPTION_BUDGET,
                )
        return None

    # -- simulation ------------------------------------------------------------------------------------
    def key(self, pod: PodInfo) -> tuple[Any, ...]:
        found = self.keys.get(id(pod))
        if found is None:
            found = (*pod.scheduling_key(), tuple(sorted(pod.labels.items())))
            self.keys[id(pod)] = found
        return found

    def simulate(self, cands: Sequence[_Cand]) -> tuple[dict[str, str], list[PodInfo], Reason | None]:
        """Place the candidates' pods on the remaining nodes (first fit, busiest first); returns the
        destinations and the pods that fit nowhere. Always rolled back: a trial, not a commitment.

        A cursor per class of identical pods skips the nodes the class already failed on: in one
        simulation nodes only fill up, so a node that refused a pod refuses its twins too.
        """
        excluded = {self.sim_index[c.node.name] for c in cands if c.node.name in self.sim_index}
        pods = sorted(
            (p for c in cands for p in c.movable),
            key=lambda p: (-p.requests[CPU], -p.requests[MEMORY], p.key),
        )
        saved: dict[int, tuple[Any, int, int, dict[int, int]]] = {}
        cursors: dict[tuple[Any, ...], int] = {}
        moved: dict[str, str] = {}
        left: list[PodInfo] = []
        sims, present = self.sims, self.present
        for pod in pods:
            k = self.key(pod)
            i = cursors.get(k, 0)
            requests, ports = pod.requests, pod.host_ports
            while i < len(sims):
                s = sims[i]
                if (  # the predicates of SimNode.check, the ones that cannot fail skipped
                    i not in excluded
                    and s.free.fits(requests)
                    and s.static_check(pod) is None
                    and (not ports or host_ports(pod, s) is None)
                    and self.anti_affinity_ok(pod, present[i])
                ):
                    if i not in saved:
                        saved[i] = (s.free, len(s.pods), len(s.host_ports), dict(present[i]))
                    s.place(pod)
                    self._count(present[i], pod, 1)
                    moved[pod.key] = s.name
                    break
                i += 1
            cursors[k] = i
            if i >= len(sims):
                left.append(pod)
        spare = self.headroom_blocker(cands, excluded)  # measured on the trial, before it is undone
        for i, (free, n_pods, n_ports, counts) in saved.items():
            s = sims[i]
            s.free = free
            present[i] = counts
            del s.pods[n_pods:]
            del s.host_ports[n_ports:]
        return moved, left, spare

    def headroom_blocker(self, cands: Sequence[_Cand], excluded: set[int]) -> Reason | None:
        """A group's headroom (``spec.headroom``) must still fit its remaining nodes after the moves,
        as scale-down checks it: consolidation never removes the spare capacity a group keeps."""
        for g in {c.group.name: c.group for c in cands}.values():
            if g.spare.empty:
                continue
            remaining = [
                (s.free, not any(_must_move(p) for p in s.pods))
                for i, s in enumerate(self.sims)
                if i not in excluded and s.labels.get(NODEGROUP_LABEL) == g.name
            ]
            reason = headroom_blocker(g, g.spare, remaining)
            if reason is not None:
                return reason
        return None

    def _intern(self, value: Any) -> int:
        found = self.classes.get(value)
        if found is None:
            found = self.classes[value] = len(self.class_values)
            self.class_values.append(value)
        return found

    def _classes(self, pod: PodInfo) -> tuple[int, int]:
        """(label class, term class) of a pod; the term class is -1 without anti-affinity terms."""
        lc = self.label_class.get(id(pod))
        if lc is None:
            lc = self.label_class[id(pod)] = self._intern(("L", pod.namespace, frozenset(pod.labels.items())))
            self.term_class[id(pod)] = self._intern(("T", pod.anti_affinity)) if pod.anti_affinity else -1
        return lc, self.term_class[id(pod)]

    def _count(self, counts: dict[int, int], pod: PodInfo, n: int) -> None:
        labels, terms = self._classes(pod)
        counts[labels] = counts.get(labels, 0) + n
        if terms >= 0:
            counts[terms] = counts.get(terms, 0) + n

    def _selects(self, terms: int, labels: int) -> bool:
        key = (terms, labels)
        found = self.selects.get(key)
        if found is None:
            _, namespace, pairs = self.class_values[labels]
            found = any(t.selects(namespace, dict(pairs)) for t in self.class_values[terms][1])
            self.selects[key] = found
        return found

    def anti_affinity_ok(self, pod: PodInfo, present: Mapping[int, int]) -> bool:
        """:func:`~vpsie_autoscaler.scaling.predicates.anti_affinity` (required hostname anti-affinity,
        both ways), checked per class of labels and of terms present on the node (pods of one
        workload share both) and memoized."""
        labels, terms = self._classes(pod)
        values = self.class_values
        for cls in present:
            if values[cls][0] == "T":
                if self._selects(cls, labels):
                    return False
            elif terms >= 0 and self._selects(terms, cls):
                return False
        return True

    def replacement_for(
        self, cands: Sequence[_Cand], left: Sequence[PodInfo], removed_cost: float
    ) -> tuple[GroupTemplate, dict[str, str]] | None:
        """The cheapest NodeGroup, of another plan than every removed node, cheaper than the removed
        nodes together, that can add a node and holds every leftover pod on one new node."""
        removed = [c.group for c in cands]
        options = sorted(
            (
                g
                for g in self.groups.values()
                if g.hourly_price is not None
                and g.hourly_price < removed_cost
                and g.scale_up_enabled
                and g.headroom > 0
                and (g.backoff_until is None or g.backoff_until <= self.now)
                and not any(_same_plan(g, r) for r in removed)
            ),
            key=lambda g: (g.hourly_price or 0.0, g.name),
        )
        for g in options:
            sim = SimNode(g.virtual_node())
            where: dict[str, str] = {}
            for pod in sorted(left, key=lambda p: (-p.requests[CPU], -p.requests[MEMORY], p.key)):
                if sim.check(pod) is not None:
                    break
                sim.place(pod)
                where[pod.key] = NEW_NODE_PREFIX + g.name
            else:
                return g, where
        return None

    def evaluate(
        self, cands: Sequence[_Cand], *, within_limits: bool = False, replace: bool = True
    ) -> tuple[ConsolidationAction | None, Reason]:
        """Can ``cands`` go together? The action, or why not (``within_limits``: the caller checked
        the limits already)."""
        self.evaluated += 1
        blocker = None if within_limits else self.limit_blocker(cands)
        if blocker is not None:
            return None, blocker
        removed_cost = sum(c.price for c in cands)
        threshold = sum(c.price * c.policy.min_savings_percent / 100 for c in cands)
        moved, left, spare = self.simulate(cands)
        if spare is not None:
            return None, spare
        replacement: GroupTemplate | None = None
        if left:
            found = self.replacement_for(cands, left, removed_cost) if replace else None
            if found is None:
                return None, Reason(
                    NO_CHEAPER_PLAN,
                    f"{len(left)} pod(s) (first {left[0].key}) fit neither on the remaining nodes nor on "
                    "one node of a cheaper NodeGroup",
                )
            replacement, placed = found
            moved.update(placed)
        new_cost = (replacement.hourly_price or 0.0) if replacement is not None else 0.0
        savings = removed_cost - new_cost
        if savings <= threshold:
            return None, Reason(
                SAVINGS_BELOW_THRESHOLD,
                f"saves {savings:.4f}/h of {removed_cost:.4f}/h, needs more than {threshold:.4f}/h "
                "(minSavingsPercent)",
            )
        action = ConsolidationAction(
            nodes=tuple(c.node.name for c in cands),
            groups={c.node.name: c.group.name for c in cands},
            replacement=replacement.name if replacement is not None else None,
            pods_to_evict=tuple(p for c in cands for p in c.movable),
            destinations=moved,
            removed_cost=removed_cost,
            new_cost=new_cost,
            disruption=sum(c.disruption for c in cands),
        )
        return action, Reason(action.kind, action.message)

    # -- the pass --------------------------------------------------------------------------------------
    def run(self) -> ConsolidationPlan:
        """Multi-node first (it finds the big savings in a few simulations), then every candidate
        alone, in order, while the time budget lasts: its own verdict, and the single-node action
        when no multi-node one was found."""
        cands = self.candidates()
        # The budget bounds the simulations; screening the nodes is linear and always completes, so
        # a loaded machine still reaches the multi-node search instead of timing out on every pass.
        self.deadline = self.monotonic() + self.settings.time_budget
        chosen = self.multi_node(cands)
        taken = set(chosen.nodes) if chosen is not None else set()
        singles: list[tuple[_Cand, ConsolidationAction]] = []
        for c in cands:
            if c.node.name in taken:
                continue
            if self.out_of_time():
                self.verdicts[c.node.name] = Reason(
                    TIME_BUDGET_EXCEEDED, "the pass ran out of its time budget before this node"
                )
                continue
            action, reason = self.evaluate([c])
            self.verdicts[c.node.name] = reason
            if action is not None:
                singles.append((c, action))
        if chosen is None and singles:
            chosen = min(
                (a for _, a in singles),
                key=lambda a: (-a.savings / max(a.disruption, _MIN_DISRUPTION), a.nodes),
            )
        if chosen is not None:
            for c, action in singles:
                if c.node.name not in chosen.nodes:
                    self.verdicts[c.node.name] = Reason(
                        CONSOLIDATABLE, f"{action.message}; not in this pass: another action was chosen"
                    )
            for name in chosen.nodes:
                self.verdicts[name] = Reason(chosen.kind, chosen.message)
        return ConsolidationPlan(
            actions=(chosen,) if chosen is not None else (),
            verdicts=self.verdicts,
            evaluated=self.evaluated,
            timed_out=self.timed_out,
        )

    def multi_node(self, cands: Sequence[_Cand]) -> ConsolidationAction | None:
        """The longest prefix (at least two nodes) of the candidates that can go together, found by
        binary search over its length, as Karpenter's multi-node consolidation.

        The prefixes are taken from the candidates that fit the limits together (group rooms, the
        eviction budget, the PDBs), picked greedily in order: one node at its group's minimum must not
        spoil every prefix after it."""
        pool: list[_Cand] = []
        nodes: dict[str, int] = {}
        drains: dict[str, int] = {}
        need: dict[int, int] = {}
        evictions = 0
        for c in cands:
            if len(pool) >= self.settings.max_multi_node:
                break
            g, room = c.group.name, self.rooms[c.group.name]
            n, d = nodes.get(g, 0) + 1, drains.get(g, 0) + (1 if c.movable else 0)
            if room.above_min < n or room.budget < n or room.drains < d:
                continue
            if evictions + len(c.movable) > self.eviction_room:
                continue
            add: dict[int, int] = {}
            for p in c.movable:
                for b in self.pdbs_of(p):
                    add[id(b)] = add.get(id(b), 0) + 1
            if any(
                need.get(id(b), 0) + add.get(id(b), 0) > b.disruptions_allowed
                for b in self.pdbs
                if id(b) in add
            ):
                continue
            pool.append(c)
            nodes[g], drains[g] = n, d
            evictions += len(c.movable)
            for k, v in add.items():
                need[k] = need.get(k, 0) + v
        lo, hi = 2, len(pool)
        best: ConsolidationAction | None = None
        while lo <= hi and not self.out_of_time():
            mid = (lo + hi) // 2
            action, _ = self.evaluate(pool[:mid], within_limits=True)
            if action is not None:
                best = action
                lo = mid + 1
            else:
                hi = mid - 1
        return best


def _must_move(pod: PodInfo) -> bool:
    """Scale-down's pods that must move: not DaemonSet, mirror, finished or terminating pods."""
    return not (pod.is_daemonset or pod.is_mirror or pod.is_terminal or pod.deleting)


def _same_plan(a: GroupTemplate, b: GroupTemplate) -> bool:
    """Same NodeGroup, or the same node shape at the same price: replacing one by the other saves
    nothing but churn."""
    return a.name == b.name or (a.allocatable == b.allocatable and a.hourly_price == b.hourly_price)
