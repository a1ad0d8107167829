"""A mutable "what if" copy of nodes, for simulating where pods would go.

cluster-autoscaler forks its ``ClusterSnapshot`` to try moves; we copy the few fields the predicates
read into :class:`SimNode` (it satisfies :class:`~vpsie_autoscaler.scaling.predicates.NodeView`) and
place pods with the full predicate chain, so a simulated move is never one the scheduler would refuse
for a reason we model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vpsie_autoscaler.scaling.predicates import DYNAMIC_PREDICATES, STATIC_PREDICATES, check
from vpsie_autoscaler.scaling.reasons import Reason
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scheduling_facts import HostPort, NodeInfo, PodInfo


class SimNode:
    """A node whose free capacity, pods and host ports change as pods are placed on it."""

    __slots__ = ("_static", "free", "host_ports", "labels", "name", "pods", "taints", "unschedulable")

    def __init__(self, node: NodeInfo) -> None:
        self.name = node.name
        self.labels = node.labels
        self.taints = node.taints
        self.unschedulable = node.unschedulable
        self.free: Resources = node.free
        self.host_ports: list[HostPort] = list(node.host_ports)
        self.pods: list[PodInfo] = list(node.pods)
        self._static: dict[object, Reason | None] = {}

    def static_check(self, pod: PodInfo) -> Reason | None:
        """Static predicates, cached per distinct (selector, affinity, tolerations) of the pod."""
        key = (pod.node_selector, pod.affinity_terms, pod.tolerations)
        if key not in self._static:
            self._static[key] = check(pod, self, STATIC_PREDICATES)
        return self._static[key]

    def check(self, pod: PodInfo) -> Reason | None:
        """The first failing predicate for ``pod`` here, given what was placed so far."""
        return self.static_check(pod) or check(pod, self, DYNAMIC_PREDICATES)

    def place(self, pod: PodInfo, count: int = 1) -> None:
        """Put ``count`` copies of ``pod`` here (the caller checked they fit)."""
        self.free = self.free - pod.requests.scaled(count)
        self.pods.append(pod)
        self.host_ports.extend(pod.host_ports)


def place_first_fit(pod: PodInfo, nodes: Iterable[SimNode]) -> tuple[SimNode | None, dict[str, Reason]]:
    """Place ``pod`` on the first node that admits it; otherwise the reason per node.

    A cheap resource pre-check skips full nodes without building reasons; the reasons are only
    worked out when the pod fits nowhere (the rare, reported case).
    """
    candidates = list(nodes)
    requests = pod.requests
    for node in candidates:
        if not node.free.fits(requests) or node.static_check(pod) is not None:
            continue
        if check(pod, node, DYNAMIC_PREDICATES) is None:
            node.place(pod)
            return node, {}
    reasons: dict[str, Reason] = {}
    for node in candidates:
        reason = node.check(pod)
        if reason is not None:
            reasons[node.name] = reason
    return None, reasons


def sim_nodes(nodes: Sequence[NodeInfo]) -> list[SimNode]:
    return [SimNode(n) for n in nodes]
