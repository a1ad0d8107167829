"""Flexible NodeGroups: which of the plans a group allows each batch of pending pods gets.

A NodeGroup may allow several VPSie plans instead of one: a list of sizes, or requirements (cpu and
memory ranges, categories) that :func:`resolve_requirements` turns into the matching plans of the
catalogue. Karpenter's NodePool does the same with instance-type requirements and launches the
cheapest type that fits the pods it packs (``pkg/controllers/provisioning/scheduling``);
cluster-autoscaler's node auto-provisioning (NAP) creates one node group per machine type instead.
Here the choice is made inside one NodeGroup, per planning pass:

1. **Single plan.** For each allowed plan, the pods that fit one of its empty nodes are packed onto
   it (FFD, :func:`~vpsie_autoscaler.scaling.binpack.pack`).
2. **Mix.** Each equivalence class goes to the plan on which it alone costs least (an 8-cpu pod to
   the 8-cpu plan, small pods to small nodes), then every plan's classes are packed together.

The candidate that places the most pods wins; then the cheapest (sum of hourly prices; plans without
a price count by capacity, after priced ones); then the fewest nodes; then plan names, so a plan is
reproducible. Every candidate is packed within the same :class:`Room` (``maxNodes`` of the group, the
cluster-wide node, core and memory limits, counted with each plan's own capacity), so a choice never
goes above a limit whatever plans it mixes.

Pure: the controllers build :class:`PlanShape` values from the catalogue; the scale-up planner
(:mod:`~vpsie_autoscaler.scaling.scaleup`) calls :func:`choose_plans` for groups that allow plans.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from vpsie_autoscaler.api.labels import HOSTNAME_LABEL
from vpsie_autoscaler.scaling.binpack import PackItem, PackResult, Run, pack
from vpsie_autoscaler.scaling.predicates import check
from vpsie_autoscaler.scaling.resources import CPU, EMPTY, MEMORY, Resources
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo

if TYPE_CHECKING:
    from vpsie_autoscaler.scaling.groups import GroupTemplate

INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"
"""Nodes carry their plan's name here (the VPSie simulator and VPSie's kubelets set it), so a pod's
``nodeSelector`` on it restricts the plans it may get."""
GIB: Final = 2**30
MILLI: Final = 1000


@dataclass(frozen=True, slots=True)
class PlanShape:
    """One plan a flexible group may use: what its node offers pods, what it costs.

    ``name`` is what the create call needs (the VM plan's ``resourceIdentifier``, or the managed
    Kubernetes size id as a string); ``label`` is the plan's name for people and for the
    ``node.kubernetes.io/instance-type`` label (``name`` when empty).
    """

    name: str
    allocatable: Resources
    capacity: Resources = EMPTY
    hourly_price: float | None = None
    label: str = ""
    category: str = ""

    @property
    def instance_type(self) -> str:
        return self.label or self.name

    @property
    def per_node(self) -> Resources:
        """What one node counts against the cluster-wide limits (capacity, like cluster-autoscaler)."""
        return self.capacity or self.allocatable

    def size_key(self) -> tuple[int, int, str]:
        """Order by size: cpu, then memory, then name (the "biggest plan" is the last)."""
        return (self.allocatable[CPU], self.allocatable[MEMORY], self.name)


@dataclass(frozen=True, slots=True)
class PlanRequirements:
    """``spec.plans.requirements`` parsed: inclusive cpu (milli) and memory (bytes) ranges of the
    plan's capacity, and the allowed categories (empty: any)."""

    min_cpu: int = 0
    max_cpu: int | None = None
    min_memory: int = 0
    max_memory: int | None = None
    categories: frozenset[str] = frozenset()

    def admits(self, plan: PlanShape) -> bool:
        cap = plan.per_node
        if cap[CPU] < self.min_cpu or (self.max_cpu is not None and cap[CPU] > self.max_cpu):
            return False
        if cap[MEMORY] < self.min_memory or (self.max_memory is not None and cap[MEMORY] > self.max_memory):
            return False
        return not self.categories or plan.category in self.categories


def resolve_requirements(
    requirements: PlanRequirements, catalogue: Sequence[PlanShape]
) -> tuple[PlanShape, ...]:
    """The catalogue's plans that meet ``requirements``, smallest first."""
    return tuple(sorted((p for p in catalogue if requirements.admits(p)), key=PlanShape.size_key))


def plan_node(group: GroupTemplate, plan: PlanShape, name: str | None = None) -> NodeInfo:
    """A node of ``group`` on ``plan`` that does not exist yet (the template with that plan's shape
    and instance-type label)."""
    node_name = name or f"template-{group.name}-{plan.name}"
    labels = group.node_labels()
    labels.setdefault(HOSTNAME_LABEL, node_name)
    labels.setdefault(INSTANCE_TYPE_LABEL, plan.instance_type)
    return NodeInfo.build(
        node_name,
        labels=labels,
        taints=group.taints,
        allocatable=plan.allocatable,
        capacity=plan.per_node,
        pods=(),
    )


def biggest(plans: Sequence[PlanShape]) -> PlanShape:
    """The plan named in "fits no allowed plan" messages: the largest by cpu, then memory."""
    return max(plans, key=PlanShape.size_key)


@dataclass(slots=True)
class Room:
    """What a group may still add in this pass: nodes (``maxNodes`` and the cluster's node limit)
    and the cluster-wide cores and memory left (``None`` = unlimited)."""

    nodes: int
    cpu_milli: int | None = None
    memory_bytes: int | None = None

    def cap(self, plan: PlanShape) -> int:
        """How many nodes of ``plan`` still fit."""
        cap = max(0, self.nodes)
        per_node = plan.per_node
        for room, unit in ((self.cpu_milli, per_node[CPU]), (self.memory_bytes, per_node[MEMORY])):
            if room is not None and unit > 0:
                cap = min(cap, max(0, room // unit))
        return cap

    def take(self, plan: PlanShape, nodes: int) -> None:
        self.nodes -= nodes
        if self.cpu_milli is not None:
            self.cpu_milli -= plan.per_node[CPU] * nodes
        if self.memory_bytes is not None:
            self.memory_bytes -= plan.per_node[MEMORY] * nodes

    def copy(self) -> Room:
        return Room(self.nodes, self.cpu_milli, self.memory_bytes)


@dataclass(frozen=True, slots=True)
class PlanChoice:
    """The chosen packing: runs of identical nodes, each on one plan."""

    result: PackResult
    """All runs together (``nodes``, ``runs``, ``placed`` as for a single-plan group)."""
    run_plans: tuple[PlanShape, ...]
    """The plan of each run of ``result.runs``, in the same order."""
    limited: bool
    """A limit (:class:`Room`) stopped a packing before every pod was placed."""
    strategy: str
    """``"single"`` or ``"mix"``, for the decision text."""

    @property
    def placed_pods(self) -> int:
        return sum(self.result.placed.values())

    @property
    def hourly_price(self) -> float | None:
        """Total price of the new nodes per hour; None when a plan has no price."""
        total = 0.0
        for run, plan in zip(self.result.runs, self.run_plans, strict=True):
            if plan.hourly_price is None:
                return None
            total += plan.hourly_price * run.count
        return total

    def total(self, attr: Callable[[PlanShape], Resources]) -> Resources:
        out = EMPTY
        for run, plan in zip(self.result.runs, self.run_plans, strict=True):
            out = out + attr(plan).scaled(run.count)
        return out

    def counts(self) -> dict[str, int]:
        """New nodes per plan name."""
        out: dict[str, int] = {}
        for run, plan in zip(self.result.runs, self.run_plans, strict=True):
            out[plan.name] = out.get(plan.name, 0) + run.count
        return out

    def cost_key(self) -> tuple[float, int, int, int]:
        price = self.hourly_price
        capacity = self.total(lambda p: p.per_node)
        return (
            math.inf if price is None else price,
            capacity[CPU],
            capacity[MEMORY],
            self.result.nodes,
        )


def _fits_empty(item: PackItem, plan: PlanShape, allowed: Mapping[int, frozenset[str]] | None) -> bool:
    if allowed is not None and plan.name not in allowed.get(item.index, frozenset()):
        return False
    return plan.allocatable.fits(item.requests)


def _combine(parts: Sequence[tuple[PlanShape, PackResult]], limited: bool, strategy: str) -> PlanChoice:
    runs: list[Run] = []
    run_plans: list[PlanShape] = []
    placed: dict[int, int] = {}
    nodes = 0
    for plan, result in parts:
        for run in result.runs:
            runs.append(run)
            run_plans.append(plan)
        for index, n in result.placed.items():
            placed[index] = placed.get(index, 0) + n
        nodes += result.nodes
    return PlanChoice(PackResult(nodes, tuple(runs), placed), tuple(run_plans), limited, strategy)


def _pack_on(
    items: Sequence[PackItem], plan: PlanShape, conflicts: Mapping[int, frozenset[int]], room: Room
) -> tuple[PackResult, bool]:
    """Pack ``items`` on ``plan`` within ``room`` (taken from it); whether the room cut it short."""
    cap = room.cap(plan)
    result = pack(items, plan.allocatable, conflicts, cap)
    room.take(plan, result.nodes)
    short = sum(result.placed.values()) < sum(i.count for i in items)
    return result, short and result.nodes >= cap


def _alone_cost(
    item: PackItem, plan: PlanShape, conflicts: Mapping[int, frozenset[int]]
) -> tuple[float, ...]:
    """What ``item`` alone costs on ``plan`` (no limits): price, then capacity, then size."""
    result = pack([item], plan.allocatable, conflicts, item.count)
    price = math.inf if plan.hourly_price is None else plan.hourly_price * result.nodes
    cap = plan.per_node
    return (price, cap[CPU] * result.nodes, cap[MEMORY] * result.nodes, *plan.size_key()[:2])


def choose_plans(
    items: Sequence[PackItem],
    plans: Sequence[PlanShape],
    conflicts: Mapping[int, frozenset[int]],
    room: Room,
    allowed: Mapping[int, frozenset[str]] | None = None,
) -> PlanChoice | None:
    """The cheapest way to place the most of ``items`` on new nodes of ``plans`` within ``room``
    (see the module docstring). None when no pod can be placed (no plan holds any of them, or no
    room). ``room`` itself is not changed: the caller takes the chosen nodes from its budget.

    ``allowed``: per class index, the names of the plans whose node passes the class's predicates
    (a ``nodeSelector`` on the instance type); None: every plan its requests fit.
    """
    if not items or not plans:
        return None
    candidates: list[PlanChoice] = []
    for plan in sorted(plans, key=PlanShape.size_key):
        fitting = [it for it in items if _fits_empty(it, plan, allowed)]
        if not fitting:
            continue
        result, limited = _pack_on(fitting, plan, conflicts, room.copy())
        if result.nodes:
            candidates.append(_combine([(plan, result)], limited, "single"))
    if len(plans) > 1:
        buckets: dict[str, list[PackItem]] = {}
        by_name = {p.name: p for p in plans}
        for item in items:
            options = [p for p in plans if _fits_empty(item, p, allowed)]
            if options:
                best = min(options, key=lambda p: (_alone_cost(item, p, conflicts), p.name))
                buckets.setdefault(best.name, []).append(item)
        if len(buckets) > 1:
            mix_room = room.copy()
            parts: list[tuple[PlanShape, PackResult]] = []
            limited = False
            # Biggest plans first: their pods have nowhere else to go.
            for name in sorted(buckets, key=lambda n: by_name[n].size_key(), reverse=True):
                result, short = _pack_on(buckets[name], by_name[name], conflicts, mix_room)
                limited = limited or short
                if result.nodes:
                    parts.append((by_name[name], result))
            if parts:
                candidates.append(_combine(parts, limited, "mix"))
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda c: (-c.placed_pods, c.cost_key(), tuple(sorted(c.counts().items()))),
    )


def describe(choice: PlanChoice) -> str:
    """``"2 x plan-2cpu + 1 x plan-8cpu"`` for decision texts and Events."""
    labels = {p.name: p.instance_type for p in choice.run_plans}
    return " + ".join(f"{n} x {labels[name]}" for name, n in sorted(choice.counts().items()))


def allowed_plans(pod: PodInfo, group: GroupTemplate, plans: Sequence[PlanShape]) -> frozenset[str]:
    """Names of the plans of ``group`` whose empty node admits ``pod`` (every predicate we model)."""
    return frozenset(p.name for p in plans if check(pod, plan_node(group, p)) is None)
