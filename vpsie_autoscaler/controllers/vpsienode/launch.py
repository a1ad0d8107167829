"""Pending: write the launch record, then ask VPSie once — or bind the instance a record adopts.

Why the record comes first: VPSie creates asynchronously and a managed add-node returns no id, so
the only safe way to never create twice is a write-ahead log entry. ``status.launch`` (requested
hostname, time, for managed groups the group's nodes before the call as ``baseline``) is written
*before* the create; from that write on the request counts as sent, whatever became of the answer
(``DONE``, or ``UNKNOWN``: a timeout, a gateway error, a reset, a cancellation). Only ``NOT_DONE``
(refused before sending or by VPSie) fails the record (``CreateFailed`` with the error class, so the
group backs off). Nothing is ever asked twice: the instance that answers is found by evidence later
(:mod:`.bound_instance`). A fenced process (not sure it still leads) writes nothing and sends nothing.

docs/lifecycle.md, "Launch: the record first, then one call" and "Adoption".
"""

from __future__ import annotations

from datetime import datetime

from vpsie_autoscaler.api.vpsienode import (
    CONDITION_LAUNCHED,
    AdoptTarget,
    LaunchRecord,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.cloud import SizeGroupRefused, ownership_tags
from vpsie_autoscaler.controllers.vpsienode.context import ACTION_PROVISION, Lifecycle, Raw
from vpsie_autoscaler.controllers.vpsienode.failure import Failure, fail
from vpsie_autoscaler.runtime.controller import Result
from vpsie_autoscaler.vpsie.errors import VPSieError, error_class
from vpsie_autoscaler.vpsie.provider import CreateRequest, ManagedSource, Outcome, VMSource
from vpsie_autoscaler.vpsie.provider import Taint as ProviderTaint


async def launch(ctx: Lifecycle, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Result:
    """The Pending phase handler (see the module docstring)."""
    now = ctx.clock.now()
    if vn.spec.adopt is not None:
        return await _adopt(ctx, obj, vn, st, target=vn.spec.adopt, now=now)
    size = f" (VPSie node group of size {vn.spec.plan_size_id})" if vn.spec.plan_size_id is not None else ""
    if ctx.would(obj, f"create VPSie instance {vn.spec.hostname}{size}"):
        await ctx.write(obj, vn, st)  # status is a report: written in dry-run too
        return Result(requeue_after=ctx.options.resync_interval)
    ctx.providers.fence.check("launch")  # before the record: a fenced process writes nothing
    try:
        # A record on a size of its own: that size's VPSie node group, created here when missing.
        source = await ctx.providers.source_of(vn, may_create=True)
    except SizeGroupRefused as exc:
        raise Failure(keys.REASON_CREATE_FAILED, error_class(exc), str(exc)) from exc
    baseline: list[str] = []
    tags: tuple[str, ...] = ()
    if isinstance(source, VMSource):
        tags = ownership_tags(await ctx.providers.identity.get(), vn.spec.node_group)
    if isinstance(source, ManagedSource):
        listed = await ctx.listing(source, max_age=ctx.options.poll_interval)
        baseline = sorted({i.hostname.lower() for i in listed})
    st.launch = LaunchRecord(requested_hostname=vn.spec.hostname, sent_at=now, baseline=baseline)
    ctx.enter(st, "Provisioning")
    ctx.cond(vn, st, CONDITION_LAUNCHED, False, keys.REASON_LAUNCHING, "asking VPSie for the instance")
    obj = await ctx.write(obj, vn, st)  # write-ahead; a Conflict here ends the pass, nothing sent
    vn = VPSieNode.from_k8s(obj)
    request = CreateRequest(
        hostname=vn.spec.hostname,
        source=source,
        labels=dict(vn.spec.labels),
        taints=tuple(ProviderTaint(key=t.key, effect=t.effect, value=t.value or "") for t in vn.spec.taints),
        tags=tags,
    )
    result = await ctx.providers.launch(request)
    ctx.metrics.launches_total.labels(nodegroup=vn.spec.node_group, outcome=result.outcome.value).inc()
    if not result.sent:
        error = result.error or VPSieError("not sent")
        st.launch.outcome = "NotDone"  # written with Failed: nothing will ever answer this launch
        refused = Failure(
            keys.REASON_CREATE_FAILED, error_class(error), f"VPSie refused the creation: {error}"
        )
        return await fail(ctx, obj, vn, st, refused)
    ctx.outcomes[vn.metadata.name] = "Done" if result.outcome is Outcome.DONE else "Unknown"
    if result.outcome is Outcome.DONE:
        note = f"VPSie accepted the creation of {vn.spec.hostname}"
    else:
        note = (
            f"the answer to the creation of {vn.spec.hostname} was lost ({result.detail}); it counts as "
            "sent: waiting for the instance"
        )
    ctx.event(obj, "Normal", keys.REASON_LAUNCHED, note, ACTION_PROVISION)
    return Result(requeue_after=ctx.options.poll_interval)


async def _adopt(
    ctx: Lifecycle,
    obj: Raw,
    vn: VPSieNode,
    st: VPSieNodeStatus,
    *,
    target: AdoptTarget,
    now: datetime,
) -> Result:
    """A record made for an instance nobody asked for (``spec.adopt``) is bound from the start."""
    st.launch = LaunchRecord(
        requested_hostname=target.hostname,
        sent_at=now,
        outcome="Done",
        bound_hostname=target.hostname,
        bound_identifier=target.identifier,
        bound_at=now,
        adopted=True,
    )
    st.instance_identifier = target.identifier
    ctx.enter(st, "Provisioning")
    ctx.cond(vn, st, CONDITION_LAUNCHED, True, keys.REASON_ADOPTED, "existing instance adopted")
    await ctx.write(obj, vn, st)
    ctx.book.expect(target.hostname.lower(), vn.metadata.name)
    ctx.event(
        obj,
        "Normal",
        keys.REASON_ADOPTED,
        f"adopted VPSie instance {target.hostname}: it was in the group without a record",
        ACTION_PROVISION,
    )
    return Result(requeue=True)
