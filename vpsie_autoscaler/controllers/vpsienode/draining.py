"""Draining: carry out a drain request, then delete the record (whose finalizer removes the instance).

Requesters (scale-down, the NodeGroup controller above ``maxNodes``) never delete capacity: they
annotate the VPSieNode ``DRAIN_REQUESTED_ANNOTATION`` and this handler is the one executor. One pass
taints the Node, evicts what is left through the Eviction API (:mod:`.drain`: a PDB's 429 is tried
again next pass, never waited for inside one) and requeues; no pods left → the VPSieNode is deleted.
Each pass writes how many pods are still to leave in ``status.podsRemaining`` (the PODS LEFT column of
``kubectl get vn``), like ``kubectl drain`` saying which pods it is still evicting; it is cleared with
the phase (:meth:`.context.Lifecycle.enter`) when the drain ends either way.
Past ``maxGracefulTermination`` from the start of the drain it is aborted: request withdrawn, taint
removed, back to Ready (Provisioning if the instance is not bound yet), Warning ``DrainFailed``
naming the blocking pod and its PDB. A drain requested before the node joined removes the capacity
at once (docs/lifecycle.md, "Drain protocol").
"""

from __future__ import annotations

import structlog

from vpsie_autoscaler.api.labels import DRAIN_REASON_ANNOTATION, DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.vpsienode import (
    CONDITION_DRAINED,
    ERROR_MESSAGE_MAX_LENGTH,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.objects import parse_time
from vpsie_autoscaler.controllers.vpsienode.context import ACTION_DRAIN, Lifecycle, Raw
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.controller import Result

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")

EVICTION_REFUSED: str = "eviction refused: "
"""Prefix of ``status.lastError`` while a PDB refuses an eviction; the abort names what follows it."""


async def drain(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Result:
    """The Draining phase handler (see the module docstring)."""
    annotations = vn.metadata.annotations
    reason = annotations.get(DRAIN_REASON_ANNOTATION, "Requested")
    node = ctx.node_of(vn, st)
    if node is None:
        # Nothing runs there (not joined yet, or the Node is gone): remove the capacity right away.
        return await _drained(ctx, obj, vn, reason, "no Node to drain")
    st.node_name = node["metadata"]["name"]  # written with the Draining phase below
    if ctx.would(obj, f"drain Node {st.node_name} ({reason}) and delete it"):
        return Result(requeue_after=ctx.options.resync_interval)
    if st.phase != "Draining":
        ctx.enter(st, "Draining")
        ctx.cond(vn, st, CONDITION_DRAINED, False, keys.REASON_DRAINING, f"draining ({reason})")
        ctx.event(
            obj, "Normal", keys.REASON_DRAINING, f"draining Node {st.node_name}: {reason}", ACTION_DRAIN
        )
    # The grace counts from when the drain began here, not from the request: a request that waited
    # (a busy queue, a VPSie outage, a leader change) still gets its full maxGracefulTermination.
    requested = parse_time(annotations.get(DRAIN_REQUESTED_ANNOTATION))
    started = ctx.since(st, "Draining", None)
    grace = ctx.grace(vn)
    expired = ctx.clock.now() - max(started, requested or started) > grace
    if not expired:
        await ctx.drain.taint(node)
    progress = await ctx.drain.step(st.node_name or "", evict=not expired)
    if progress.done:
        return await _drained(ctx, obj, vn, reason, f"{progress.evicted} pod(s) evicted in the last pass")
    st.pods_remaining = len(progress.remaining)
    if progress.blocker:
        st.last_error = f"{EVICTION_REFUSED}{progress.blocker}"[:ERROR_MESSAGE_MAX_LENGTH]
    if expired:
        blocker = (st.last_error or "").removeprefix(
            EVICTION_REFUSED
        ) or f"pod {progress.remaining[0]} did not leave"
        return await _abort(ctx, obj, vn, st, node, blocker=blocker)
    await ctx.write(obj, vn, st)
    return Result(requeue_after=ctx.options.poll_interval)


async def _drained(ctx: Lifecycle, obj: Raw, vn: VPSieNode, reason: str, detail: str) -> Result:
    # Preconditions: a reconcile on a stale cache gets Conflict instead of counting the removal twice.
    preconditions = {"uid": vn.metadata.uid or "", "resourceVersion": vn.metadata.resource_version or ""}
    try:
        await ctx.client.delete(VPSIENODES, vn.metadata.name, preconditions=preconditions)
    except errors.NotFound:
        return Result()
    # scale_down_total is counted by the requester (scale-down, maxNodes enforcement), not here.
    note = f"drained ({reason}; {detail}); deleting"
    ctx.event(obj, "Normal", keys.REASON_DRAINED, note, ACTION_DRAIN)
    return Result()


async def _abort(
    ctx: Lifecycle,
    obj: Raw,
    vn: VPSieNode,
    st: VPSieNodeStatus,
    node: Raw,
    *,
    blocker: str,
) -> Result:
    """Give the drain up: withdraw the request, untaint, say what blocked it, and go back to Ready —
    or to Provisioning when the record has not bound its instance yet (its Node joined before the
    record saw it), so that binding and joining carry on instead of a Ready record without one."""
    note = f"drain did not finish within maxGracefulTermination {ctx.grace_text(vn)}: blocked by {blocker}"
    # The request is withdrawn first, locked on the version read: a reconcile on a stale cache stops
    # here with Conflict instead of tainting or untainting the Node again.
    withdraw = {DRAIN_REQUESTED_ANNOTATION: None, DRAIN_REASON_ANNOTATION: None}
    obj = await ctx.client.merge_patch(
        VPSIENODES,
        vn.metadata.name,
        {"metadata": {"annotations": withdraw, "resourceVersion": vn.metadata.resource_version}},
    )
    await ctx.drain.untaint(node)
    bound = st.launch is None or st.launch.bound_hostname is not None or vn.spec.adopt is not None
    ctx.enter(st, "Ready" if bound else "Provisioning")
    ctx.cond(vn, st, CONDITION_DRAINED, False, keys.REASON_DRAIN_FAILED, note[:ERROR_MESSAGE_MAX_LENGTH])
    ctx.drain_failed(obj, vn, node, note)
    log.warning("drain.failed", vpsienode=vn.metadata.name, blocker=blocker)
    await ctx.write(obj, vn, st)
    return Result(requeue_after=ctx.options.resync_interval)
