"""Provisioning, Joining and Ready: from a sent launch to a Ready Node, and keeping it so.

- **Provisioning.** The instance that answers the launch is found in the shared listing of its group
  (:mod:`.bound_instance`) and polled there: running → Joining; VPSie reports it failed → Failed
  (``InstanceFailed``); a bound instance no longer listed for ``instance_appear_grace`` → Failed
  (``InstanceNotFound``).
- **Joining.** The Node named after the instance gets ``spec.labels``, ``spec.taints`` and the labels
  that link it back (:func:`.nodes.join_patch`); a Node already labelled for another VPSieNode is never
  claimed twice. Node Ready → Ready (``node_provision_duration_seconds``).
- **The provisioning timeout** counts from ``phaseTimestamps.Pending`` and only while VPSie answers
  (:class:`.outages.Outages`): an outage never fails a record, and a record whose Node is Ready is
  never failed by time.
- **Ready.** Labels and taints re-applied if removed, our stale drain taint removed; a Node missing
  for ``node_lost_grace`` → Failed (``NodeLost``, no error class). No VPSie call.

docs/lifecycle.md, "VPSieNode phases".
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from vpsie_autoscaler.api.durations import format_duration
from vpsie_autoscaler.api.labels import TO_BE_DELETED_TAINT
from vpsie_autoscaler.api.vpsienode import (
    CONDITION_READY,
    CONDITION_REGISTERED,
    LaunchRecord,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.nodes import claimed_by_other, has_taint, join_patch, node_ready
from vpsie_autoscaler.controllers.vpsienode.bound_instance import bound_instance, record_instance
from vpsie_autoscaler.controllers.vpsienode.context import ACTION_PROVISION, NODE_NAME_INDEX, Lifecycle, Raw
from vpsie_autoscaler.controllers.vpsienode.failure import Failure
from vpsie_autoscaler.kube.resources import NODES
from vpsie_autoscaler.runtime.controller import Result
from vpsie_autoscaler.vpsie.errors import ErrorClass
from vpsie_autoscaler.vpsie.provider import InstanceState, NodeSource

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")


def legacy_launch(vn: VPSieNode) -> LaunchRecord:
    """The launch record of a VPSieNode written before launch records existed: its create was sent
    when it entered Provisioning (its hostname was the handle); its Node, if any, is its instance."""
    st = vn.status
    sent = st.phase_timestamps.get("Provisioning") or st.phase_timestamps.get("Pending")
    return LaunchRecord(
        requested_hostname=vn.spec.hostname,
        sent_at=sent or vn.metadata.creation_timestamp or datetime.now(UTC),
        bound_hostname=st.node_name,
        bound_at=sent if st.node_name else None,
    )


async def provision(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Result:
    """The Provisioning and Joining phase handler (see the module docstring)."""
    if st.launch is None:
        st.launch = legacy_launch(vn)  # a record from before launch records: written with the next status
    source = await ctx.providers.source_of(vn)
    listed = await ctx.listing(source, max_age=ctx.options.poll_interval)
    obj, instance = await bound_instance(ctx, obj, vn, st, source=source, listed=listed)
    if instance is None:
        if st.launch is not None and st.launch.bound_at is not None:
            gone_for = (ctx.clock.now() - st.launch.bound_at).total_seconds()
            if gone_for > ctx.options.instance_appear_grace:
                raise Failure(
                    keys.REASON_INSTANCE_NOT_FOUND,
                    ErrorClass.NOT_FOUND,
                    f"VPSie no longer lists instance {st.launch.bound_hostname}",
                )
        return await _wait(ctx, obj, vn, st, source)
    record_instance(st, instance)
    if instance.state is InstanceState.FAILED:
        raise Failure(keys.REASON_INSTANCE_FAILED, ErrorClass.TRANSIENT, "VPSie reports the instance failed")
    if instance.state is not InstanceState.RUNNING:
        return await _wait(ctx, obj, vn, st, source)
    node_name = instance.node_name
    other = [
        o["metadata"]["name"]
        for o in ctx.vpsienodes.store.by_index(NODE_NAME_INDEX, node_name)
        if o["metadata"]["name"] != vn.metadata.name
    ]
    node = ctx.nodes.store.get(node_name)
    owner = claimed_by_other(vn.metadata.name, node) if node is not None else None
    if other or owner:
        claimant = (other or [owner])[0]
        log.error("node.claimed_twice", vpsienode=vn.metadata.name, node=node_name, other=claimant)
        note = f"Node {node_name} already belongs to VPSieNode {claimant}"
        ctx.event(obj, "Warning", keys.REASON_NODE_CLAIMED, note, ACTION_PROVISION)
        await ctx.write(obj, vn, st)
        return Result(requeue_after=ctx.options.poll_interval)
    st.node_name = node_name
    ctx.enter(st, "Joining")
    if node is None:
        unregistered = (CONDITION_REGISTERED, "NodeNotRegistered", f"waiting for Node {node_name}")
        return await _wait(ctx, obj, vn, st, source, unmet=unregistered)
    ctx.cond(vn, st, CONDITION_REGISTERED, True, keys.REASON_REGISTERED, f"Node {node_name} registered")
    await _join(ctx, vn, node)
    if not node_ready(node):
        not_ready = (CONDITION_READY, "NodeNotReady", f"Node {node_name} is not Ready yet")
        return await _wait(ctx, obj, vn, st, source, unmet=not_ready)
    ctx.enter(st, "Ready")
    st.last_error = None
    ctx.cond(vn, st, CONDITION_READY, True, keys.REASON_READY, f"Node {node_name} is Ready")
    took = (ctx.clock.now() - ctx.since(st, "Pending", vn.metadata.creation_timestamp)).total_seconds()
    await ctx.write(obj, vn, st)  # a stale read ends here with Conflict: observed once per node
    ctx.metrics.node_provision_duration_seconds.observe(max(took, 0.0))
    ctx.event(
        obj,
        "Normal",
        keys.REASON_READY,
        f"Node {node_name} is Ready after {format_duration(round(took))}",
        ACTION_PROVISION,
    )
    return Result(requeue_after=ctx.options.resync_interval)


async def _wait(
    ctx: Lifecycle,
    obj: Raw,
    vn: VPSieNode,
    st: VPSieNodeStatus,
    source: NodeSource,
    *,
    unmet: tuple[str, str, str] | None = None,
) -> Result:
    """Not there yet: fail past the provisioning timeout, else write what was learned (and the
    condition ``unmet``: type, reason, message) and poll again."""
    _check_timeout(ctx, vn, st, source)
    if unmet is not None:
        type_, reason, message = unmet
        ctx.cond(vn, st, type_, False, reason, message)
    await ctx.write(obj, vn, st)
    return Result(requeue_after=ctx.options.poll_interval)


def _check_timeout(ctx: Lifecycle, vn: VPSieNode, st: VPSieNodeStatus, source: NodeSource) -> None:
    """Not Ready within maxProvisionTime, counting only the time VPSie answered (an outage never
    turns a healthy node into a failed one)."""
    started = ctx.since(st, "Pending", vn.metadata.creation_timestamp)
    timeout = ctx.provision_timeout(vn)
    now = ctx.clock.now()
    silent = ctx.outages.silent_between(str(source), started, now)
    if now - started - silent <= timeout:
        return
    launch = st.launch
    if (
        launch is not None
        and launch.bound_hostname is None
        and launch.outcome is None
        and (vn.metadata.name not in ctx.outcomes)
    ):
        # Nobody saw the create's answer: a leader died between the record and the call (or during
        # it). Whether VPSie was asked at all is unknown, so it is no evidence against VPSie: the
        # record fails (a late node is adopted) without backing the group off.
        raise Failure(
            keys.REASON_PROVISION_TIMEOUT,
            None,
            f"no instance answered within maxProvisionTime {ctx.provision_timeout_text(vn)}; the launch's "
            "answer was never recorded (a restart during the launch), so the group does not back off",
        )
    raise Failure(
        keys.REASON_PROVISION_TIMEOUT,
        ErrorClass.TRANSIENT,
        f"not Ready within maxProvisionTime {ctx.provision_timeout_text(vn)}",
    )


async def _join(ctx: Lifecycle, vn: VPSieNode, node: Raw) -> None:
    patch = join_patch(vn, node)
    if patch is not None and await ctx.writes.merge_patch(NODES, node["metadata"]["name"], patch):
        log.info("node.labelled", vpsienode=vn.metadata.name, node=node["metadata"]["name"])


async def ready(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Result:
    """The Ready phase handler (see the module docstring)."""
    node = ctx.nodes.store.get(st.node_name or "") if st.node_name else None
    if node is None:
        ctx.cond(vn, st, CONDITION_READY, False, "NodeNotFound", f"Node {st.node_name} does not exist")
        condition = next(c for c in st.conditions if c.type == CONDITION_READY)
        lost_for = (ctx.clock.now() - condition.last_transition_time).total_seconds()
        if lost_for > ctx.options.node_lost_grace:
            raise Failure(
                keys.REASON_NODE_LOST,
                None,
                f"Node {st.node_name} has been gone for {format_duration(round(lost_for))}",
            )
        await ctx.write(obj, vn, st)
        return Result(requeue_after=min(ctx.options.poll_interval, ctx.options.node_lost_grace))
    await _join(ctx, vn, node)
    if has_taint(node, TO_BE_DELETED_TAINT) and await ctx.writes.perform(
        f"remove the stale {TO_BE_DELETED_TAINT} taint of Node {st.node_name}",
        lambda: ctx.drain.untaint(node),
    ):
        # Our taint on a node nobody is draining (an aborted drain that did not finish its cleanup).
        log.info("node.stale_taint_removed", vpsienode=vn.metadata.name, node=st.node_name)
    ok = node_ready(node)
    ctx.cond(
        vn,
        st,
        CONDITION_READY,
        ok,
        keys.REASON_READY if ok else "NodeNotReady",
        f"Node {st.node_name} is {'Ready' if ok else 'not Ready'}",
    )
    await ctx.write(obj, vn, st)
    return Result(requeue_after=ctx.options.resync_interval)
