"""``GroupTemplate``: a NodeGroup as the planners see it (shape, limits, counts, policy, state).

Built by the controllers from the NodeGroup object (:meth:`GroupTemplate.from_nodegroup`) plus what
only they know: the counts from VPSieNodes, the plan capacity from VPSie, the DaemonSet overhead.
Counting rules (:mod:`~vpsie_autoscaler.scaling.membership`):

- ``size``: nodes the group has or is creating, **excluding** those being drained or deleted;
- ``in_flight``: the part of ``size`` not yet Ready (VPSieNodes Pending/Provisioning/Joining);
- ``deleting``: nodes being drained or deleted; never capacity, but they use the disruption budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.labels import HOSTNAME_LABEL, NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import (
    CONDITION_BACKOFF,
    DEFAULT_DISRUPTION_BUDGET,
    DEFAULT_MAX_CONCURRENT_DRAINS,
    DEFAULT_UTILIZATION_THRESHOLD,
    NodeGroup,
)
from vpsie_autoscaler.scaling.headroom import NO_HEADROOM, Headroom
from vpsie_autoscaler.scaling.plans import PlanShape
from vpsie_autoscaler.scaling.predicates import STATIC_PREDICATES, check
from vpsie_autoscaler.scaling.resources import EMPTY, PODS, QuantityError, Resources, to_units
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.selectors import Taint
from vpsie_autoscaler.scaling.windows import DisruptionWindow

DEFAULT_MAX_PODS: Final = 110
"""The kubelet's default ``maxPods``, used when neither the template nor the plan says otherwise."""
TEMPLATE_NODE_PREFIX: Final = "template-"
_PERCENT_SUFFIX: Final = "%"


class TemplateError(ValueError):
    """The group's template cannot describe a node (e.g. capacity unknown)."""


@dataclass(frozen=True, slots=True)
class ScaleDownPolicy:
    """The group's scale-down knobs, parsed (durations as timedelta)."""

    enabled: bool = True
    utilization_threshold: float = DEFAULT_UTILIZATION_THRESHOLD
    unneeded_time: timedelta = timedelta(minutes=10)
    delay_after_scale_up: timedelta = timedelta(minutes=10)
    max_concurrent_drains: int = DEFAULT_MAX_CONCURRENT_DRAINS
    disruption_budget: int | str = DEFAULT_DISRUPTION_BUDGET
    windows: tuple[DisruptionWindow, ...] = ()
    """``spec.scaleDown.windows``: when set, nodes are removed only while one is open (UTC)."""


def budget_nodes(budget: int | str, size: int) -> int:
    """A disruption budget in nodes: counts as is, percentages of ``size`` rounded up (Karpenter)."""
    if isinstance(budget, int):
        return budget
    if not budget.endswith(_PERCENT_SUFFIX):
        raise ValueError(f"invalid disruption budget {budget!r}")
    return math.ceil(size * int(budget[:-1]) / 100)


@dataclass(frozen=True, slots=True, eq=False)
class GroupTemplate:
    """One NodeGroup for the planners."""

    name: str
    min_nodes: int
    max_nodes: int
    allocatable: Resources
    """Per-node allocatable for pods: capacity - reserved - DaemonSet overhead."""
    capacity: Resources = EMPTY
    """Per-node capacity (what cluster-wide core/memory limits count)."""
    size: int = 0
    in_flight: int = 0
    deleting: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    hourly_price: float | None = None
    priority: int = 0
    scale_up_enabled: bool = True
    backoff_until: datetime | None = None
    backoff_reason: str = ""
    last_scale_up_time: datetime | None = None
    scale_down: ScaleDownPolicy = ScaleDownPolicy()
    plans: tuple[PlanShape, ...] = ()
    """The plans a flexible group may use (:mod:`~vpsie_autoscaler.scaling.plans`); empty: every node
    is ``allocatable``. When set, ``allocatable`` and ``capacity`` describe the smallest plan."""
    spare: Headroom = NO_HEADROOM
    """``spec.headroom``: capacity kept free (:mod:`~vpsie_autoscaler.scaling.headroom`); not to be
    confused with :attr:`headroom`, the nodes the group may still add."""

    @property
    def headroom(self) -> int:
        """How many nodes the group may still add (never negative)."""
        return max(0, self.max_nodes - self.size)

    def node_labels(self) -> dict[str, str]:
        """Labels a new node of this group will carry (template labels plus our group label)."""
        return {**self.labels, NODEGROUP_LABEL: self.name}

    def virtual_node(self, name: str | None = None, pods: Sequence[PodInfo] = ()) -> NodeInfo:
        """A node that does not exist yet, as the template says it will look.

        Used for new nodes in the scale-up simulation and by the controllers for in-flight
        VPSieNodes whose Node has not registered (pass the VPSieNode's hostname as ``name``).
        """
        node_name = name or f"{TEMPLATE_NODE_PREFIX}{self.name}"
        labels = self.node_labels()
        labels.setdefault(HOSTNAME_LABEL, node_name)
        return NodeInfo.build(
            node_name,
            labels=labels,
            taints=self.taints,
            allocatable=self.allocatable,
            capacity=self.capacity or self.allocatable,
            pods=pods,
        )

    @classmethod
    def from_nodegroup(
        cls,
        ng: NodeGroup,
        *,
        size: int,
        in_flight: int = 0,
        deleting: int = 0,
        plan_capacity: Mapping[str, int | str] | None = None,
        plan_hourly_price: float | None = None,
        daemonset_pods: Sequence[PodInfo] = (),
    ) -> GroupTemplate:
        """From the NodeGroup object plus the counts and plan facts only the controllers know.

        Capacity: ``spec.template.resources`` entries win over ``plan_capacity`` (the VPSie plan);
        ``pods`` defaults to 110. Allocatable subtracts ``reserved`` and the requests of the
        ``daemonset_pods`` (pod templates of DaemonSets) that would run on such a node, as
        Karpenter counts DaemonSet overhead per NodePool. Raises :class:`TemplateError` when no
        cpu or memory capacity is known: then no pod can be fitted and the controller must say so.
        """
        spec = ng.spec
        template = spec.template
        problem = template_problem(ng)
        if problem is not None:
            raise TemplateError(f"NodeGroup {ng.metadata.name}: {problem}")
        try:
            plan = Resources.parse(dict(plan_capacity or {}))
        except QuantityError as exc:
            raise TemplateError(f"NodeGroup {ng.metadata.name}: plan capacity: {exc}") from exc
        capacity = Resources({**plan.as_dict(), **Resources.parse(dict(template.resources)).as_dict()})
        if PODS not in capacity:
            capacity = capacity + {PODS: DEFAULT_MAX_PODS}
        missing = [r for r in ("cpu", "memory") if r not in capacity]
        if missing:
            raise TemplateError(
                f"NodeGroup {ng.metadata.name}: capacity of {', '.join(missing)} unknown "
                "(set spec.template.resources or make the plan known)"
            )
        sd = spec.scale_down
        status = ng.status
        price = template.effective_hourly_price()
        backoff = status.condition(CONDITION_BACKOFF)
        base = cls(
            name=ng.metadata.name,
            min_nodes=spec.min_nodes,
            max_nodes=spec.max_nodes,
            allocatable=(capacity - Resources.parse(dict(template.reserved))).clamp_zero(),
            capacity=capacity,
            size=size,
            in_flight=in_flight,
            deleting=deleting,
            labels=dict(template.labels),
            taints=tuple(Taint(t.key, t.value or "", t.effect) for t in template.taints),
            hourly_price=price if price is not None else plan_hourly_price,
            priority=spec.scale_up.priority,
            scale_up_enabled=spec.scale_up.enabled,
            backoff_until=status.backoff_until,
            backoff_reason=backoff.message if backoff is not None else "",
            last_scale_up_time=status.last_scale_up_time,
            scale_down=ScaleDownPolicy(
                enabled=sd.enabled,
                utilization_threshold=sd.utilization_threshold,
                unneeded_time=sd.unneeded,
                delay_after_scale_up=sd.delay_after_up,
                max_concurrent_drains=sd.max_concurrent_drains,
                disruption_budget=sd.disruption_budget,
                windows=tuple(DisruptionWindow(w.schedule, parse_duration(w.duration)) for w in sd.windows),
            ),
        )
        overhead = daemonset_overhead(daemonset_pods, base)
        if not overhead:
            return base
        return GroupTemplate(
            **{
                **{f: getattr(base, f) for f in base.__dataclass_fields__},
                "allocatable": (base.allocatable - overhead).clamp_zero(),
            }
        )


def template_problem(ng: NodeGroup) -> str | None:
    """Why the quantities of ``spec.template`` (``resources``, ``reserved``) cannot be used, or None.

    Bounded work whatever the object holds (:func:`~vpsie_autoscaler.scaling.resources.parse_quantity`):
    a group stored before a schema rule existed must be reported, never crash a pass.
    """
    for field_name, raw in (
        ("resources", ng.spec.template.resources),
        ("reserved", ng.spec.template.reserved),
    ):
        for name, value in raw.items():
            try:
                to_units(name, value)
            except QuantityError as exc:
                return f"spec.template.{field_name}.{name}: {exc}"
    return None


def daemonset_overhead(daemonset_pods: Sequence[PodInfo], group: GroupTemplate) -> Resources:
    """Requests of the DaemonSet pods that would land on a node of ``group`` (they pass its static
    predicates: selector, node affinity, taints), including the pod slots they take."""
    node = group.virtual_node()
    total = EMPTY
    for pod in daemonset_pods:
        if check(pod, node, STATIC_PREDICATES) is None:
            total = total + pod.requests
    return total
