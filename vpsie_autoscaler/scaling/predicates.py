"""Scheduling predicates: can this pod run on this node (or on a node of this template)?

Each predicate is a pure function ``(pod, node) -> Reason | None`` named after the kube-scheduler
Filter plugin it reproduces (NodeUnschedulable, NodeAffinity, TaintToleration, NodeResourcesFit,
NodePorts, InterPodAffinity for hostname anti-affinity). :data:`PREDICATES` is the chain in
cheap-first order; the first failure is the reason (cert-manager's policy-chain shape).

Static predicates depend only on the node's labels, taints and schedulability, so the planners can
evaluate them once per (equivalence group, node template).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from vpsie_autoscaler.scaling.reasons import (
    ANTI_AFFINITY_CONFLICT,
    HOST_PORT_CONFLICT,
    INSUFFICIENT_RESOURCE,
    NODE_AFFINITY_MISMATCH,
    NODE_SELECTOR_MISMATCH,
    NODE_UNSCHEDULABLE,
    TAINT_NOT_TOLERATED,
    TOO_MANY_PODS,
    Reason,
)
from vpsie_autoscaler.scaling.resources import PODS, Resources, format_units
from vpsie_autoscaler.scaling.scheduling_facts import HostPort, PodInfo, ports_conflict
from vpsie_autoscaler.scaling.selectors import NO_SCHEDULE, Taint, node_affinity_matches, untolerated_taint

UNSCHEDULABLE_TAINT: Final = Taint("node.kubernetes.io/unschedulable", "", NO_SCHEDULE)
"""What a cordoned node looks like to tolerations (the scheduler's NodeUnschedulable plugin)."""


class NodeView(Protocol):
    """What a predicate reads from a node: a real node, a simulated one or a group template."""

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def taints(self) -> Sequence[Taint]: ...
    @property
    def unschedulable(self) -> bool: ...
    @property
    def free(self) -> Resources: ...
    @property
    def host_ports(self) -> Sequence[HostPort]: ...
    @property
    def pods(self) -> Sequence[PodInfo]: ...


Predicate = Callable[[PodInfo, NodeView], Reason | None]


def node_unschedulable(pod: PodInfo, node: NodeView) -> Reason | None:
    """A cordoned node takes no new pods unless they tolerate ``node.kubernetes.io/unschedulable``."""
    if node.unschedulable and untolerated_taint((UNSCHEDULABLE_TAINT,), pod.tolerations) is not None:
        return Reason(NODE_UNSCHEDULABLE, f"node {node.name} is cordoned")
    return None


def node_selector(pod: PodInfo, node: NodeView) -> Reason | None:
    labels = node.labels
    for key, value in pod.node_selector:
        if labels.get(key) != value:
            have = labels.get(key)
            got = "missing" if have is None else f"is {have!r}"
            return Reason(NODE_SELECTOR_MISMATCH, f"nodeSelector {key}={value}: node label {got}")
    return None


def node_affinity(pod: PodInfo, node: NodeView) -> Reason | None:
    if node_affinity_matches(pod.affinity_terms, node.labels, node.name):
        return None
    return Reason(NODE_AFFINITY_MISMATCH, "no required node affinity term matches the node labels")


def taints(pod: PodInfo, node: NodeView) -> Reason | None:
    taint = untolerated_taint(node.taints, pod.tolerations)
    if taint is None:
        return None
    return Reason(TAINT_NOT_TOLERATED, f"taint {taint} is not tolerated")


def resources(pod: PodInfo, node: NodeView) -> Reason | None:
    free = node.free
    short = free.shortage(pod.requests)
    if short is None:
        return None
    need, have = pod.requests[short], free[short]
    if short == PODS:
        return Reason(TOO_MANY_PODS, f"node has room for {have} more pods", detail=short)
    return Reason(
        INSUFFICIENT_RESOURCE,
        f"insufficient {short}: requests {format_units(short, need)}, free {format_units(short, have)}",
        detail=short,
    )


def host_ports(pod: PodInfo, node: NodeView) -> Reason | None:
    if not pod.host_ports:
        return None
    port = ports_conflict(pod.host_ports, node.host_ports)
    if port is None:
        return None
    return Reason(HOST_PORT_CONFLICT, f"host port {port} is already in use on the node")


def anti_affinity(pod: PodInfo, node: NodeView) -> Reason | None:
    """Required hostname anti-affinity, both ways (the incoming pod's terms and the residents')."""
    for other in node.pods:
        for term in pod.anti_affinity:
            if term.selects(other.namespace, other.labels):
                return Reason(ANTI_AFFINITY_CONFLICT, f"anti-affinity with pod {other.key} on the node")
        for term in other.anti_affinity:
            if term.selects(pod.namespace, pod.labels):
                return Reason(
                    ANTI_AFFINITY_CONFLICT, f"pod {other.key} on the node has anti-affinity with it"
                )
    return None


STATIC_PREDICATES: Final[tuple[Predicate, ...]] = (node_unschedulable, node_selector, node_affinity, taints)
"""Depend on the node's labels, taints and cordon only."""
DYNAMIC_PREDICATES: Final[tuple[Predicate, ...]] = (resources, host_ports, anti_affinity)
"""Depend on what is already on the node."""
PREDICATES: Final[tuple[Predicate, ...]] = STATIC_PREDICATES + DYNAMIC_PREDICATES


def check(pod: PodInfo, node: NodeView, predicates: Sequence[Predicate] = PREDICATES) -> Reason | None:
    """The first predicate that fails, or None when the pod fits the node."""
    for predicate in predicates:
        reason = predicate(pod, node)
        if reason is not None:
            return reason
    return None


def pods_conflict(a: PodInfo, b: PodInfo) -> bool:
    """Whether two pods may not share a node (host ports or hostname anti-affinity, either way)."""
    if a.host_ports and b.host_ports and ports_conflict(a.host_ports, b.host_ports) is not None:
        return True
    if any(t.selects(b.namespace, b.labels) for t in a.anti_affinity):
        return True
    return any(t.selects(a.namespace, a.labels) for t in b.anti_affinity)
