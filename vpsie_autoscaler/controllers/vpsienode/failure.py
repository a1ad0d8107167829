"""Failed: how a record fails, and what a Failed record still does.

A record fails when VPSie refused its create, reports its instance failed, stopped listing the bound
instance, or when its node was not Ready within ``maxProvisionTime`` (counted only while VPSie
answers), and when a Ready node's Node is lost. The failure is written as annotations the NodeGroup
controller derives the group's back-off from (``failed-reason``, ``error-class``) and as the phase,
``status.lastError`` and the ``Ready`` condition; the record then stays for garbage collection's TTL
so the back-off survives restarts (docs/lifecycle.md, "VPSieNode phases").

A Failed record keeps the instance it was bound to deleted, draining a Node that joined late first.
"""

from __future__ import annotations

import structlog

from vpsie_autoscaler.api.vpsienode import (
    CONDITION_READY,
    ERROR_MESSAGE_MAX_LENGTH,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.binding import bound_key
from vpsie_autoscaler.controllers.nodes import node_ready
from vpsie_autoscaler.controllers.vpsienode.bound_instance import bound_instance
from vpsie_autoscaler.controllers.vpsienode.context import ACTION_PROVISION, Lifecycle, Raw
from vpsie_autoscaler.controllers.vpsienode.termination import (
    delete_instance,
    delete_node,
    drained_before_delete,
)
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.controller import Result
from vpsie_autoscaler.vpsie.errors import ErrorClass

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")


class Failure(Exception):
    """Raised by a phase handler: move the record to Failed with this reason, error class and message.

    ``klass`` is None for failures that are no evidence against VPSie (a lost Node, a launch whose
    answer nobody saw): they do not back the group off."""

    def __init__(self, reason: str, klass: ErrorClass | None, message: str) -> None:
        super().__init__(message)
        self.reason, self.klass, self.message = reason, klass, message


async def fail(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus, failed: Failure) -> Result:
    """Write the failure: annotations first (locked on the version read, so a stale reconcile gets
    Conflict instead of failing the node twice), then phase, ``lastError`` and the Ready condition."""
    annotations: dict[str, str | None] = {keys.FAILED_REASON_ANNOTATION: failed.reason}
    annotations[keys.ERROR_CLASS_ANNOTATION] = failed.klass.value if failed.klass is not None else None
    patch = {"metadata": {"annotations": annotations, "resourceVersion": vn.metadata.resource_version}}
    obj = await ctx.client.merge_patch(VPSIENODES, vn.metadata.name, patch)
    log.warning("vpsienode.failed", vpsienode=vn.metadata.name, reason=failed.reason, error=failed.message)
    ctx.enter(st, "Failed")
    st.last_error = f"{failed.reason}: {failed.message}"[:ERROR_MESSAGE_MAX_LENGTH]
    ctx.cond(vn, st, CONDITION_READY, False, failed.reason, failed.message[:ERROR_MESSAGE_MAX_LENGTH])
    ctx.event(obj, "Warning", failed.reason, failed.message, ACTION_PROVISION)
    await ctx.write(obj, vn, st)
    return Result(requeue_after=ctx.options.poll_interval)


async def failed(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Result:
    """A Failed record keeps the instance it was bound to deleted. A managed one never binds a new
    one: a node arriving late for it is adopted (then scaled down with a drain like any other), so
    a record that will never get its own node can never take, and delete, the node of a newer
    launch. A VM record still binds (and deletes) the late VM of its own hostname.

    A node that joined late may already run pods (the scheduler uses a Ready Node at once, before
    this controller sees it): it is tainted and drained like any other before its instance goes,
    so a failed launch never takes pods down with it."""
    if ctx.writes.would(f"delete the instance of Failed VPSieNode {vn.metadata.name}, if it has one"):
        return Result(requeue_after=ctx.options.resync_interval)
    if st.launch is None or (bound_key(vn) is None and vn.spec.managed is not None):
        return Result(requeue_after=ctx.options.resync_interval)  # nothing of ours to delete
    source = await ctx.providers.source_of(vn)
    listed = await ctx.listing(source, max_age=ctx.options.delete_poll_interval)
    obj, instance = await bound_instance(ctx, obj, vn, st, source=source, listed=listed)  # a late VM of ours
    if instance is None:
        return Result(requeue_after=ctx.options.resync_interval)
    node = ctx.node_of(vn, st) or ctx.own_node(vn, instance.node_name)
    if node is not None:
        obj, vn = await ctx.name_node(obj, vn, st, node)
    if node is not None and node_ready(node):
        failed_at = ctx.since(st, "Failed", vn.metadata.creation_timestamp)
        if not await drained_before_delete(ctx, obj, vn, st, node, since=failed_at):
            return Result(requeue_after=ctx.options.poll_interval)
    await delete_instance(ctx, obj, vn, instance)
    await delete_node(ctx, vn)
    return Result(requeue_after=ctx.options.delete_poll_interval)
