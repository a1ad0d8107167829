"""The scale-down planner: which nodes go now, which are unneeded (timer running), and why every
other node of a NodeGroup stays.

Pure: the controller persists the timers (``autoscaler.vpsie.com/unneeded-since`` on Nodes, from
``became_unneeded`` / ``no_longer_unneeded``), taints and drains the ``removals`` and reports
``blocked`` as Events and metrics (``unremovable_nodes{reason}``).

Rules are small named functions in a chain, first blocker wins (cert-manager's policy chains):

- node rules (:data:`NODE_RULES`): group scale-down disabled, node protections (the ``protected``
  annotation, the ``scale-down-disabled`` label, ``scale-down=disabled``: :mod:`.protections`), node
  annotations that disable it, an unreadable ``scale-down-allowed-hours``, node not Ready, node
  cordoned by someone else, not underutilized (cluster-autoscaler:
  max(cpu, memory) requests / allocatable below ``utilizationThreshold``; DaemonSet and mirror pods
  not counted), a pod that must not move
  (:data:`POD_RULES`);
- simulation: every movable pod must fit on the *remaining* nodes with all predicates, never on the
  candidate itself, never on nodes being deleted, cordoned or chosen for removal in this plan
  (counting the candidate's own free capacity, or ignoring selectors and taints, removes nodes whose
  pods then cannot run);
- gates (:data:`GATE_RULES`): unneeded long enough, not right after a scale-up, inside the node's
  ``scale-down-allowed-hours`` and the group's disruption windows (UTC), then the limits of
  :class:`_GroupRoom` and the pass (below), and the group's headroom (its other nodes must still
  hold it: :func:`~vpsie_autoscaler.scaling.headroom.blocker`).

Limits. An *empty* node (no pod that must move: only DaemonSet, mirror, finished or already
terminating pods) disrupts no pod, so, as in cluster-autoscaler, it is not paced like a drain:

============================  =====================================  ==========================
limit                         non-empty node (drain)                 empty node
============================  =====================================  ==========================
``minNodes``                  yes                                    yes
``disruptionBudget``          yes (nodes being removed use it:       only a budget of 0 (or
                              empty ones too)                        ``0%``): the group is frozen
``maxConcurrentDrains``       yes                                    no
``max_empty_bulk_delete``     no                                     yes: at most this many per
                                                                     pass, all groups together
                                                                     (default 100)
============================  =====================================  ==========================

Empty nodes go first: 50 empty nodes of a group with default settings and ``minNodes`` 0 are all
requested in the first pass after their ``unneededTime``; the drains of that group then wait until
they are gone (they use its disruption budget). Non-empty candidates are truncated once, here, so
no caller can drain a whole group in one pass. A group above ``maxNodes`` (the user lowered it) is
not planned here: the NodeGroup controller alone converges it
(:func:`vpsie_autoscaler.scaling.nodegroup_rules.surplus`), so two planners never request drains for
the same surplus from different cache states. Its nodes are candidates like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from vpsie_autoscaler.api.durations import format_duration, parse_duration
from vpsie_autoscaler.api.labels import (
    DO_NOT_DISRUPT_ANNOTATION,
    NODEGROUP_LABEL,
    SAFE_TO_EVICT_ANNOTATION,
    SAFE_TO_EVICT_LOCAL_VOLUMES_ANNOTATION,
    SCALE_DOWN_DISABLED_ANNOTATIONS,
    UNNEEDED_SINCE_ANNOTATION,
)
from vpsie_autoscaler.api.times import parse_time
from vpsie_autoscaler.scaling.groups import GroupTemplate, budget_nodes
from vpsie_autoscaler.scaling.headroom import admits_any_pod, cluster_blocker
from vpsie_autoscaler.scaling.headroom import blocker as headroom_blocker
from vpsie_autoscaler.scaling.protections import (
    allowed_hours_blocker,
    allowed_hours_problem,
    disruption_window_blocker,
    node_protection,
)
from vpsie_autoscaler.scaling.reasons import (
    AT_MIN_SIZE,
    DISRUPTION_BUDGET_EXHAUSTED,
    DO_NOT_DISRUPT,
    KUBE_SYSTEM_WITHOUT_PDB,
    LOCAL_PERSISTENT_VOLUME,
    LOCAL_STORAGE,
    MAX_BULK_DELETE,
    MAX_CONCURRENT_DRAINS,
    NODE_CORDONED,
    NODE_NOT_READY,
    NOT_REPLICATED,
    NOT_UNDERUTILIZED,
    NOT_UNNEEDED_LONG_ENOUGH,
    POD_BLOCKS_EVICTION,
    POD_DISRUPTION_BUDGET,
    PODS_CANNOT_MOVE,
    RECEIVES_MOVED_PODS,
    RECENT_SCALE_UP,
    REMOVE_EMPTY,
    REMOVE_UNDERUTILIZED,
    SAFE_TO_EVICT_FALSE,
    SCALE_DOWN_DISABLED,
    SCALE_DOWN_DISABLED_ANNOTATION,
    Reason,
)
from vpsie_autoscaler.scaling.resources import CPU, EMPTY, MEMORY, Resources
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PDBInfo, PodInfo
from vpsie_autoscaler.scaling.simulation import SimNode, place_first_fit

KUBE_SYSTEM: Final = "kube-system"
TRUE: Final = "true"
FALSE: Final = "false"
DEFAULT_MAX_EMPTY_BULK_DELETE: Final = 100
"""Empty nodes requested for removal per pass, all groups together (cluster-autoscaler's
``--max-empty-bulk-delete`` / ``--max-scale-down-parallelism``, 10 there). Higher here: an empty
node disrupts no pod, and a group that emptied (a batch finished) should be gone in one pass, not
in ten; 100 still bounds what one pass asks of the deletion path and of the VPSie API."""
BULK_NAMES_SHOWN: Final = 10
"""Node names listed in a bulk decision text; the rest are counted ("and 40 more")."""


@dataclass(frozen=True, slots=True)
class ScaleDownSettings:
    """Cluster-wide scale-down knobs (per-group ones live on the NodeGroup)."""

    max_empty_bulk_delete: int = DEFAULT_MAX_EMPTY_BULK_DELETE
    """Empty nodes requested per pass, all groups together (:data:`DEFAULT_MAX_EMPTY_BULK_DELETE`)."""
    skip_nodes_with_local_storage: bool = True
    skip_nodes_with_system_pods: bool = True
    skip_nodes_with_unreplicated_pods: bool = True
    cluster_headroom: Resources = EMPTY
    """Cluster-wide headroom (``AutoscalerSettings`` ``spec.headroom``): the NodeGroups' other nodes
    must still hold it (:func:`~vpsie_autoscaler.scaling.headroom.cluster_blocker`)."""


@dataclass(frozen=True, slots=True)
class NodeRemoval:
    """Remove ``node`` of ``group``: taint it, evict ``pods_to_evict``, delete it."""

    node: str
    group: str
    reason: str
    """:data:`REMOVE_EMPTY` or :data:`REMOVE_UNDERUTILIZED`."""
    pods_to_evict: tuple[PodInfo, ...] = ()
    destinations: Mapping[str, str] = field(default_factory=dict)
    """Simulated new home per pod key (informational: the scheduler decides)."""
    utilization: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.pods_to_evict

    @property
    def unmodelled(self) -> tuple[str, ...]:
        """Constraints of the evicted pods the move simulation could not check (reported, not hidden)."""
        return tuple(dict.fromkeys(u for p in self.pods_to_evict for u in p.unmodelled))

    @property
    def message(self) -> str:
        """Event note for the Node / NodeGroup."""
        if self.reason == REMOVE_EMPTY:
            return f"removing empty node {self.node} of NodeGroup {self.group}"
        text = (
            f"removing underutilized node {self.node} of NodeGroup {self.group} "
            f"(utilization {self.utilization:.0%}); {len(self.pods_to_evict)} pod(s) fit elsewhere"
        )
        if self.unmodelled:
            text += f" (not checked: {', '.join(self.unmodelled)})"
        return text


@dataclass(frozen=True, slots=True)
class ScaleDownPlan:
    """The result of :func:`plan_scale_down`."""

    removals: tuple[NodeRemoval, ...]
    """Empty nodes first."""
    unneeded: Mapping[str, datetime]
    """Every node unneeded now, with the time since when (persisted or ``now``)."""
    became_unneeded: tuple[str, ...]
    """Write ``unneeded-since = now`` on these Nodes."""
    no_longer_unneeded: tuple[str, ...]
    """Remove the ``unneeded-since`` annotation from these Nodes."""
    blocked: Mapping[str, Reason]
    """Per node of a NodeGroup that stays: the first blocker."""
    utilization: Mapping[str, float]

    def removals_for(self, group: str) -> tuple[NodeRemoval, ...]:
        return tuple(r for r in self.removals if r.group == group)


def _nodes(n: int) -> str:
    return f"{n} empty node{'' if n == 1 else 's'}"


def describe_removals(group: str, removals: Sequence[NodeRemoval]) -> str:
    """One decision text for the removals of ``group`` requested in one pass (``lastDecision``, the
    NodeGroup's ``ScaledDown`` Event): the empty nodes as one bulk (``removing 50 empty nodes of
    NodeGroup web at once: …``), then each drain's own message."""
    empty = [x.node for x in removals if x.reason == REMOVE_EMPTY]
    parts: list[str] = []
    if len(empty) == 1:
        parts.append(f"removing empty node {empty[0]} of NodeGroup {group}")
    elif empty:
        shown = ", ".join(empty[:BULK_NAMES_SHOWN])
        more = f" and {len(empty) - BULK_NAMES_SHOWN} more" if len(empty) > BULK_NAMES_SHOWN else ""
        parts.append(
            f"removing {_nodes(len(empty))} of NodeGroup {group} at once: {shown}{more} "
            "(no pod to move: not paced by maxConcurrentDrains or the disruption budget)"
        )
    parts.extend(x.message for x in removals if x.reason != REMOVE_EMPTY)
    return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class Candidate:
    """What a rule sees: one node of one group, and the cluster facts around it."""

    node: NodeInfo
    group: GroupTemplate
    utilization: float
    movable: tuple[PodInfo, ...]
    now: datetime
    settings: ScaleDownSettings
    pdbs: Sequence[PDBInfo]
    unneeded_since: datetime | None = None


NodeRule = Callable[[Candidate], Reason | None]
PodRule = Callable[[PodInfo, Candidate], Reason | None]


# --- helpers ----------------------------------------------------------------------------------------
def utilization(node: NodeInfo) -> float:
    """max(cpu, memory) requested / allocatable over pods that would move (cluster-autoscaler)."""
    worst = 0.0
    for name in (CPU, MEMORY):
        alloc = node.allocatable[name]
        if alloc <= 0:
            continue
        used = sum(p.requests[name] for p in node.pods if _counts(p))
        worst = max(worst, used / alloc)
    return worst


def _counts(pod: PodInfo) -> bool:
    """Pods that count for utilization and must move: not DaemonSet, mirror, terminal or deleting."""
    return not (pod.is_daemonset or pod.is_mirror or pod.is_terminal or pod.deleting)


def movable_pods(node: NodeInfo) -> tuple[PodInfo, ...]:
    return tuple(p for p in node.pods if _counts(p))


def _do_not_disrupt_active(value: str, started: datetime | None, now: datetime) -> bool:
    """Karpenter: ``"true"`` always; a duration while the pod is younger than it; junk: block."""
    if value.lower() == TRUE:
        return True
    if value.lower() == FALSE:
        return False
    try:
        window = parse_duration(value)
    except ValueError:
        return True
    return started is None or now < started + window


# --- pod rules (must this pod stay?) ----------------------------------------------------------------
def _blocks(detail: str, pod: PodInfo, text: str) -> Reason:
    return Reason(POD_BLOCKS_EVICTION, f"pod {pod.key}: {text}", detail=detail)


def pod_do_not_disrupt(pod: PodInfo, c: Candidate) -> Reason | None:
    value = pod.annotations.get(DO_NOT_DISRUPT_ANNOTATION)
    if value is not None and _do_not_disrupt_active(value, pod.start_time or pod.created, c.now):
        return _blocks(DO_NOT_DISRUPT, pod, f"{DO_NOT_DISRUPT_ANNOTATION}={value}")
    return None


def pod_safe_to_evict_false(pod: PodInfo, c: Candidate) -> Reason | None:
    if pod.annotations.get(SAFE_TO_EVICT_ANNOTATION, "").lower() == FALSE:
        return _blocks(SAFE_TO_EVICT_FALSE, pod, f"{SAFE_TO_EVICT_ANNOTATION}=false")
    return None


def _safe_to_evict(pod: PodInfo) -> bool:
    return pod.annotations.get(SAFE_TO_EVICT_ANNOTATION, "").lower() == TRUE


def pod_not_replicated(pod: PodInfo, c: Candidate) -> Reason | None:
    if (
        c.settings.skip_nodes_with_unreplicated_pods
        and not _safe_to_evict(pod)
        and pod.controller_kind is None
    ):
        return _blocks(NOT_REPLICATED, pod, "has no controller: it would not come back")
    return None


def pod_kube_system_without_pdb(pod: PodInfo, c: Candidate) -> Reason | None:
    if not c.settings.skip_nodes_with_system_pods or pod.namespace != KUBE_SYSTEM or _safe_to_evict(pod):
        return None
    if any(p.covers(pod) for p in c.pdbs):
        return None
    return _blocks(KUBE_SYSTEM_WITHOUT_PDB, pod, "kube-system pod without a PodDisruptionBudget")


def pod_local_storage(pod: PodInfo, c: Candidate) -> Reason | None:
    if not c.settings.skip_nodes_with_local_storage or not pod.local_volumes or _safe_to_evict(pod):
        return None
    allowed = {v.strip() for v in pod.annotations.get(SAFE_TO_EVICT_LOCAL_VOLUMES_ANNOTATION, "").split(",")}
    lost = [v for v in pod.local_volumes if v not in allowed]
    if lost:
        return _blocks(LOCAL_STORAGE, pod, f"local storage would be lost: {', '.join(lost)}")
    return None


def pod_local_persistent_volume(pod: PodInfo, c: Candidate) -> Reason | None:
    """A claim bound to a volume on this node (:mod:`.volumes`): the pod can run nowhere else, so
    neither ``safe-to-evict`` nor ``skip_nodes_with_local_storage`` lifts it."""
    if pod.local_claims:
        return _blocks(
            LOCAL_PERSISTENT_VOLUME, pod, f"its volume stays on this node: {'; '.join(pod.local_claims)}"
        )
    return None


def pod_disruption_budget(pod: PodInfo, c: Candidate) -> Reason | None:
    for budget in c.pdbs:
        if budget.covers(pod) and budget.disruptions_allowed < 1:
            return _blocks(
                POD_DISRUPTION_BUDGET, pod, f"PodDisruptionBudget {budget.name} allows no disruption"
            )
    return None


POD_RULES: Final[tuple[PodRule, ...]] = (
    pod_do_not_disrupt,
    pod_safe_to_evict_false,
    pod_not_replicated,
    pod_kube_system_without_pdb,
    pod_local_storage,
    pod_local_persistent_volume,
    pod_disruption_budget,
)


# --- node rules ---------------------------------------------------------------------------------------
def group_scale_down_disabled(c: Candidate) -> Reason | None:
    if not c.group.scale_down.enabled:
        return Reason(SCALE_DOWN_DISABLED, f"scale-down is disabled for NodeGroup {c.group.name}")
    return None


def node_scale_down_disabled(c: Candidate) -> Reason | None:
    """Every way a node is excluded from disruption on purpose, the Go autoscaler's protections first
    (consolidation asks this rule too); an unreadable ``scale-down-allowed-hours`` excludes it as well
    (never fail open)."""
    protected = node_protection(c.node.labels, c.node.annotations)
    if protected is not None:
        return protected
    for key in SCALE_DOWN_DISABLED_ANNOTATIONS:
        if c.node.annotations.get(key, "").lower() == TRUE:
            return Reason(SCALE_DOWN_DISABLED_ANNOTATION, f"node annotation {key}=true")
    value = c.node.annotations.get(DO_NOT_DISRUPT_ANNOTATION)
    if value is not None and _do_not_disrupt_active(value, c.node.created, c.now):
        return Reason(SCALE_DOWN_DISABLED_ANNOTATION, f"node annotation {DO_NOT_DISRUPT_ANNOTATION}={value}")
    return allowed_hours_problem(c.node.annotations)


def node_not_ready(c: Candidate) -> Reason | None:
    if not c.node.ready:
        return Reason(NODE_NOT_READY, "node is not Ready (its lifecycle controller handles it)")
    return None


def node_cordoned(c: Candidate) -> Reason | None:
    if c.node.unschedulable:
        return Reason(NODE_CORDONED, "node is cordoned by someone else; left alone")
    return None


def not_underutilized(c: Candidate) -> Reason | None:
    threshold = c.group.scale_down.utilization_threshold
    if c.utilization >= threshold:
        return Reason(NOT_UNDERUTILIZED, f"utilization {c.utilization:.0%} is not below {threshold:.0%}")
    return None


def pods_must_stay(c: Candidate) -> Reason | None:
    for pod in c.movable:
        for rule in POD_RULES:
            reason = rule(pod, c)
            if reason is not None:
                return reason
    return None


NODE_RULES: Final[tuple[NodeRule, ...]] = (
    group_scale_down_disabled,
    node_scale_down_disabled,
    node_not_ready,
    node_cordoned,
    not_underutilized,
    pods_must_stay,
)


# --- gates (stateful, per group) -------------------------------------------------------------------
def unneeded_long_enough(c: Candidate) -> Reason | None:
    since = c.unneeded_since or c.now
    wait = c.group.scale_down.unneeded_time
    if since + wait > c.now:
        return Reason(
            NOT_UNNEEDED_LONG_ENOUGH, f"unneeded since {since.isoformat()}, needs {format_duration(wait)}"
        )
    return None


def not_after_scale_up(c: Candidate) -> Reason | None:
    last = c.group.last_scale_up_time
    delay = c.group.scale_down.delay_after_scale_up
    if last is not None and last + delay > c.now:
        return Reason(RECENT_SCALE_UP, f"NodeGroup scaled up at {last.isoformat()}, waiting {delay}")
    return None


def within_allowed_hours(c: Candidate) -> Reason | None:
    return allowed_hours_blocker(c.node.annotations, c.now)


def within_disruption_window(c: Candidate) -> Reason | None:
    return disruption_window_blocker(c.group.name, c.group.scale_down.windows, c.now)


GATE_RULES: Final[tuple[NodeRule, ...]] = (
    unneeded_long_enough,
    not_after_scale_up,
    within_allowed_hours,
    within_disruption_window,
)


@dataclass(slots=True)
class _GroupRoom:
    """What a group may still lose in this plan (the limits table in the module docstring)."""

    above_min: int
    budget: int
    """Nodes that may still start leaving: the budget minus those leaving (empty ones included)."""
    frozen: bool
    """The budget is 0 (or ``0%``): nothing leaves, not even empty nodes."""
    drains: int

    @classmethod
    def of(cls, group: GroupTemplate, draining: int) -> _GroupRoom:
        total = group.size + group.deleting
        budget = budget_nodes(group.scale_down.disruption_budget, total)
        return cls(
            above_min=max(0, group.size - group.min_nodes),
            budget=budget - group.deleting,
            frozen=budget <= 0,
            drains=group.scale_down.max_concurrent_drains - draining,
        )

    def blocker(self, group: GroupTemplate, empty: bool) -> Reason | None:
        if self.above_min <= 0:
            return Reason(AT_MIN_SIZE, f"NodeGroup {group.name} is at its minimum of {group.min_nodes}")
        if self.frozen:
            return Reason(
                DISRUPTION_BUDGET_EXHAUSTED,
                f"disruption budget {group.scale_down.disruption_budget} of NodeGroup {group.name} "
                "allows no removal, not even of empty nodes",
            )
        if empty:
            return None  # empty nodes: minNodes, a zero budget and the per-pass bulk cap only
        if self.budget <= 0:
            return Reason(
                DISRUPTION_BUDGET_EXHAUSTED,
                f"disruption budget {group.scale_down.disruption_budget} of NodeGroup {group.name} is in use",
            )
        if self.drains <= 0:
            return Reason(
                MAX_CONCURRENT_DRAINS,
                f"NodeGroup {group.name} already drains {group.scale_down.max_concurrent_drains} node(s)",
            )
        return None

    def take(self, empty: bool) -> None:
        self.above_min -= 1
        self.budget -= 1  # an empty node leaving uses the budget of this pass's drains, as it will later
        if not empty:
            self.drains -= 1


class _PdbLedger:
    """Disruptions left per PDB as the plan evicts pods (cluster-autoscaler's RemainingPdbTracker)."""

    def __init__(self, pdbs: Sequence[PDBInfo]) -> None:
        self._pdbs = list(pdbs)
        self._left = {id(p): p.disruptions_allowed for p in pdbs}

    def blocker(self, pods: Sequence[PodInfo]) -> Reason | None:
        need: dict[int, int] = {}
        for pod in pods:
            for budget in self._pdbs:
                if budget.covers(pod):
                    need[id(budget)] = need.get(id(budget), 0) + 1
        for budget in self._pdbs:
            if need.get(id(budget), 0) > self._left[id(budget)]:
                return Reason(
                    POD_BLOCKS_EVICTION,
                    f"PodDisruptionBudget {budget.namespace}/{budget.name} allows "
                    f"{self._left[id(budget)]} more disruption(s), {need[id(budget)]} needed",
                    detail=POD_DISRUPTION_BUDGET,
                )
        return None

    def take(self, pods: Sequence[PodInfo]) -> None:
        for pod in pods:
            for budget in self._pdbs:
                if budget.covers(pod):
                    self._left[id(budget)] -= 1


def _first(rules: Sequence[NodeRule], c: Candidate) -> Reason | None:
    for rule in rules:
        reason = rule(c)
        if reason is not None:
            return reason
    return None


def plan_scale_down(
    nodes: Sequence[NodeInfo],
    groups: Sequence[GroupTemplate],
    pdbs: Sequence[PDBInfo] = (),
    *,
    now: datetime,
    settings: ScaleDownSettings = ScaleDownSettings(),
) -> ScaleDownPlan:
    """Plan the scale-down over every node of the cluster (with their pods) and every NodeGroup.

    Nodes without a NodeGroup label, or of an unknown group, are destinations only: never touched.
    """
    return _Pass(nodes, groups, pdbs, now, settings).run()


class _Pass:
    """One planning pass: the simulated cluster and what the pass has decided so far."""

    def __init__(
        self,
        nodes: Sequence[NodeInfo],
        groups: Sequence[GroupTemplate],
        pdbs: Sequence[PDBInfo],
        now: datetime,
        settings: ScaleDownSettings,
    ) -> None:
        self.groups = groups
        self.now = now
        self.settings = settings
        # Destinations, busiest first: pods packed onto full nodes leave the light ones removable
        # (cluster-autoscaler's simulator also prefers to keep emptying the emptiest nodes).
        live = [n for n in nodes if not n.deleting and not n.unschedulable and n.ready]
        live.sort(key=lambda n: (-utilization(n), n.name))
        self.sims = {n.name: SimNode(n) for n in live}
        self.gone: set[str] = set()  # removed or unneeded in this pass: no longer destinations
        self.receiving: set[str] = set()  # destinations of simulated moves: their room is promised
        self.ledger = _PdbLedger(pdbs)
        self.rooms = {
            g.name: _GroupRoom.of(
                g, sum(1 for n in nodes if n.group == g.name and n.deleting and movable_pods(n))
            )
            for g in groups
        }
        self.removals: list[NodeRemoval] = []
        self.blocked: dict[str, Reason] = {}
        self.unneeded: dict[str, datetime] = {}
        self.empty_removed = 0
        by_name = {g.name: g for g in groups}
        self.candidates = [
            Candidate(
                node,
                by_name[node.group or ""],
                utilization(node),
                movable_pods(node),
                now,
                settings,
                pdbs,
                parse_time(node.annotations.get(UNNEEDED_SINCE_ANNOTATION)),
            )
            for node in nodes
            if (node.group or "") in by_name and not node.deleting
        ]
        # Empty first; then the longest unneeded; then the least utilized (deterministic by name).
        self.candidates.sort(
            key=lambda c: (
                bool(c.movable),
                c.node.ready,
                c.unneeded_since.timestamp() if c.unneeded_since else float("inf"),
                c.utilization,
                c.node.name,
            )
        )

    def run(self) -> ScaleDownPlan:
        for c in self.candidates:
            if c.node.name not in self.gone:
                self.consider(c)
        had_timer = {c.node.name for c in self.candidates if c.unneeded_since is not None}
        return ScaleDownPlan(
            removals=tuple(sorted(self.removals, key=lambda r: not r.empty)),
            unneeded=self.unneeded,
            became_unneeded=tuple(sorted(n for n in self.unneeded if n not in had_timer)),
            no_longer_unneeded=tuple(
                sorted(had_timer - set(self.unneeded) - {r.node for r in self.removals})
            ),
            blocked=self.blocked,
            utilization={c.node.name: c.utilization for c in self.candidates},
        )

    def consider(self, c: Candidate) -> None:
        """Node rules, then the move simulation (unneeded from here), then the gates for removal now."""
        reason = _first(NODE_RULES, c)
        if reason is None and c.node.name in self.receiving:
            reason = Reason(RECEIVES_MOVED_PODS, "pods of another node being removed are planned onto it")
        if reason is not None:
            self.blocked[c.node.name] = reason
            return
        moved, reason = self.simulate(c)
        if moved is None:
            self.blocked[c.node.name] = reason or Reason(PODS_CANNOT_MOVE, "pods cannot move")
            return
        self.gone.add(c.node.name)  # unneeded: its pods are accounted for elsewhere from now on
        self.unneeded[c.node.name] = c.unneeded_since or self.now
        reason = _first(GATE_RULES, c) or self.accept(c, REMOVE_UNDERUTILIZED, moved)
        if reason is not None:
            self.blocked[c.node.name] = reason

    def simulate(self, c: Candidate) -> tuple[dict[str, str] | None, Reason | None]:
        """Move the candidate's pods onto the remaining nodes; commit only when all fit."""
        if not c.movable:
            return {}, None
        targets = [s for name, s in self.sims.items() if name != c.node.name and name not in self.gone]
        trial = {s.name: (s.free, len(s.pods), len(s.host_ports)) for s in targets}
        moved: dict[str, str] = {}
        for pod in sorted(c.movable, key=lambda p: (-p.requests[CPU], -p.requests[MEMORY], p.key)):
            dest, reasons = place_first_fit(pod, targets)
            if dest is None:
                for s in targets:  # roll back this candidate's trial placements
                    free, n_pods, n_ports = trial[s.name]
                    s.free = free
                    del s.pods[n_pods:]
                    del s.host_ports[n_ports:]
                return None, Reason(
                    PODS_CANNOT_MOVE, f"pod {pod.key} fits on no other node{_summarize(reasons)}"
                )
            moved[pod.key] = dest.name
        self.receiving.update(moved.values())
        return moved, None

    def accept(self, c: Candidate, reason: str, moved: Mapping[str, str]) -> Reason | None:
        """Remove the node now unless a group limit, the bulk cap or a PDB says no."""
        empty = not c.movable
        room = self.rooms[c.group.name]
        blocker = room.blocker(c.group, empty)
        if blocker is None and empty and self.empty_removed >= self.settings.max_empty_bulk_delete:
            blocker = Reason(
                MAX_BULK_DELETE,
                f"already removing {self.empty_removed} empty nodes in this pass "
                f"(at most {self.settings.max_empty_bulk_delete} per pass; the next pass takes it)",
            )
        blocker = blocker or self.ledger.blocker(c.movable) or self.headroom_blocker(c)
        if blocker is not None:
            return blocker
        room.take(empty)
        self.ledger.take(c.movable)
        self.empty_removed += empty
        kind = REMOVE_EMPTY if empty else reason
        self.removals.append(
            NodeRemoval(c.node.name, c.group.name, kind, c.movable, dict(moved), c.utilization)
        )
        self.gone.add(c.node.name)
        return None

    def headroom_blocker(self, c: Candidate) -> Reason | None:
        """The group's headroom must still fit its other nodes, and the cluster-wide headroom the other
        nodes of every group, after this pass's moves and removals."""
        removed = {r.node for r in self.removals}
        if self.settings.cluster_headroom and admits_any_pod(c.node.taints, c.node.unschedulable):
            known = {g.name for g in self.groups}
            others = [
                s.free
                for name, s in self.sims.items()
                if s.labels.get(NODEGROUP_LABEL) in known
                and name != c.node.name
                and name not in removed
                and admits_any_pod(s.taints, s.unschedulable)
            ]
            found = cluster_blocker(self.groups, self.settings.cluster_headroom, others)
            if found is not None:
                return found
        if c.group.spare.empty:
            return None
        remaining = [
            (s.free, not any(_counts(p) for p in s.pods))
            for name, s in self.sims.items()
            if s.labels.get(NODEGROUP_LABEL) == c.group.name and name != c.node.name and name not in removed
        ]
        return headroom_blocker(c.group, c.group.spare, remaining)


def _summarize(reasons: Mapping[str, Reason]) -> str:
    if not reasons:
        return " (no other schedulable node)"
    counts: dict[str, int] = {}
    for r in reasons.values():
        counts[r.code] = counts.get(r.code, 0) + 1
    return " (" + ", ".join(f"{n} node(s): {code}" for code, n in sorted(counts.items())) + ")"
