"""The VPSieNode lifecycle: one VPSie instance from request to deletion (Karpenter's NodeClaim lifecycle).

This controller is the only writer of VPSieNodes after their creation (finalizer, status, failure
annotations); requesters only create them, ask for a drain (annotations) or delete them. Every timer
lives in ``status.phaseTimestamps``, so a restart or a new leader resumes where the last one stopped.

This module is the dispatcher, and nothing more: it parses the object (an unparsable one is reported,
never acted on), puts ``INSTANCE_FINALIZER`` on before anything is asked of VPSie, picks the handler
from the phase table (:mod:`.phases`: :func:`~.phases.route`, then the row's handler) and maps what a
pass raises to a requeue — a Conflict reads again, a fenced process (not sure it still leads) sends
nothing and waits, and a VPSie error is an outcome: a delay from its class, bounded by the group's
back-off maximum, never the work queue's exponential back-off. What each phase does is in its module:

- :mod:`.launch` — Pending: the launch record, then one create call (or adoption);
- :mod:`.registration` — Provisioning, Joining, Ready: binding, the Node's labels, readiness;
- :mod:`.failure` — Failed: how a record fails, and a Failed record's instance;
- :mod:`.draining` — Draining: the drain protocol's executor;
- :mod:`.termination` — Deleting: drain, delete the instance, delete the Node, drop the finalizer.

docs/lifecycle.md describes the whole lifecycle and who writes what.
"""

from __future__ import annotations

import structlog

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.labels import INSTANCE_FINALIZER, VPSIENODE_LABEL
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.cluster_state import InvalidObject, parse_vpsienode
from vpsie_autoscaler.controllers.objects import add_finalizer, labels_of
from vpsie_autoscaler.controllers.vpsienode.context import (
    NODE_NAME_INDEX,
    IllegalTransition,
    Lifecycle,
    LifecycleOptions,
    Raw,
)
from vpsie_autoscaler.controllers.vpsienode.failure import Failure, fail
from vpsie_autoscaler.controllers.vpsienode.outages import retry_delay
from vpsie_autoscaler.controllers.vpsienode.phases import PHASES, TRANSITIONS, route
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.controller import Request, Result
from vpsie_autoscaler.runtime.fence import NotLeader
from vpsie_autoscaler.vpsie.errors import VPSieError, error_class

__all__ = ["LifecycleOptions", "VPSieNodeReconciler"]

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")


class VPSieNodeReconciler(Lifecycle):
    """The lifecycle (:class:`~.context.Lifecycle`: dependencies and shared moves) plus the dispatch."""

    transitions = TRANSITIONS

    def requests_for_node(self, node: Raw) -> list[Request]:
        """Node events → the VPSieNode that owns the Node (by label, else by ``status.nodeName``)."""
        owner = labels_of(node).get(VPSIENODE_LABEL)
        if owner:
            return [Request(owner)]
        name = (node.get("metadata") or {}).get("name", "")
        return [Request(o["metadata"]["name"]) for o in self.vpsienodes.store.by_index(NODE_NAME_INDEX, name)]

    async def reconcile(self, request: Request) -> Result:
        obj = self.vpsienodes.store.get(request.name)
        if obj is None:
            self.invalid.forget(request.name)
            return Result()
        try:
            vn = parse_vpsienode(obj)
        except InvalidObject as exc:
            # Reported (once per generation and per deletion), never acted on: nothing is created,
            # drained or deleted for a record we cannot reason about. Being deleted, it keeps its
            # finalizer, so its instance is never released unseen (docs/lifecycle.md, "Invalid objects").
            deleting = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
            if self.invalid.note(obj, str(exc)):
                log.error("vpsienode.invalid", vpsienode=request.name, error=str(exc), deleting=deleting)
                kept = "; being deleted: finalizer kept until the object is fixed" if deleting else ""
                self.event(obj, "Warning", keys.REASON_INVALID, f"cannot parse: {exc}{kept}", "Validate")
            return Result()
        self.invalid.forget(request.name)
        try:
            if vn.metadata.deletion_timestamp is None and INSTANCE_FINALIZER not in vn.metadata.finalizers:
                if self.would(obj, f"add the finalizer and create instance {vn.spec.hostname}"):
                    return Result()
                await add_finalizer(self.client, VPSIENODES, obj, INSTANCE_FINALIZER)
                return Result()  # the update event brings it back with the finalizer
            return await self._dispatch(obj, vn)
        except errors.Conflict:
            return Result(requeue=True)  # read again from a fresher cache
        except errors.NotFound:
            return Result()  # deleted while we worked: its delete event ends the story
        except NotLeader as exc:
            log.info("vpsienode.fenced", vpsienode=request.name, reason=str(exc))
            return Result(requeue_after=self.options.poll_interval)
        except VPSieError as exc:
            return self._cloud_error(vn, exc)
        except IllegalTransition as exc:
            # A bug, not a cloud or API condition: the move was refused before it was written.
            log.error("vpsienode.illegal_transition", vpsienode=request.name, error=str(exc))
            return Result(requeue_after=self.options.resync_interval)

    async def _dispatch(self, obj: Raw, vn: VPSieNode) -> Result:
        """One pass of the row :func:`~.phases.route` picks; a :class:`~.failure.Failure` it raises
        fails the record as it was read."""
        st = vn.status.model_copy(deep=True)
        row = route(vn)
        if row != "Deleting" and st.phase is None:
            self.enter(st, "Pending")
        try:
            return await PHASES[row].handler(self, obj, vn, st)
        except Failure as failed:
            return await fail(self, obj, vn, st, failed)

    def _cloud_error(self, vn: VPSieNode, exc: VPSieError) -> Result:
        """A VPSie error is an outcome, not a crash: requeue after a delay from its class, bounded by
        the group's back-off maximum (never the work queue's exponential per-item back-off)."""
        klass = error_class(exc)
        delay = retry_delay(exc, self.options.poll_interval)
        group = self.group(vn.spec.node_group)
        if group is not None:
            delay = min(delay, parse_duration(group.spec.provisioning.backoff.max).total_seconds())
        log.warning(
            "vpsienode.cloud_error",
            vpsienode=vn.metadata.name,
            error_class=klass.value,
            error=str(exc),
            requeue_after=delay,
        )
        return Result(requeue_after=delay)
