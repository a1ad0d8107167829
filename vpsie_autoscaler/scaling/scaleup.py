"""The scale-up planner: which NodeGroup grows, by how many nodes, for which pending pods, and why
every other pod or group was not used.

Pure: inputs are snapshots, output is a :class:`ScaleUpPlan`; the controller turns it into
``desired`` changes, Events (``TriggeredScaleUp`` / ``NotTriggerScaleUp`` on pods, ``ScaledUp`` on
groups) and metrics. Steps (cluster-autoscaler's ``ScaleUp`` orchestrator; docs/scaling.md):

1. Drop pods that must not trigger scale-up: expendable (priority below -10, CA's
   ``--expendable-pods-priority-cutoff``), DaemonSet pods (their node is fixed), bound or deleting pods.
2. Group identical pods into equivalence classes.
3. Fit classes onto the free capacity of existing Ready nodes (cluster-autoscaler's "filter out
   schedulable" step, ``FilterOutSchedulable``): the scheduler has not bound them yet — typically
   the pods planned onto a node that has just turned Ready — so they wait for it and trigger
   nothing. Pods with a constraint we do not model are never held this way (the scheduler's verdict
   wins for them). Then fit onto capacity still on the way (in-flight nodes): pods that fit there
   wait for it and trigger nothing (otherwise every batch orders nodes again: five nodes for one pod).
4. Per group, check each class against the template (static predicates + an empty node's
   resources) and the group's state (scale-up disabled, back-off, at max size).
5. Per group, bin-pack the eligible classes (FFD, :mod:`binpack`) within its headroom and the
   cluster-wide limits; the expander chain picks **one** group for those pods.
6. Repeat for the pods the chosen group did not take, over the groups not chosen yet.

Flexible groups (``GroupTemplate.plans``) pack with :func:`~vpsie_autoscaler.scaling.plans.choose_plans`:
the cheapest allowed plan, or mix of plans, for the pods they take; a pod no allowed plan holds is
refused with the largest plan's verdict. Headroom (:mod:`~vpsie_autoscaler.scaling.headroom`) comes
in as virtual pods (``headroom_pods``): planned like pending pods, but never fitted onto in-flight
nodes (the headroom already counted those) and never given an outcome.

Decision on "one group per plan": a pod's need is never served by two groups and no group grows
for pods another group already covers (every matching group growing would over-provision). Pods that only
*other* groups can hold (a GPU pod next to web pods) are served in the same plan rather than one
loop later, like cluster-autoscaler's salvo scale-up; at most one increase per group per plan.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from vpsie_autoscaler.scaling.binpack import PackItem, PackResult, pack
from vpsie_autoscaler.scaling.expanders import ExpanderChain, Option
from vpsie_autoscaler.scaling.groups import GroupTemplate
from vpsie_autoscaler.scaling.headroom import is_headroom_pod
from vpsie_autoscaler.scaling.plans import (
    PlanChoice,
    PlanShape,
    Room,
    allowed_plans,
    biggest,
    choose_plans,
    describe,
    plan_node,
)
from vpsie_autoscaler.scaling.predicates import check, pods_conflict
from vpsie_autoscaler.scaling.reasons import (
    CLUSTER_MAX_CORES,
    CLUSTER_MAX_MEMORY,
    CLUSTER_MAX_NODES,
    DAEMONSET_POD,
    EXPENDABLE_POD,
    GROUP_AT_MAX_SIZE,
    GROUP_IN_BACKOFF,
    NO_GROUPS,
    NOT_CHOSEN,
    SCALE_UP_DISABLED,
    Reason,
)
from vpsie_autoscaler.scaling.resources import CPU, EMPTY, MEMORY, Resources, format_units
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.simulation import SimNode

EXPENDABLE_PRIORITY_CUTOFF: Final = -10
"""Pods with a priority below this never trigger scale-up (cluster-autoscaler's default)."""
DEFAULT_CHAIN: Final = ExpanderChain.parse()
MILLI: Final = 1000
GIB: Final = 2**30

# Pod outcome statuses.
SCHEDULER_GRACE_SECONDS: Final = 60.0
"""How long a pending pod that fits a Ready node waits for the scheduler before it may order a node:
binding a burst takes seconds (tens on loaded cores); a pod still unbound after this is kept off that
node by something our simulation does not see, and waiting longer would never end."""

SCHEDULABLE: Final = "WaitsForScheduler"
"""Fits in the free capacity of an existing Ready node; waits for the scheduler to bind it."""
IN_FLIGHT: Final = "InFlight"
"""Fits on a node already being created; waits for it."""
TRIGGERED: Final = "TriggeredScaleUp"
NOT_TRIGGERED: Final = "NotTriggerScaleUp"
IGNORED: Final = "Ignored"


@dataclass(frozen=True, slots=True)
class ClusterLimits:
    """Cluster-wide limits (0 = no limit), as ``MAX_NODES_TOTAL`` / ``MAX_CORES_TOTAL`` /
    ``MAX_MEMORY_TOTAL_GIB`` configure them (cluster-autoscaler ``--max-nodes-total`` & co)."""

    max_nodes: int = 0
    max_cores: int = 0
    max_memory_gib: int = 0


@dataclass(frozen=True, slots=True)
class ClusterUsage:
    """What the cluster already has, counted against :class:`ClusterLimits` (capacity, not
    allocatable, like cluster-autoscaler). Nodes being deleted still count: they still exist."""

    nodes: int = 0
    cpu_milli: int = 0
    memory_bytes: int = 0

    @classmethod
    def from_nodes(cls, nodes: Sequence[NodeInfo]) -> ClusterUsage:
        """Sum over every node, including virtual nodes for in-flight VPSieNodes without a Node."""
        return cls(
            len(nodes),
            sum(n.capacity[CPU] for n in nodes),
            sum(n.capacity[MEMORY] for n in nodes),
        )


@dataclass(frozen=True, slots=True)
class NodeRun:
    """``count`` planned identical new nodes, each holding ``pods_per_node`` of these pods."""

    count: int
    pods_per_node: tuple[tuple[PodInfo, int], ...]
    """(representative pod of an equivalence class, how many of that class per node)."""
    plan: PlanShape | None = None
    """The plan of these nodes in a flexible group (None: the group's only plan)."""


@dataclass(frozen=True, slots=True)
class GroupIncrease:
    """Grow ``group`` from ``from_size`` by ``nodes``."""

    group: str
    nodes: int
    from_size: int
    pods: tuple[PodInfo, ...]
    runs: tuple[NodeRun, ...]
    expander_trail: tuple[str, ...]
    limited_by: Reason | None = None
    """Set when a limit kept the increase smaller than the pods wanted (some pods left pending)."""
    headroom_pods: int = 0
    """Virtual headroom pods the new nodes hold (not in ``pods``)."""
    plan_choice: str = ""
    """For a flexible group: the plans chosen (``"2 x 2cpu + 1 x 8cpu"``) and how."""

    def plan_counts(self) -> dict[str, int]:
        """New nodes per plan name (flexible groups; empty otherwise)."""
        out: dict[str, int] = {}
        for run in self.runs:
            if run.plan is not None:
                out[run.plan.name] = out.get(run.plan.name, 0) + run.count
        return out

    @property
    def to_size(self) -> int:
        return self.from_size + self.nodes

    @property
    def message(self) -> str:
        """The ``ScaledUp`` Event note and the group's ``lastDecision``."""
        text = (
            f"scale-up {self.group}: {self.from_size} -> {self.to_size} "
            f"(+{self.nodes}) for {len(self.pods)} pending pod(s)"
        )
        if self.headroom_pods:
            text += f" and headroom ({self.headroom_pods} virtual pod(s))"
        if self.plan_choice:
            text += f"; plans: {self.plan_choice}"
        if self.expander_trail:
            text += f"; chosen by {'; '.join(self.expander_trail)}"
        if self.limited_by is not None:
            text += f"; limited: {self.limited_by}"
        return text


@dataclass(frozen=True, slots=True)
class PodOutcome:
    """What the plan means for one pod."""

    pod: PodInfo
    status: str
    group: str | None = None
    node: str | None = None
    reasons: Mapping[str, Reason] = field(default_factory=dict)
    """Per group: why it was not used for this pod (for NotTriggerScaleUp; informational otherwise)."""
    reason: Reason | None = None
    """For Ignored pods: why."""

    @property
    def unmodelled(self) -> tuple[str, ...]:
        return self.pod.unmodelled

    @property
    def message(self) -> str:
        """The pod Event note (``TriggeredScaleUp`` / ``NotTriggerScaleUp``)."""
        if self.status == TRIGGERED:
            text = f"pod triggered scale-up of NodeGroup {self.group}"
        elif self.status == IN_FLIGHT:
            text = f"pod waits for node {self.node}, already being created"
        elif self.status == SCHEDULABLE:
            text = f"pod fits on Ready node {self.node}; waits for the scheduler to bind it"
        elif self.status == IGNORED:
            text = f"pod ignored: {self.reason}"
        else:
            parts = [f"{g}: {r}" for g, r in sorted(self.reasons.items())] or ["no NodeGroups"]
            text = "pod didn't trigger scale-up: " + "; ".join(parts)
        if self.pod.unmodelled:
            text += f" (not modelled, assumed satisfied: {', '.join(self.pod.unmodelled)})"
        return text


@dataclass(frozen=True, slots=True)
class ScaleUpPlan:
    """The result of :func:`plan_scale_up`."""

    increases: tuple[GroupIncrease, ...]
    pods: tuple[PodOutcome, ...]

    def increase_for(self, group: str) -> GroupIncrease | None:
        return next((i for i in self.increases if i.group == group), None)

    def outcome(self, pod_key: str) -> PodOutcome:
        """The outcome of pod ``namespace/name`` (KeyError when it was not an input)."""
        for o in self.pods:
            if o.pod.key == pod_key:
                return o
        raise KeyError(pod_key)

    def by_status(self, status: str) -> tuple[PodOutcome, ...]:
        return tuple(o for o in self.pods if o.status == status)


@dataclass(slots=True)
class _Class:
    index: int
    pods: list[PodInfo]
    rep: PodInfo
    remaining: int = 0
    assigned: int = 0  # pods of the class already given an outcome (in order)


def _classes(pods: Sequence[PodInfo], extra_pods: Sequence[PodInfo]) -> list[_Class]:
    label_keys: frozenset[str] = frozenset()
    for pod in (*pods, *extra_pods):
        for term in pod.anti_affinity:
            label_keys |= term.selector.keys()
    by_key: dict[object, _Class] = {}
    for pod in pods:
        key = pod.scheduling_key(label_keys)
        cls = by_key.get(key)
        if cls is None:
            cls = by_key[key] = _Class(len(by_key), [], pod)
        cls.pods.append(pod)
    for cls in by_key.values():
        cls.remaining = len(cls.pods)
    return list(by_key.values())


def _conflicts(classes: Sequence[_Class]) -> dict[int, frozenset[int]]:
    involved = [c for c in classes if c.rep.anti_affinity or c.rep.host_ports]
    out: dict[int, set[int]] = {}
    for a in involved:
        for b in classes:
            if pods_conflict(a.rep, b.rep):
                out.setdefault(a.index, set()).add(b.index)
                out.setdefault(b.index, set()).add(a.index)
    return {k: frozenset(v) for k, v in out.items()}


def _waited_too_long(pod: PodInfo, held_since: datetime | None) -> bool:
    return held_since is not None and pod.created is not None and pod.created < held_since


def _fit_in_flight(
    classes: Sequence[_Class],
    in_flight: Sequence[NodeInfo],
    conflicts: Mapping[int, frozenset[int]],
    *,
    existing: bool = False,
    held_since: datetime | None = None,
) -> dict[int, list[tuple[str, int]]]:
    """Place classes on in-flight nodes (largest first); returns class → [(node, pods)].

    ``existing``: the nodes are Ready ones the scheduler already sees; a pod with a constraint we do
    not model is not placed there (were that constraint what keeps it off them, it would wait forever),
    nor a class with a pod created before ``held_since``: the scheduler has had time to bind it and
    has not, so its verdict wins over our simulation (a bound on waiting, whatever our model misses).
    """
    sims = [SimNode(n) for n in in_flight if not n.deleting]
    out: dict[int, list[tuple[str, int]]] = {}
    if not sims:
        return out
    order = sorted(
        (
            c
            for c in classes
            # headroom counted these nodes already
            if c.remaining > 0
            and not is_headroom_pod(c.rep)
            and not (existing and (c.rep.unmodelled or any(_waited_too_long(p, held_since) for p in c.pods)))
        ),
        key=lambda c: (-c.rep.requests[CPU], -c.rep.requests[MEMORY], c.index),
    )
    for cls in order:
        rep = cls.rep
        self_conflict = cls.index in conflicts.get(cls.index, frozenset())
        for sim in sims:
            if cls.remaining == 0:
                break
            if sim.check(rep) is not None:
                continue
            k = sim.free.count_fitting(rep.requests)
            if k < 0:  # requests nothing at all: not limited by resources
                k = cls.remaining
            if self_conflict:
                k = min(k, 1)
            n = min(k, cls.remaining)
            sim.place(rep, n)
            cls.remaining -= n
            out.setdefault(cls.index, []).append((sim.name, n))
    return out


def _group_block(group: GroupTemplate, now: datetime) -> Reason | None:
    if not group.scale_up_enabled:
        return Reason(SCALE_UP_DISABLED, "scale-up is disabled for this NodeGroup")
    if group.backoff_until is not None and group.backoff_until > now:
        detail = f": {group.backoff_reason}" if group.backoff_reason else ""
        return Reason(GROUP_IN_BACKOFF, f"backing off until {group.backoff_until.isoformat()}{detail}")
    if group.headroom == 0:
        return Reason(GROUP_AT_MAX_SIZE, f"at max size {group.max_nodes}")
    return None


@dataclass(slots=True)
class _Budget:
    """Remaining cluster-wide room; ``None`` = unlimited."""

    nodes: int | None
    cpu_milli: int | None
    memory_bytes: int | None

    def node_cap(self, group: GroupTemplate, per_node: Resources | None = None) -> tuple[int, Reason]:
        """How many nodes of ``group`` fit, and which limit binds when it is the cluster's."""
        cap, why = group.headroom, Reason(GROUP_AT_MAX_SIZE, f"at max size {group.max_nodes}")
        per_node = per_node or group.capacity or group.allocatable
        checks = (
            (self.nodes, 1, CLUSTER_MAX_NODES, "cluster-wide max nodes reached"),
            (self.cpu_milli, per_node[CPU], CLUSTER_MAX_CORES, "cluster-wide max cores reached"),
            (self.memory_bytes, per_node[MEMORY], CLUSTER_MAX_MEMORY, "cluster-wide max memory reached"),
        )
        for room, unit, code, text in checks:
            if room is None or unit <= 0:
                continue
            n = max(0, room // unit)
            if n < cap:
                cap, why = n, Reason(code, text)
        return cap, why

    def consume(self, group: GroupTemplate, nodes: int, total: Resources | None = None) -> None:
        """Take ``nodes`` new nodes of ``group`` (``total``: their summed capacity, flexible groups)."""
        spent = total if total is not None else (group.capacity or group.allocatable).scaled(nodes)
        if self.nodes is not None:
            self.nodes -= nodes
        if self.cpu_milli is not None:
            self.cpu_milli -= spent[CPU]
        if self.memory_bytes is not None:
            self.memory_bytes -= spent[MEMORY]

    def room(self, group: GroupTemplate) -> Room:
        """The room of a flexible group: its ``maxNodes`` and the cluster's limits."""
        nodes = group.headroom if self.nodes is None else min(group.headroom, self.nodes)
        return Room(nodes, self.cpu_milli, self.memory_bytes)


def _budget(limits: ClusterLimits, usage: ClusterUsage) -> _Budget:
    return _Budget(
        limits.max_nodes - usage.nodes if limits.max_nodes > 0 else None,
        limits.max_cores * MILLI - usage.cpu_milli if limits.max_cores > 0 else None,
        limits.max_memory_gib * GIB - usage.memory_bytes if limits.max_memory_gib > 0 else None,
    )


def plan_scale_up(
    pending_pods: Sequence[PodInfo],
    groups: Sequence[GroupTemplate],
    *,
    in_flight_nodes: Sequence[NodeInfo] = (),
    ready_nodes: Sequence[NodeInfo] = (),
    limits: ClusterLimits = ClusterLimits(),
    expanders: ExpanderChain = DEFAULT_CHAIN,
    rng: random.Random | None = None,
    now: datetime,
    usage: ClusterUsage = ClusterUsage(),
    headroom_pods: Sequence[PodInfo] = (),
) -> ScaleUpPlan:
    """Plan the scale-up for ``pending_pods`` (unschedulable pods, as the scheduler reported them).

    ``in_flight_nodes``: nodes on the way (Nodes not Ready yet of our groups, and virtual nodes from
    :meth:`GroupTemplate.virtual_node` for VPSieNodes without a Node). ``ready_nodes``: the other
    Ready nodes (any owner) with their bound pods: pending pods that fit their free capacity wait for
    the scheduler (:data:`SCHEDULABLE`) and trigger nothing. ``usage``: what already counts
    against ``limits``. ``now``: for back-off. ``rng``: tie-breaks (seeded; None = by name).
    ``headroom_pods``: :func:`~vpsie_autoscaler.scaling.headroom.unmet` of the groups with headroom;
    they grow their group like pending pods and get no outcome of their own.
    """
    outcomes: dict[int, PodOutcome] = {}
    candidates: list[PodInfo] = []
    real_pods = len(pending_pods)
    pending_pods = [*pending_pods, *headroom_pods]
    for i, pod in enumerate(pending_pods):
        if pod.priority < EXPENDABLE_PRIORITY_CUTOFF:
            outcomes[i] = PodOutcome(
                pod, IGNORED, reason=Reason(EXPENDABLE_POD, f"priority {pod.priority} is below the cutoff")
            )
        elif pod.is_daemonset:
            outcomes[i] = PodOutcome(
                pod, IGNORED, reason=Reason(DAEMONSET_POD, "DaemonSet pods are placed by their controller")
            )
        else:
            candidates.append(pod)
    in_flight_pods = [p for n in in_flight_nodes for p in n.pods]
    classes = _classes(candidates, in_flight_pods)
    conflicts = _conflicts(classes)
    held_since = now - timedelta(seconds=SCHEDULER_GRACE_SECONDS)
    ready_places = _fit_in_flight(classes, ready_nodes, conflicts, existing=True, held_since=held_since)
    in_flight_places = _fit_in_flight(classes, in_flight_nodes, conflicts)

    # Per group: block reason, or per-class template verdicts.
    group_block: dict[str, Reason] = {}
    class_reason: dict[tuple[str, int], Reason] = {}
    eligible: dict[str, list[_Class]] = {}
    plan_allowed: dict[tuple[str, int], frozenset[str]] = {}
    for group in groups:
        block = _group_block(group, now)
        if block is not None:
            group_block[group.name] = block
            continue
        template = group.virtual_node()
        ok: list[_Class] = []
        for cls in classes:
            if cls.remaining == 0:
                continue
            if group.plans:
                names = allowed_plans(cls.rep, group, group.plans)
                plan_allowed[(group.name, cls.index)] = names
                reason = None if names else _no_plan_reason(cls.rep, group)
            else:
                reason = check(cls.rep, template)
            if reason is None:
                ok.append(cls)
            else:
                class_reason[(group.name, cls.index)] = reason
        eligible[group.name] = ok

    budget = _budget(limits, usage)
    by_name = {g.name: g for g in groups}
    chosen: dict[str, tuple[GroupIncrease, PackResult]] = {}
    limited: dict[str, Reason] = {}
    choices: dict[str, PlanChoice] = {}
    cache: dict[tuple[str, int, tuple[tuple[int, int], ...]], PackResult] = {}
    while True:
        options: list[Option] = []
        packs: dict[str, PackResult] = {}
        caps: dict[str, Reason | None] = {}
        for name, group_classes in eligible.items():
            if name in chosen:
                continue
            live = [c for c in group_classes if c.remaining > 0]
            if not live:
                continue
            group = by_name[name]
            choice: PlanChoice | None = None
            if group.plans:
                cap, why = budget.node_cap(group, min(group.plans, key=PlanShape.size_key).per_node)
                if cap <= 0:
                    limited[name] = why
                    continue
                choice = choose_plans(
                    [PackItem(c.index, c.rep.requests, c.remaining) for c in live],
                    group.plans,
                    conflicts,
                    budget.room(group),
                    {c.index: plan_allowed[(name, c.index)] for c in live},
                )
                if choice is None:
                    continue
                result = choice.result
                choices[name] = choice
                if choice.limited:
                    cap, why = min((budget.node_cap(group, p.per_node) for p in choice.run_plans), key=_first)
            else:
                cap, why = budget.node_cap(group)
                if cap <= 0:
                    limited[name] = why
                    continue
                key = (name, cap, tuple((c.index, c.remaining) for c in live))
                cached = cache.get(key)
                if cached is None:
                    items = [PackItem(c.index, c.rep.requests, c.remaining) for c in live]
                    cached = cache[key] = pack(items, group.allocatable, conflicts, cap)
                result = cached
            if result.nodes == 0:
                continue
            requested = EMPTY
            placed_pods = 0
            for cls in live:
                n = result.placed.get(cls.index, 0)
                if n:
                    requested = requested + cls.rep.requests.scaled(n)
                    placed_pods += n
            wanted = sum(c.remaining for c in live)
            hit_limit = choice.limited if choice is not None else result.nodes >= cap
            caps[name] = why if placed_pods < wanted and hit_limit else None
            packs[name] = result
            node_allocatable, price = group.allocatable, group.hourly_price
            if choice is not None:  # the expanders compare per-node averages of the mix
                total = choice.total(lambda p: p.allocatable)
                node_allocatable = Resources({k: v // result.nodes for k, v in total.items()})
                total_price = choice.hourly_price
                price = None if total_price is None else total_price / result.nodes
            options.append(
                Option(
                    name,
                    result.nodes,
                    placed_pods,
                    requested,
                    node_allocatable,
                    group.priority,
                    price,
                )
            )
        if not options:
            break
        winner, trail = expanders.choose(options, rng)
        group = by_name[winner.group]
        result = packs[winner.group]
        class_by_index = {c.index: c for c in classes}
        pods: list[PodInfo] = []
        for index, n in result.placed.items():
            cls = class_by_index[index]
            start = len(cls.pods) - cls.remaining
            pods.extend(cls.pods[start : start + n])
            cls.remaining -= n
        picked = choices.get(winner.group)
        run_plans: Sequence[PlanShape | None] = (
            picked.run_plans if picked is not None else [None] * len(result.runs)
        )
        runs = tuple(
            NodeRun(run.count, tuple((class_by_index[i].rep, k) for i, k in run.contents.items()), plan)
            for run, plan in zip(result.runs, run_plans, strict=True)
        )
        cap_reason = caps[winner.group]
        if cap_reason is not None:
            limited[winner.group] = cap_reason
        real = tuple(p for p in pods if not is_headroom_pod(p))
        increase = GroupIncrease(
            winner.group,
            result.nodes,
            group.size,
            real,
            runs,
            trail,
            cap_reason,
            headroom_pods=len(pods) - len(real),
            plan_choice=_plan_choice_text(picked) if picked is not None else "",
        )
        chosen[winner.group] = (increase, result)
        budget.consume(
            group, result.nodes, picked.total(lambda p: p.per_node) if picked is not None else None
        )

    # Outcomes, pod by pod, in each class's member order: on Ready nodes, in flight, then triggered,
    # then not.
    pod_status: dict[int, tuple[str, str | None, str | None]] = {}
    pod_ids = {id(p): i for i, p in enumerate(pending_pods)}
    for cls in classes:
        cursor = 0
        placed = [(SCHEDULABLE, place) for place in ready_places.get(cls.index, ())]
        placed += [(IN_FLIGHT, place) for place in in_flight_places.get(cls.index, ())]
        for status, (node, n) in placed:
            for pod in cls.pods[cursor : cursor + n]:
                pod_status[pod_ids[id(pod)]] = (status, None, node)
            cursor += n
    for increase, _ in chosen.values():
        for pod in increase.pods:
            pod_status[pod_ids[id(pod)]] = (TRIGGERED, increase.group, None)
    for i in range(real_pods, len(pending_pods)):
        outcomes[i] = PodOutcome(pending_pods[i], IGNORED)  # virtual: no outcome is reported

    class_of: dict[int, _Class] = {}
    for cls in classes:
        for pod in cls.pods:
            class_of[pod_ids[id(pod)]] = cls
    reasons_cache: dict[int, dict[str, Reason]] = {}
    for i, pod in enumerate(pending_pods):
        if i in outcomes:
            continue
        cls = class_of[i]
        reasons = reasons_cache.get(cls.index)
        if reasons is None:
            reasons = reasons_cache[cls.index] = _reasons_for(
                cls,
                groups=groups,
                group_block=group_block,
                class_reason=class_reason,
                limited=limited,
                chosen=chosen,
            )
        status, group_name, node_name = pod_status.get(i, (NOT_TRIGGERED, None, None))
        outcomes[i] = PodOutcome(pod, status, group_name, node_name, reasons)

    increases = tuple(inc for inc, _ in chosen.values())
    return ScaleUpPlan(increases, tuple(outcomes[i] for i in range(real_pods)))


def _first(cap_and_reason: tuple[int, Reason]) -> int:
    return cap_and_reason[0]


def _no_plan_reason(pod: PodInfo, group: GroupTemplate) -> Reason:
    """The verdict of the group's largest plan, for a pod that no allowed plan holds."""
    big = biggest(group.plans)
    verdict = check(pod, plan_node(group, big)) or Reason(NO_GROUPS, "refused by every allowed plan")
    alloc = ", ".join(f"{k} {format_units(k, big.allocatable[k])}" for k in (CPU, MEMORY))
    return Reason(
        verdict.code,
        f"no allowed plan holds it; largest plan {big.instance_type} "
        f"(allocatable {alloc}): {verdict.message}",
        detail=verdict.detail,
    )


def _plan_choice_text(choice: PlanChoice) -> str:
    text = describe(choice)
    price = choice.hourly_price
    if price is not None:
        text += f" at {price:.4f}/h"
    return text + (" (cheapest single plan)" if choice.strategy == "single" else " (cheapest mix of plans)")


def _reasons_for(
    cls: _Class,
    *,
    groups: Sequence[GroupTemplate],
    group_block: Mapping[str, Reason],
    class_reason: Mapping[tuple[str, int], Reason],
    limited: Mapping[str, Reason],
    chosen: Mapping[str, tuple[GroupIncrease, PackResult]],
) -> dict[str, Reason]:
    """Why each group did not (fully) serve this class."""
    if not groups:
        return {"": Reason(NO_GROUPS, "no NodeGroups are configured")}
    out: dict[str, Reason] = {}
    for group in groups:
        name = group.name
        if name in group_block:
            out[name] = group_block[name]
        elif (name, cls.index) in class_reason:
            out[name] = class_reason[(name, cls.index)]
        elif name in limited:
            out[name] = limited[name]
        elif name not in chosen:
            out[name] = Reason(NOT_CHOSEN, "another NodeGroup was chosen for these pods")
    return out
