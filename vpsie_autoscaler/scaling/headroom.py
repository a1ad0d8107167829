"""Headroom: spare capacity a NodeGroup keeps free at all times, as virtual pods in the planners.

The classic way to keep spare capacity is the overprovisioning pattern of cluster-autoscaler's FAQ:
low-priority "pause" pods (priority -10, above the expendable cutoff) hold room that real pods
preempt at once, and the autoscaler replaces the evicted pause pods with new nodes. Karpenter leaves
it at that; GKE and others add a declarative knob. Headroom is that knob: the planners themselves
add pods that do not exist, so nothing has to run on the spare capacity and nothing is preempted.

Two forms (``spec.headroom``):

- ``cpu`` / ``memory`` / ``pods``: that much must fit on the group's nodes beside the pods they run.
  It is split into as few equal virtual pods as fit one node of the group (``2`` cpu on 4-cpu nodes
  is one pod of 2 cpu: a pod of that size can always start at once);
- ``nodes``: that many nodes of the group run no pod that would have to move (DaemonSet and mirror
  pods aside): whole empty nodes, for workloads that arrive as a block.

Scale-up (:func:`unmet`): the virtual pods that do not fit the group's nodes (Ready and on the way)
are handed to the scale-up planner with the pending pods, pinned to their group. Scale-down
(:func:`blocker`): a node whose removal would leave less than the headroom stays, with the reason
:data:`HEADROOM_RESERVED`. Both use the same first-fit placement, so they agree on what "kept" means.

**Cluster-wide headroom** (``AutoscalerSettings`` ``spec.headroom``: cpu, memory, pods) is the same
rule over every NodeGroup together: its virtual pods (:func:`cluster_virtual_pods`, as large as fits
the largest node any group makes) must fit the free room of the nodes of all NodeGroups that a pod
without tolerations can use (:func:`cluster_unmet`); those that do not are planned like pending pods
that any group may take (the expanders choose), and scale-down keeps a node whose removal would leave
less (:func:`cluster_blocker`). It is counted on the same free room as the groups' own headroom: the
larger of the two is what is kept where they overlap.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.scaling.reasons import Reason
from vpsie_autoscaler.scaling.resources import CPU, EMPTY, MEMORY, PODS, Resources, format_units
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo
from vpsie_autoscaler.scaling.selectors import Taint

if TYPE_CHECKING:
    from vpsie_autoscaler.scaling.groups import GroupTemplate

HEADROOM_RESERVED: Final = "HeadroomReserved"
"""Scale-down reason: removing the node would eat the group's headroom."""
HEADROOM_NAMESPACE: Final = ""
"""Virtual pods live in no namespace: no real pod can share their key."""
HEADROOM_POD_PREFIX: Final = "headroom-"
HEADROOM_PRIORITY: Final = -10
"""The priority of the pause pods of the classic pattern: real pods of any usual priority go first."""


@dataclass(frozen=True, slots=True)
class Headroom:
    """A group's ``spec.headroom``, parsed: ``requests`` (cpu, memory, pods) and/or ``nodes``."""

    requests: Resources = EMPTY
    nodes: int = 0

    @property
    def empty(self) -> bool:
        return not self.requests and self.nodes <= 0

    def __str__(self) -> str:
        parts = [f"{format_units(k, v)} {k}" for k, v in sorted(self.requests.items())]
        if self.nodes:
            parts.append(f"{self.nodes} spare node{'s' if self.nodes != 1 else ''}")
        return ", ".join(parts)


NO_HEADROOM: Final = Headroom()


def is_headroom_pod(pod: PodInfo) -> bool:
    """Whether ``pod`` is one of the virtual pods made here (never a real pod: no namespace)."""
    return pod.namespace == HEADROOM_NAMESPACE and pod.name.startswith(HEADROOM_POD_PREFIX)


def _virtual(group: str, suffix: str, requests: Resources) -> PodInfo:
    return PodInfo(
        namespace=HEADROOM_NAMESPACE,
        name=f"{HEADROOM_POD_PREFIX}{group}-{suffix}",
        requests=requests,
        node_selector=((NODEGROUP_LABEL, group),),
        priority=HEADROOM_PRIORITY,
        controller_kind="Headroom",
        controller_name=group,
    )


def chunks(headroom: Resources, node: Resources) -> list[Resources]:
    """``headroom`` split into as few equal parts (rounded up) as fit ``node`` each; the whole of
    ``headroom`` when a resource is unknown on the node (its part can never fit: reported, not hidden)."""
    parts = 1
    for name, want in headroom.items():
        have = node[name]
        if want > 0 and have > 0:
            parts = max(parts, math.ceil(want / have))
    requests = {name: math.ceil(want / parts) for name, want in headroom.items() if want > 0}
    requests[PODS] = max(1, requests.get(PODS, 0))
    return [Resources(requests)] * parts


def virtual_pods(group: GroupTemplate, headroom: Headroom) -> tuple[PodInfo, ...]:
    """The virtual pods that stand for ``headroom`` of ``group`` (resource form only; the ``nodes``
    form is counted by :func:`unmet` and :func:`blocker`)."""
    if not headroom.requests:
        return ()
    node = _largest_allocatable(group)
    return tuple(_virtual(group.name, str(i), r) for i, r in enumerate(chunks(headroom.requests, node)))


def _largest_allocatable(group: GroupTemplate) -> Resources:
    plans = group.plans
    if not plans:
        return group.allocatable
    return max((p.allocatable for p in plans), key=lambda a: (a[CPU], a[MEMORY]))


def _counts(pod: PodInfo) -> bool:
    return not (pod.is_daemonset or pod.is_mirror or pod.is_terminal or pod.deleting)


def _free_after(pods: Sequence[PodInfo], free: Iterable[Resources]) -> tuple[list[PodInfo], list[Resources]]:
    """First fit of ``pods`` (largest first) into ``free``; the pods that did not fit."""
    room = list(free)
    missing: list[PodInfo] = []
    for pod in sorted(pods, key=lambda p: (-p.requests[CPU], -p.requests[MEMORY], p.name)):
        for i, space in enumerate(room):
            if space.fits(pod.requests):
                room[i] = space - pod.requests
                break
        else:
            missing.append(pod)
    return missing, room


def _usable(node: NodeInfo, group: str) -> bool:
    return node.group == group and not node.deleting and not node.unschedulable


def unmet(group: GroupTemplate, headroom: Headroom, nodes: Sequence[NodeInfo]) -> tuple[PodInfo, ...]:
    """Virtual pods for the part of ``headroom`` the group's ``nodes`` (Ready or on the way, with
    their pods) do not hold now: hand them to the scale-up planner with the pending pods.

    The ``nodes`` form yields one virtual pod per missing empty node, as large as a node of the
    group: only a new node holds it.
    """
    own = [n for n in nodes if _usable(n, group.name)]
    missing, _ = _free_after(virtual_pods(group, headroom), (n.free for n in own))
    empty = sum(1 for n in own if not any(_counts(p) for p in n.pods))
    short = max(0, headroom.nodes - empty)
    whole = _smallest_allocatable(group)
    missing.extend(_virtual(group.name, f"node-{i}", whole) for i in range(short))
    return tuple(missing)


def _smallest_allocatable(group: GroupTemplate) -> Resources:
    plans = group.plans
    if not plans:
        return group.allocatable
    return min((p.allocatable for p in plans), key=lambda a: (a[CPU], a[MEMORY]))


def blocker(
    group: GroupTemplate,
    headroom: Headroom,
    remaining: Sequence[tuple[Resources, bool]],
) -> Reason | None:
    """Why a node of ``group`` must stay: without it, its other nodes (``remaining``: free capacity
    after the simulated moves, and whether the node is empty) would not hold ``headroom``."""
    if headroom.empty:
        return None
    pods = virtual_pods(group, headroom)
    missing, _ = _free_after(pods, (free for free, _ in remaining))
    empty = sum(1 for _, is_empty in remaining if is_empty)
    if missing or empty < headroom.nodes:
        return Reason(
            HEADROOM_RESERVED,
            f"removing it would leave NodeGroup {group.name} less than its headroom ({headroom})",
        )
    return None


CLUSTER_HEADROOM: Final = ":cluster"
"""The name in the virtual pods of the cluster-wide headroom (``headroom-:cluster-<i>``): no NodeGroup
can be named so (a ``:`` is not allowed in object names), so no group's virtual pods share it."""


def cluster_virtual_pods(groups: Sequence[GroupTemplate], requests: Resources) -> tuple[PodInfo, ...]:
    """The virtual pods of cluster-wide headroom: ``requests`` split into as few equal pods as fit the
    largest node a group makes; no node selector, so any group whose nodes admit them may hold them."""
    if not requests or not groups:
        return ()
    node = max((_largest_allocatable(g) for g in groups), key=lambda a: (a[CPU], a[MEMORY]))
    return tuple(
        dataclasses.replace(_virtual(CLUSTER_HEADROOM, str(i), r), node_selector=())
        for i, r in enumerate(chunks(requests, node))
    )


_BLOCKING_EFFECTS: Final = frozenset({"NoSchedule", "NoExecute"})


def admits_any_pod(taints: Iterable[Taint], unschedulable: bool) -> bool:
    """Whether a pod without tolerations may use the node (cluster-wide headroom is for any pod)."""
    return not unschedulable and not any(t.effect in _BLOCKING_EFFECTS for t in taints)


def cluster_unmet(
    groups: Sequence[GroupTemplate], requests: Resources, nodes: Sequence[NodeInfo]
) -> tuple[PodInfo, ...]:
    """The virtual pods of cluster-wide headroom that the free room of the NodeGroups' nodes (Ready or
    on the way, open to any pod) does not hold now: hand them to the scale-up planner."""
    known = {g.name for g in groups}
    room = (
        n.free
        for n in nodes
        if n.group in known and not n.deleting and admits_any_pod(n.taints, n.unschedulable)
    )
    missing, _ = _free_after(cluster_virtual_pods(groups, requests), room)
    return tuple(missing)


def cluster_blocker(
    groups: Sequence[GroupTemplate], requests: Resources, remaining: Iterable[Resources]
) -> Reason | None:
    """Why a node must stay: without it, the free room of the NodeGroups' other nodes (``remaining``,
    after the simulated moves) would not hold the cluster-wide headroom."""
    pods = cluster_virtual_pods(groups, requests)
    if not pods:
        return None
    missing, _ = _free_after(pods, remaining)
    if missing:
        parts = ", ".join(f"{format_units(k, v)} {k}" for k, v in sorted(requests.items()))
        return Reason(
            HEADROOM_RESERVED, f"removing it would leave the cluster less than its headroom ({parts})"
        )
    return None
