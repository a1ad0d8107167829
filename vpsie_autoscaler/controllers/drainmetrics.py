"""Drain metrics, observed from the caches: how long each drain took and how many pods it evicted.

Drains follow the drain protocol (docs/architecture.md): a requester annotates the VPSieNode
``autoscaler.vpsie.com/drain-requested=<time>`` and the lifecycle controller
(:mod:`~vpsie_autoscaler.controllers.vpsienode.draining`) carries it out, then deletes the record, or
withdraws the request when the drain does not finish within ``maxGracefulTermination`` (measured from
that same time). This observer reads exactly those facts from the shared informers (VPSie's Go
autoscaler exported ``node_drain_duration_seconds{result}`` and ``node_drain_pods_evicted``; ours are
``drain_duration_seconds{nodegroup,result}`` and ``drain_evicted_pods{nodegroup}``):

- a drain starts with the request (its annotation's time, else the time it is seen);
- it ends ``success`` when the record is deleted, gets a deletionTimestamp or reaches ``Deleting``,
  ``aborted`` when the request is withdrawn (Warning ``DrainFailed``);
- the pods it evicted are the pods bound to its Node that leave the pod cache while it drains, except
  DaemonSet and mirror pods (never evicted): evicted, or deleted by their owner meanwhile, which is the
  same to the node.

The VPSieNode informer tells this observer of a request before the lifecycle controller's reconcile
acts on it (handlers run as the event is delivered, reconciles later from the queue), so no eviction
is missed. In ``--dry-run`` no request is written, so nothing is observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION, MIRROR_POD_ANNOTATION, NODEGROUP_LABEL
from vpsie_autoscaler.api.times import parse_time
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.runtime.store import DeletedFinalStateUnknown

Obj = Mapping[str, Any]
ENDED: Final = frozenset({"Deleting"})
SUCCESS: Final = "success"
ABORT: Final = "aborted"


@dataclass(slots=True)
class _Drain:
    group: str
    node: str
    started: datetime
    evicted: int = 0


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _unwrap(obj: Obj | DeletedFinalStateUnknown) -> Obj:
    return obj.obj if isinstance(obj, DeletedFinalStateUnknown) else obj


def _evictable(pod: Obj) -> bool:
    meta = _meta(pod)
    if MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
        return False
    owners = meta.get("ownerReferences") or ()
    return not any(o.get("controller") and o.get("kind") in ("DaemonSet", "Node") for o in owners)


class DrainObserver:
    """Informer handlers for VPSieNodes and pods; see the module docstring."""

    def __init__(self, metrics: AutoscalerMetrics, clock: Clock) -> None:
        self.metrics = metrics
        self.clock = clock
        self._drains: dict[str, _Drain] = {}  # VPSieNode name → drain in progress

    # -- VPSieNodes ---------------------------------------------------------------------------------

    def on_vpsienode(self, obj: Obj) -> None:
        meta = _meta(obj)
        name = str(meta.get("name", ""))
        status = obj.get("status") or {}
        requested = DRAIN_REQUESTED_ANNOTATION in (meta.get("annotations") or {})
        deleting = bool(meta.get("deletionTimestamp")) or status.get("phase") in ENDED
        drain = self._drains.get(name)
        if drain is None:
            if requested and not deleting:
                self._start(name, obj)
            return
        if deleting:
            self._end(name, SUCCESS)
        elif not requested:
            self._end(name, ABORT)
        elif status.get("nodeName") and not drain.node:
            drain.node = str(status["nodeName"])

    def on_vpsienode_update(self, _old: Obj, new: Obj) -> None:
        self.on_vpsienode(new)

    def on_vpsienode_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        name = str(_meta(_unwrap(obj)).get("name", ""))
        if name in self._drains:
            self._end(name, SUCCESS)

    def _start(self, name: str, obj: Obj) -> None:
        status = obj.get("status") or {}
        group = str(
            (obj.get("spec") or {}).get("nodeGroup")
            or (_meta(obj).get("labels") or {}).get(NODEGROUP_LABEL, "")
        )
        annotations = _meta(obj).get("annotations") or {}
        started = parse_time(annotations.get(DRAIN_REQUESTED_ANNOTATION)) or self.clock.now()
        self._drains[name] = _Drain(group, str(status.get("nodeName") or ""), started)

    def _end(self, name: str, result: str) -> None:
        drain = self._drains.pop(name)
        seconds = max(0.0, (self.clock.now() - drain.started).total_seconds())
        self.metrics.drain_duration_seconds.labels(drain.group, result).observe(seconds)
        if result == SUCCESS:
            self.metrics.drain_evicted_pods.labels(drain.group).observe(drain.evicted)

    # -- pods ---------------------------------------------------------------------------------------

    def on_pod_delete(self, tombstone: Obj | DeletedFinalStateUnknown) -> None:
        obj = _unwrap(tombstone)
        node = (obj.get("spec") or {}).get("nodeName")
        if not node or not _evictable(obj):
            return
        for drain in self._drains.values():
            if drain.node == node:
                drain.evicted += 1

    @property
    def draining(self) -> int:
        """Drains in progress (tests)."""
        return len(self._drains)
