"""Deleting: the finalizer's work — drain, delete the bound instance, delete the Node, let go.

A VPSieNode being deleted holds ``INSTANCE_FINALIZER`` until its instance is provably gone, so no
instance is ever left without a record (Karpenter's NodeClaim termination). The steps, each resumed
from the API server after a restart:

1. **Drain** a Node that may run pods (taint, Eviction API). Past ``maxGracefulTermination`` a drain
   that PDBs block waits and says why (cluster-autoscaler's drain never breaks a PDB) unless the
   NodeGroup sets ``forceTerminationAfterGrace``.
2. **Delete the bound instance by identifier**, never "any node of the group", until the shared
   listing no longer shows it (sent again after ``delete_resend``; a targeted delete is idempotent).
3. A launch sent but never answered is waited for up to ``maxProvisionTime``; a node arriving later
   has no record and is adopted, never lost.
4. **Release**: delete the Node (only if it is ours), drop the finalizer, forget the memory.

docs/lifecycle.md, "VPSieNode phases" (the deleting row) and "Deletion never breaks a PDB by default".
"""

from __future__ import annotations

from datetime import datetime

import structlog

from vpsie_autoscaler.api.labels import INSTANCE_FINALIZER
from vpsie_autoscaler.api.vpsienode import (
    CONDITION_DRAINED,
    ERROR_MESSAGE_MAX_LENGTH,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.binding import bound_key
from vpsie_autoscaler.controllers.nodes import claimed_by_other, node_ready
from vpsie_autoscaler.controllers.objects import remove_finalizer
from vpsie_autoscaler.controllers.vpsienode.bound_instance import bound_instance
from vpsie_autoscaler.controllers.vpsienode.context import ACTION_DELETE, Lifecycle, Raw
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import NODES, VPSIENODES
from vpsie_autoscaler.runtime.controller import Result
from vpsie_autoscaler.vpsie.errors import VPSieError
from vpsie_autoscaler.vpsie.provider import Instance, Outcome

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")


async def finalize(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Result:
    """The Deleting phase handler (see the module docstring)."""
    if INSTANCE_FINALIZER not in vn.metadata.finalizers:
        return Result()
    if ctx.would(obj, f"drain, delete instance {vn.spec.hostname} and its Node"):
        return Result(requeue_after=ctx.options.resync_interval)
    was = st.phase
    ctx.enter(st, "Deleting")
    obj = await ctx.write(obj, vn, st)
    vn = VPSieNode.from_k8s(obj)
    deleted_at = vn.metadata.deletion_timestamp or ctx.clock.now()
    node = ctx.node_of(vn, st)
    if node is not None:
        obj, vn = await ctx.name_node(obj, vn, st, node)
    # A node that never became Ready for us is drained too once the cluster sees it Ready: pods
    # may already run there. One that is not Ready runs nothing an eviction could move.
    if (
        node is not None
        and (was not in ("Failed", "Pending", "Provisioning") or node_ready(node))
        and not await drained_before_delete(ctx, obj, vn, st, node, since=deleted_at)
    ):
        return Result(requeue_after=ctx.options.poll_interval)
    if st.launch is None and vn.spec.adopt is None:
        return await release(ctx, obj, vn, "no instance was ever requested")
    source = await ctx.providers.source_of(vn)
    listed = await ctx.listing(source, max_age=ctx.options.delete_poll_interval)
    obj, instance = await bound_instance(ctx, obj, vn, st, source=source, listed=listed)
    if instance is not None:
        await delete_instance(ctx, obj, vn, instance)
        return Result(requeue_after=ctx.options.poll_interval)
    if (
        bound_key(vn) is None
        and st.launch is not None
        and st.launch.outcome != "NotDone"
        and vn.status.phase != "Failed"
    ):
        # Sent, never answered: the node may still come. Wait for it (bounded), then let it go:
        # a node arriving later has no record and is adopted, never lost.
        waited = ctx.clock.now() - st.launch.sent_at
        if waited < ctx.provision_timeout(vn):
            return Result(requeue_after=ctx.options.poll_interval)
        log.warning(
            "vpsienode.launch_unanswered",
            vpsienode=vn.metadata.name,
            note="no instance answered the launch; releasing the record (a late one is adopted)",
        )
        return await release(ctx, obj, vn, "the launch was never answered")
    if bound_key(vn) is None:
        return await release(ctx, obj, vn, "nothing can answer the launch (refused, or the record failed)")
    return await release(ctx, obj, vn, "VPSie no longer lists the instance")


async def delete_instance(ctx: Lifecycle, obj: Raw, vn: VPSieNode, instance: Instance) -> None:
    """Ask VPSie to delete exactly this instance. Sent again only after ``delete_resend`` (a
    targeted delete is idempotent; the memory only saves calls, it decides nothing)."""
    uid = vn.metadata.uid or vn.metadata.name
    last = ctx.delete_sent.get(uid)
    if last is not None and ctx.clock.monotonic() - last < ctx.options.delete_resend:
        return
    result = await ctx.providers.delete(instance)
    if not result.sent:
        error = result.error or VPSieError("not sent")
        ctx.event(
            obj, "Warning", keys.REASON_DELETE_FAILED, f"VPSie refused the deletion: {error}", ACTION_DELETE
        )
        if isinstance(error, VPSieError):
            raise error
        return
    ctx.delete_sent[uid] = ctx.clock.monotonic()
    outcome = "" if result.outcome is Outcome.DONE else f" (answer lost: {result.detail}; counts as sent)"
    ctx.event(
        obj,
        "Normal",
        keys.REASON_INSTANCE_DELETED,
        f"asked VPSie to delete {instance.hostname}{outcome}",
        ACTION_DELETE,
    )


async def delete_node(ctx: Lifecycle, vn: VPSieNode) -> None:
    """Delete the Node of this VPSieNode, and only if it is ours (labelled for it, or no other owner)."""
    name = vn.status.node_name
    if not name:
        return
    node = ctx.nodes.store.get(name)
    if node is None or claimed_by_other(vn.metadata.name, node):
        return
    try:
        await ctx.client.delete(NODES, name)
    except errors.NotFound:
        return
    log.info("node.deleted", vpsienode=vn.metadata.name, node=name)


async def release(ctx: Lifecycle, obj: Raw, vn: VPSieNode, why: str) -> Result:
    """The instance is gone (or was never asked for): delete the Node, drop the finalizer, forget."""
    await delete_node(ctx, vn)
    await remove_finalizer(ctx.client, VPSIENODES, obj, INSTANCE_FINALIZER)
    ctx.book.forget(vn.metadata.name)
    ctx.delete_sent.pop(vn.metadata.uid or vn.metadata.name, None)
    ctx.outcomes.pop(vn.metadata.name, None)
    log.info("vpsienode.released", vpsienode=vn.metadata.name, why=why)
    return Result()


async def drained_before_delete(
    ctx: Lifecycle,
    obj: Raw,
    vn: VPSieNode,
    st: VPSieNodeStatus,
    node: Raw,
    *,
    since: datetime,
) -> bool:
    """Taint the Node and evict its pods; True once nothing that must leave is left on it (or,
    past ``maxGracefulTermination``, when the group forces termination). A drain that PDBs block
    past the grace waits and says why, as cluster-autoscaler's drain never breaks a PDB."""
    grace = ctx.grace(vn)
    within = ctx.clock.now() - since < grace
    await ctx.drain.taint(node)
    progress = await ctx.drain.step(node["metadata"]["name"])
    if progress.done:
        return True
    if within or not ctx.force_after_grace(vn):
        if not within:
            await _termination_blocked(
                ctx, obj, vn, st, node, note=_blocked_note(ctx.grace_text(vn), progress.blocker)
            )
        return False
    log.warning("drain.forced", vpsienode=vn.metadata.name, remaining=len(progress.remaining))
    return True


def _blocked_note(grace: str, blocker: str | None) -> str:
    return (
        f"deletion waits: drain did not finish within maxGracefulTermination {grace}: blocked by "
        f"{blocker or 'pods that did not leave'}; set scaleDown.forceTerminationAfterGrace to force it"
    )


async def _termination_blocked(
    ctx: Lifecycle,
    obj: Raw,
    vn: VPSieNode,
    st: VPSieNodeStatus,
    node: Raw,
    *,
    note: str,
) -> None:
    """Past maxGracefulTermination a drain that evictions cannot finish waits, and says why (a PDB
    is never broken unless the NodeGroup sets ``forceTerminationAfterGrace``); said once per blocker."""
    message = note[:ERROR_MESSAGE_MAX_LENGTH]
    if st.last_error != message:
        st.last_error = message
        ctx.cond(vn, st, CONDITION_DRAINED, False, keys.REASON_DRAIN_FAILED, message)
        await ctx.write(obj, vn, st)
        ctx.drain_failed(obj, vn, node, note)
