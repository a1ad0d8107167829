"""This record's instance in a VPSie listing: the one it owns, or one bound to it now from evidence.

Provisioning, a Failed record and a deletion all ask the same question of the shared listing, so it
is answered once here. The rule of who answers which launch is :func:`~.binding.assign` (pure); this
module applies it to one record and writes the answer to ``status.launch.bound*`` at once, under the
source's binding lock, so two reconciles never hand one node to two records (docs/lifecycle.md,
"Evidence binds").
"""

from __future__ import annotations

import structlog

from vpsie_autoscaler.api.vpsienode import CONDITION_LAUNCHED, VPSieNode, VPSieNodeStatus
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.binding import Waiting, assign, bound_key, instance_key
from vpsie_autoscaler.controllers.vpsienode.context import Lifecycle, Raw
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.vpsie.provider import Instance, NodeSource

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")


def record_instance(st: VPSieNodeStatus, instance: Instance) -> None:
    """Copy what VPSie says of the instance into status (never erasing what an older answer said)."""
    st.instance_identifier = instance.identifier or st.instance_identifier
    st.instance_id = instance.numeric_id if instance.numeric_id is not None else st.instance_id
    st.ip = instance.ip or st.ip


async def bound_instance(
    ctx: Lifecycle,
    obj: Raw,
    vn: VPSieNode,
    st: VPSieNodeStatus,
    *,
    source: NodeSource,
    listed: list[Instance],
) -> tuple[Raw, Instance | None]:
    """The instance that answers this record's launch: the one it owns, or one bound now from the
    evidence in ``listed`` (written to status at once, under the source's binding lock)."""
    key = bound_key(vn)
    if key is not None:
        return obj, next((i for i in listed if instance_key(i) == key), None)
    if st.launch is None:
        return obj, None
    if vn.spec.managed is not None and (
        st.launch.outcome == "NotDone" or "Failed" in (st.phase, vn.status.phase)
    ):
        return obj, None  # nothing can answer it (see ``binding.waiting_of``)
    if ctx.book.expected_for(vn.metadata.name) is not None:
        # Bound by this process already; the cache has not caught up. Never bind twice: re-read.
        raise errors.Conflict(f"VPSieNode {vn.metadata.name}: the cache is behind our binding", status=409)
    async with ctx.book.lock(source):
        records, unparsable = ctx.records_of(vn)
        waiting, owned = ctx.book.view(records)
        owned |= unparsable
        if all(w.name != vn.metadata.name for w in waiting):
            waiting.append(
                Waiting(
                    name=vn.metadata.name,
                    requested_hostname=st.launch.requested_hostname.lower(),
                    sent_at=st.launch.sent_at,
                    baseline=frozenset(st.launch.baseline),
                    leaving=vn.metadata.deletion_timestamp is not None,
                )
            )
        found = assign(source, waiting, listed, owned).get(vn.metadata.name)
        if found is None:
            return obj, None
        st.launch.bound_hostname = found.hostname
        st.launch.bound_identifier = found.identifier
        st.launch.bound_at = ctx.clock.now()
        st.launch.outcome = st.launch.outcome or ctx.outcomes.pop(vn.metadata.name, None)
        record_instance(st, found)
        ctx.cond(vn, st, CONDITION_LAUNCHED, True, keys.REASON_LAUNCHED, f"instance {found.hostname}")
        obj = await ctx.write(obj, vn, st)
        ctx.book.expect(instance_key(found), vn.metadata.name)
    log.info("vpsienode.bound", vpsienode=vn.metadata.name, hostname=found.hostname)
    return obj, found
