"""The VPSieNode lifecycle: one VPSie instance from request to deletion (Karpenter's NodeClaim lifecycle).

Phases (``status.phase``; each entry time in ``status.phaseTimestamps``, so every timer survives a
restart or a new leader)::

    Pending ──create──▶ Provisioning ──running──▶ Joining ──Node Ready──▶ Ready ──drain──▶ Draining
       │                     │                       │                      │                 │
       └──── create refused / not Ready within maxProvisionTime ──▶ Failed  └─ Node lost ──▶ Failed
    (deletionTimestamp) ──▶ Deleting: drain, delete the instance, delete the Node, drop the finalizer

- **Finalizer first.** Nothing is asked of VPSie before ``INSTANCE_FINALIZER`` is on the object, so
  the object can never go while an instance it created lives on (seed trap: instances left billing).
- **Adoption.** Before creating, the provider is asked for the hostname: an instance found (created
  by a previous leader that crashed before writing status) is adopted, never created twice.
- **Failure.** A create the API refuses, an instance VPSie reports failed, or a node not Ready
  within the group's ``maxProvisionTime`` → ``Failed`` with the error class in
  ``ERROR_CLASS_ANNOTATION`` and ``status.lastError``; the instance is deleted. The object stays until
  the garbage collector's TTL, so the NodeGroup's back-off is derived from it (level-triggered).
- **Joining.** The Node (named after the instance's lower-cased hostname) gets ``spec.labels``,
  ``spec.taints``, ``NODEGROUP_LABEL`` and ``VPSIENODE_LABEL``. A Node already labelled for another
  VPSieNode is never claimed a second time (seed trap: two records claiming one node).
- **Node lost.** A Ready VPSieNode whose Node has been missing for ``node_lost_grace`` becomes
  ``Failed`` (reason ``NodeLost``, no error class): it stops counting as capacity and the NodeGroup
  replaces it (seed trap: a Ready record whose Node vanished counted forever).
- **Drain protocol.** ``DRAIN_REQUESTED_ANNOTATION`` → ``Draining``: taint, evict (429 → next
  reconcile), then delete the VPSieNode; past ``maxGracefulTermination`` the drain is aborted: taint
  and annotations removed, back to ``Ready``, Warning ``DrainFailed`` naming the blocking pod and PDB.
- **Deletion.** Drain (bounded by ``maxGracefulTermination`` from the deletion time), delete the
  instance (an instance VPSie has not materialised yet is waited for, then deleted: a VPSieNode
  deleted before its asynchronous instance appears leaks nothing), delete the Node, drop the finalizer.

Dry-run: phases and status are still observed and reported, but nothing is created, deleted,
tainted or evicted; each skipped action is logged and recorded as a ``DryRun`` Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.labels import (
    DRAIN_REASON_ANNOTATION,
    DRAIN_REQUESTED_ANNOTATION,
    INSTANCE_FINALIZER,
    VPSIENODE_LABEL,
)
from vpsie_autoscaler.api.nodegroup import (
    DEFAULT_MAX_GRACEFUL_TERMINATION,
    DEFAULT_MAX_PROVISION_TIME,
    NodeGroup,
)
from vpsie_autoscaler.api.types import set_condition
from vpsie_autoscaler.api.vpsienode import (
    CONDITION_DRAINED,
    CONDITION_LAUNCHED,
    CONDITION_READY,
    CONDITION_REGISTERED,
    IN_FLIGHT_PHASES,
    Phase,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.controllers.objects import (
    add_finalizer,
    ensure_index,
    labels_of,
    parse_time,
    patch_status,
    remove_finalizer,
)
from vpsie_autoscaler.controllers.providers import Providers
from vpsie_autoscaler.controllers.vpsienode import keys
from vpsie_autoscaler.controllers.vpsienode.drain import DrainExecutor
from vpsie_autoscaler.controllers.vpsienode.nodes import apply_join, claimed_by_other, node_ready
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import NODES, VPSIENODES
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.runtime.controller import Request, Result
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.errors import ErrorClass, InstanceNotReady, VPSieError, error_class
from vpsie_autoscaler.vpsie.provider import CreateRequest, Instance, InstanceState, NodeProvider, NodeSource
from vpsie_autoscaler.vpsie.provider import Taint as ProviderTaint

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")

NODE_NAME_INDEX: Final = "lifecycle.nodeName"
"""VPSieNode index: ``status.nodeName`` → VPSieNodes (Node events → requests; double-claim guard)."""

# Cadence. VPSie cannot be watched, so provisioning is polled; a booting node changes every few seconds.
DEFAULT_POLL_SECONDS: Final = 5.0
# A Ready node is re-checked against the cloud this often (the Node informer covers the rest).
DEFAULT_RESYNC_SECONDS: Final = 60.0
# A Node missing this long while its VPSieNode is Ready is lost (kubelet re-registration takes seconds).
DEFAULT_NODE_LOST_GRACE_SECONDS: Final = 60.0
# After VPSie accepted a create, the instance may take a moment to show in the lists.
DEFAULT_INSTANCE_APPEAR_GRACE_SECONDS: Final = 60.0
# Deleting waits this long for VPSie to stop listing the instance, then lets garbage collection finish.
DEFAULT_INSTANCE_GONE_WAIT_SECONDS: Final = 600.0

ACTION_PROVISION: Final = "Provision"
ACTION_DRAIN: Final = "Drain"
ACTION_DELETE: Final = "Delete"


@dataclass(frozen=True)
class LifecycleOptions:
    dry_run: bool = False
    poll_interval: float = DEFAULT_POLL_SECONDS
    resync_interval: float = DEFAULT_RESYNC_SECONDS
    node_lost_grace: float = DEFAULT_NODE_LOST_GRACE_SECONDS
    instance_appear_grace: float = DEFAULT_INSTANCE_APPEAR_GRACE_SECONDS
    instance_gone_wait: float = DEFAULT_INSTANCE_GONE_WAIT_SECONDS


def node_name_index(obj: Mapping[str, Any]) -> list[str]:
    name = (obj.get("status") or {}).get("nodeName")
    return [name] if name else []


class _Failed(Exception):
    """Internal: move to Failed with this reason, error class and message."""

    def __init__(self, reason: str, klass: ErrorClass | None, message: str) -> None:
        super().__init__(message)
        self.reason, self.klass, self.message = reason, klass, message


class VPSieNodeReconciler:
    def __init__(
        self,
        *,
        client: KubeClient,
        recorder: EventRecorder,
        clock: Clock,
        providers: Providers,
        vpsienodes: SharedInformer,
        nodes: SharedInformer,
        nodegroups: SharedInformer,
        metrics: AutoscalerMetrics,
        options: LifecycleOptions | None = None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.providers = providers
        self.vpsienodes = vpsienodes
        self.nodes = nodes
        self.nodegroups = nodegroups
        self.metrics = metrics
        self.options = options or LifecycleOptions()
        self.drain = DrainExecutor(client, metrics)
        ensure_index(vpsienodes, NODE_NAME_INDEX, node_name_index)

    # -- mapping ----------------------------------------------------------------------------------

    def requests_for_node(self, node: dict[str, Any]) -> list[Request]:
        """Node events → the VPSieNode that owns the Node (by label, else by ``status.nodeName``)."""
        owner = labels_of(node).get(VPSIENODE_LABEL)
        if owner:
            return [Request(owner)]
        name = (node.get("metadata") or {}).get("name", "")
        return [Request(o["metadata"]["name"]) for o in self.vpsienodes.store.by_index(NODE_NAME_INDEX, name)]

    # -- helpers ----------------------------------------------------------------------------------

    def _group(self, name: str) -> NodeGroup | None:
        obj = self.nodegroups.store.get(name)
        if obj is None:
            return None
        try:
            return NodeGroup.from_k8s(obj)
        except ValidationError:
            return None

    def _provision_timeout(self, vn: VPSieNode) -> timedelta:
        group = self._group(vn.spec.node_group)
        if group is None:
            return parse_duration(DEFAULT_MAX_PROVISION_TIME)
        return group.spec.provisioning.provision_timeout

    def _grace(self, vn: VPSieNode) -> timedelta:
        group = self._group(vn.spec.node_group)
        if group is None:
            return parse_duration(DEFAULT_MAX_GRACEFUL_TERMINATION)
        return group.spec.scale_down.graceful_termination

    def _enter(self, st: VPSieNodeStatus, phase: Phase) -> None:
        if st.phase != phase:
            st.phase = phase
            st.phase_timestamps[phase] = self.clock.now()

    def _since(self, st: VPSieNodeStatus, phase: str, fallback: datetime | None) -> datetime:
        return st.phase_timestamps.get(phase) or fallback or self.clock.now()

    def _cond(  # noqa: PLR0917 - a condition is these six facts
        self, vn: VPSieNode, st: VPSieNodeStatus, type_: str, ok: bool, reason: str, msg: str
    ) -> None:
        set_condition(
            st.conditions,
            type_,
            "True" if ok else "False",
            reason,
            msg,
            now=self.clock.now(),
            observed_generation=vn.metadata.generation,
        )

    def _event(self, obj: dict[str, Any], type_: str, reason: str, note: str, action: str) -> None:
        self.recorder.event(obj, type_, reason, note, action)

    def _dry(self, obj: dict[str, Any], what: str) -> None:
        log.info("dry_run.skipped", vpsienode=obj["metadata"]["name"], action=what)
        self._event(obj, "Normal", keys.REASON_DRY_RUN, f"dry-run: would {what}", ACTION_PROVISION)

    async def _write(self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus) -> dict[str, Any]:
        st.observed_generation = vn.metadata.generation
        if st == vn.status:
            return obj
        return await patch_status(self.client, VPSIENODES, obj, st.to_k8s())

    async def _instance(self, provider: NodeProvider, source: NodeSource, vn: VPSieNode) -> Instance | None:
        found = await provider.get(source, vn.spec.hostname)
        if found is None and vn.status.node_name and vn.status.node_name != vn.spec.hostname.lower():
            found = await provider.get(source, vn.status.node_name)
        return found

    # -- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, request: Request) -> Result:
        obj = self.vpsienodes.store.get(request.name)
        if obj is None:
            return Result()
        try:
            vn = VPSieNode.from_k8s(obj)
        except ValidationError as exc:
            log.error("vpsienode.invalid", vpsienode=request.name, error=str(exc))
            self._event(
                obj, "Warning", keys.REASON_INVALID, f"cannot parse: {exc.errors()[0]['msg']}", "Validate"
            )
            return Result()
        try:
            if vn.metadata.deletion_timestamp is not None:
                return await self._finalize(obj, vn)
            if INSTANCE_FINALIZER not in vn.metadata.finalizers:
                if self.options.dry_run:
                    self._dry(obj, f"add the finalizer and create instance {vn.spec.hostname}")
                    return Result()
                await add_finalizer(self.client, VPSIENODES, obj, INSTANCE_FINALIZER)
                return Result()  # the update event brings it back with the finalizer
            return await self._advance(obj, vn)
        except errors.Conflict:
            return Result(requeue=True)  # read again from a fresher cache
        except errors.NotFound:
            return Result()  # deleted while we worked: its delete event ends the story

    async def _advance(self, obj: dict[str, Any], vn: VPSieNode) -> Result:
        st = vn.status.model_copy(deep=True)
        if st.phase is None:
            self._enter(st, "Pending")
        phase = st.phase or "Pending"
        if phase == "Failed":
            return await self._failed(obj, vn, st)
        if DRAIN_REQUESTED_ANNOTATION in vn.metadata.annotations or phase == "Draining":
            return await self._drain(obj, vn, st)
        try:
            try:
                source = await self.providers.source_of(vn)
            except VPSieError:
                if phase in IN_FLIGHT_PHASES:
                    self._check_timeout(vn, st)  # VPSie unreachable for maxProvisionTime: Failed
                raise
            if phase == "Pending":  # adopt-or-create must see VPSie as it is now
                return await self._pending(
                    obj, vn, st, self.providers.provider_for(source, fresh=True), source
                )
            provider = self.providers.provider_for(source)
            if phase in ("Provisioning", "Joining"):
                return await self._provisioning(obj, vn, st, provider, source)
            return await self._ready(obj, vn, st, provider, source)
        except _Failed as failed:
            return await self._fail(obj, vn, st, failed)

    async def _pending(
        self,
        obj: dict[str, Any],
        vn: VPSieNode,
        st: VPSieNodeStatus,
        provider: NodeProvider,
        source: NodeSource,
    ) -> Result:
        self._check_timeout(vn, st)
        instance = await self._instance(provider, source, vn)
        if instance is not None:
            self._record_instance(st, instance)
            self._enter(st, "Provisioning")
            self._cond(vn, st, CONDITION_LAUNCHED, True, keys.REASON_ADOPTED, "instance found by hostname")
            self._event(
                obj,
                "Normal",
                keys.REASON_ADOPTED,
                f"adopted existing VPSie instance {instance.hostname}",
                ACTION_PROVISION,
            )
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        if self.options.dry_run:
            await self._write(obj, vn, st)
            self._dry(obj, f"create VPSie instance {vn.spec.hostname}")
            return Result(requeue_after=self.options.resync_interval)
        await self._ensure_current(obj, vn)
        request = CreateRequest(
            hostname=vn.spec.hostname,
            source=source,
            labels=dict(vn.spec.labels),
            taints=tuple(
                ProviderTaint(key=t.key, effect=t.effect, value=t.value or "") for t in vn.spec.taints
            ),
        )
        try:
            await provider.create(request)
        except VPSieError as exc:
            obj, vn = await self._after_own_write(obj, vn)
            failed = _Failed(
                keys.REASON_CREATE_FAILED, error_class(exc), f"VPSie refused the creation: {exc}"
            )
            return await self._fail(obj, vn, st, failed)
        obj, vn = await self._after_own_write(obj, vn)
        self._enter(st, "Provisioning")
        st.last_error = None
        self._cond(vn, st, CONDITION_LAUNCHED, True, keys.REASON_LAUNCHED, "VPSie accepted the creation")
        self._event(
            obj,
            "Normal",
            keys.REASON_LAUNCHED,
            f"VPSie accepted the creation of {vn.spec.hostname}",
            ACTION_PROVISION,
        )
        await self._write(obj, vn, st)
        return Result(requeue_after=self.options.poll_interval)

    async def _ensure_current(self, obj: dict[str, Any], vn: VPSieNode) -> None:
        """Refuse to call VPSie on a cached record older than the API server's.

        A create is the one call that cannot be taken back (VPSie has no idempotency key), and the
        cache may lag our own last write: a reconcile queued by the claim writes of a create that VPSie
        refused can run before the watch delivers the ``Failed`` status, see ``Pending`` and ask again.
        So the record is read live first; if it moved on, this pass ends with Conflict and the next one
        reads the newer version (client-go's "expectations" idea, reduced to one GET per create).
        """
        live = await self.client.get(VPSIENODES, vn.metadata.name)
        if (live.get("metadata") or {}).get("resourceVersion") != vn.metadata.resource_version:
            raise errors.Conflict(
                f"VPSieNode {vn.metadata.name} in the cache is stale; not creating", status=409
            )

    async def _after_own_write(self, obj: dict[str, Any], vn: VPSieNode) -> tuple[dict[str, Any], VPSieNode]:
        """The record as the API server holds it after a provider call that may have written to it.

        The managed provider keeps its write-ahead claim in the VPSieNode's annotations
        (``VPSieNodeClaimStore``): writing it before add-node, dropping it when VPSie refuses. Those
        writes are this reconcile's own, yet they move ``resourceVersion``, so the status write (and the
        locked failure patch) on the version read at the start would always answer Conflict; a refused
        create would then be retried forever instead of failing the record, and the group would never
        back off. Like controller-runtime's ``Update`` returning the object it wrote, we continue from
        the server's version, but only while the status is still the one we decided on: a status
        changed by anyone else still ends this reconcile with Conflict (the optimistic lock's purpose).
        """
        fresh = await self.client.get(VPSIENODES, vn.metadata.name)
        if (fresh.get("metadata") or {}).get("uid") != (obj.get("metadata") or {}).get("uid") or (
            fresh.get("status") or {}
        ) != (obj.get("status") or {}):
            raise errors.Conflict(f"VPSieNode {vn.metadata.name} changed while VPSie was called", status=409)
        return fresh, VPSieNode.from_k8s(fresh)

    def _record_instance(self, st: VPSieNodeStatus, instance: Instance) -> None:
        st.instance_identifier = instance.identifier or st.instance_identifier
        st.instance_id = instance.numeric_id if instance.numeric_id is not None else st.instance_id
        st.ip = instance.ip or st.ip

    def _check_timeout(self, vn: VPSieNode, st: VPSieNodeStatus) -> None:
        started = self._since(st, "Pending", vn.metadata.creation_timestamp)
        timeout = self._provision_timeout(vn)
        if self.clock.now() - started > timeout:
            raise _Failed(
                keys.REASON_PROVISION_TIMEOUT,
                ErrorClass.TRANSIENT,
                f"not Ready within maxProvisionTime {timeout}",
            )

    async def _provisioning(
        self,
        obj: dict[str, Any],
        vn: VPSieNode,
        st: VPSieNodeStatus,
        provider: NodeProvider,
        source: NodeSource,
    ) -> Result:
        self._check_timeout(vn, st)
        instance = await self._instance(provider, source, vn)
        if instance is None:
            accepted = self._since(st, "Provisioning", None)
            if (self.clock.now() - accepted).total_seconds() > self.options.instance_appear_grace:
                raise _Failed(
                    keys.REASON_INSTANCE_NOT_FOUND, ErrorClass.NOT_FOUND, "VPSie no longer lists the instance"
                )
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        self._record_instance(st, instance)
        if instance.state is InstanceState.FAILED:
            raise _Failed(
                keys.REASON_INSTANCE_FAILED, ErrorClass.TRANSIENT, "VPSie reports the instance failed"
            )
        if instance.state is not InstanceState.RUNNING:
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        node_name = instance.node_name
        other = [
            o["metadata"]["name"]
            for o in self.vpsienodes.store.by_index(NODE_NAME_INDEX, node_name)
            if o["metadata"]["name"] != vn.metadata.name
        ]
        node = self.nodes.store.get(node_name)
        owner = claimed_by_other(vn.metadata.name, node) if node is not None else None
        if other or owner:
            claimant = (other or [owner])[0]
            log.error("node.claimed_twice", vpsienode=vn.metadata.name, node=node_name, other=claimant)
            note = f"Node {node_name} already belongs to VPSieNode {claimant}"
            self._event(obj, "Warning", keys.REASON_NODE_CLAIMED, note, ACTION_PROVISION)
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        st.node_name = node_name
        self._enter(st, "Joining")
        if node is None:
            self._cond(
                vn, st, CONDITION_REGISTERED, False, "NodeNotRegistered", f"waiting for Node {node_name}"
            )
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        self._cond(vn, st, CONDITION_REGISTERED, True, keys.REASON_REGISTERED, f"Node {node_name} registered")
        await self._join(obj, vn, node)
        if not node_ready(node):
            self._cond(vn, st, CONDITION_READY, False, "NodeNotReady", f"Node {node_name} is not Ready yet")
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        self._enter(st, "Ready")
        st.last_error = None
        self._cond(vn, st, CONDITION_READY, True, keys.REASON_READY, f"Node {node_name} is Ready")
        took = (self.clock.now() - self._since(st, "Pending", vn.metadata.creation_timestamp)).total_seconds()
        await self._write(obj, vn, st)  # a stale read ends here with Conflict: observed once per node
        self.metrics.node_provision_duration_seconds.observe(max(took, 0.0))
        self._event(
            obj, "Normal", keys.REASON_READY, f"Node {node_name} is Ready after {took:.0f}s", ACTION_PROVISION
        )
        return Result(requeue_after=self.options.resync_interval)

    async def _join(self, obj: dict[str, Any], vn: VPSieNode, node: dict[str, Any]) -> None:
        if self.options.dry_run:
            return
        if await apply_join(self.client, vn, node):
            log.info("node.labelled", vpsienode=vn.metadata.name, node=node["metadata"]["name"])

    async def _ready(
        self,
        obj: dict[str, Any],
        vn: VPSieNode,
        st: VPSieNodeStatus,
        provider: NodeProvider,
        source: NodeSource,
    ) -> Result:
        node = self.nodes.store.get(st.node_name or "") if st.node_name else None
        if node is None:
            self._cond(vn, st, CONDITION_READY, False, "NodeNotFound", f"Node {st.node_name} does not exist")
            ready = next(c for c in st.conditions if c.type == CONDITION_READY)
            lost_for = (self.clock.now() - ready.last_transition_time).total_seconds()
            if lost_for > self.options.node_lost_grace:
                raise _Failed(
                    keys.REASON_NODE_LOST, None, f"Node {st.node_name} has been gone for {lost_for:.0f}s"
                )
            await self._write(obj, vn, st)
            return Result(requeue_after=min(self.options.poll_interval, self.options.node_lost_grace))
        await self._join(obj, vn, node)
        if not self.options.dry_run and await self.drain.untaint(node):
            # Our taint on a node nobody is draining (an aborted drain that did not finish its cleanup).
            log.info("node.stale_taint_removed", vpsienode=vn.metadata.name, node=st.node_name)
        ok = node_ready(node)
        self._cond(
            vn,
            st,
            CONDITION_READY,
            ok,
            keys.REASON_READY if ok else "NodeNotReady",
            f"Node {st.node_name} is {'Ready' if ok else 'not Ready'}",
        )
        await self._write(obj, vn, st)
        return Result(requeue_after=self.options.resync_interval)

    # -- failure ----------------------------------------------------------------------------------

    async def _fail(self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus, failed: _Failed) -> Result:
        annotations: dict[str, str | None] = {keys.FAILED_REASON_ANNOTATION: failed.reason}
        annotations[keys.ERROR_CLASS_ANNOTATION] = failed.klass.value if failed.klass is not None else None
        # Locked on the version read: a stale reconcile gets Conflict instead of failing the node twice.
        patch = {"metadata": {"annotations": annotations, "resourceVersion": vn.metadata.resource_version}}
        obj = await self.client.merge_patch(VPSIENODES, vn.metadata.name, patch)
        log.warning(
            "vpsienode.failed", vpsienode=vn.metadata.name, reason=failed.reason, error=failed.message
        )
        self._enter(st, "Failed")
        st.last_error = f"{failed.reason}: {failed.message}"[:1024]
        self._cond(vn, st, CONDITION_READY, False, failed.reason, failed.message[:1024])
        self._event(obj, "Warning", failed.reason, failed.message, ACTION_PROVISION)
        await self._write(obj, vn, st)
        return Result(requeue_after=self.options.poll_interval)

    async def _failed(self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus) -> Result:
        """A Failed record keeps its instance deleted (it may appear late after a timed-out create)."""
        if self.options.dry_run:
            return Result(requeue_after=self.options.resync_interval)
        source = await self.providers.source_of(vn)
        provider = self.providers.provider_for(source, fresh=True)
        gone = await self._delete_instance(obj, vn, provider, source)
        await self._delete_node(vn)
        return Result(requeue_after=self.options.resync_interval if gone else self.options.poll_interval)

    # -- deleting ---------------------------------------------------------------------------------

    async def _delete_instance(
        self, obj: dict[str, Any], vn: VPSieNode, provider: NodeProvider, source: NodeSource
    ) -> bool:
        """Ask VPSie to delete the instance; True once VPSie no longer lists it."""
        instance = await self._instance(provider, source, vn)
        if instance is None:
            return True
        try:
            await provider.delete(instance)
        except InstanceNotReady:
            log.info("instance.not_ready_for_delete", vpsienode=vn.metadata.name, hostname=instance.hostname)
            return False
        except VPSieError as exc:
            self._event(
                obj, "Warning", keys.REASON_DELETE_FAILED, f"VPSie refused the deletion: {exc}", ACTION_DELETE
            )
            raise
        self._event(
            obj,
            "Normal",
            keys.REASON_INSTANCE_DELETED,
            f"asked VPSie to delete {instance.hostname}",
            ACTION_DELETE,
        )
        return await self._instance(provider, source, vn) is None

    async def _delete_node(self, vn: VPSieNode) -> None:
        """Delete the Node of this VPSieNode, and only if it is ours (labelled for it, or no other owner)."""
        name = vn.status.node_name
        if not name:
            return
        node = self.nodes.store.get(name)
        if node is None or claimed_by_other(vn.metadata.name, node):
            return
        try:
            await self.client.delete(NODES, name)
        except errors.NotFound:
            return
        log.info("node.deleted", vpsienode=vn.metadata.name, node=name)

    async def _finalize(self, obj: dict[str, Any], vn: VPSieNode) -> Result:
        if INSTANCE_FINALIZER not in vn.metadata.finalizers:
            return Result()
        if self.options.dry_run:
            self._dry(obj, f"drain, delete instance {vn.spec.hostname} and its Node")
            return Result(requeue_after=self.options.resync_interval)
        st = vn.status.model_copy(deep=True)
        was = st.phase
        self._enter(st, "Deleting")
        obj = await self._write(obj, vn, st)
        deleted_at = vn.metadata.deletion_timestamp or self.clock.now()
        node = self.nodes.store.get(vn.status.node_name) if vn.status.node_name else None
        if (
            node is not None
            and was not in ("Failed", "Pending", "Provisioning")
            and not claimed_by_other(vn.metadata.name, node)
        ):
            within = self.clock.now() - deleted_at < self._grace(vn)
            if within:
                await self.drain.taint(node)
                progress = await self.drain.step(node["metadata"]["name"])
                if not progress.done:
                    return Result(requeue_after=self.options.poll_interval)
        source = await self.providers.source_of(vn)
        provider = self.providers.provider_for(source, fresh=True)
        gone = await self._delete_instance(obj, vn, provider, source)
        if not gone and (self.clock.now() - deleted_at).total_seconds() < self.options.instance_gone_wait:
            return Result(requeue_after=self.options.poll_interval)
        if not gone:
            log.warning(
                "instance.still_listed",
                vpsienode=vn.metadata.name,
                note="releasing the record; garbage collection removes the instance if it stays",
            )
        await self._delete_node(vn)
        await remove_finalizer(self.client, VPSIENODES, obj, INSTANCE_FINALIZER)
        log.info("vpsienode.released", vpsienode=vn.metadata.name)
        return Result()

    # -- drain ------------------------------------------------------------------------------------

    async def _drain(self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus) -> Result:
        annotations = vn.metadata.annotations
        reason = annotations.get(DRAIN_REASON_ANNOTATION, "Requested")
        node = self.nodes.store.get(st.node_name) if st.node_name else None
        if node is None or claimed_by_other(vn.metadata.name, node):
            # Nothing runs there (not joined yet, or the Node is gone): remove the capacity right away.
            return await self._drained(obj, vn, reason, "no Node to drain")
        requested = parse_time(annotations.get(DRAIN_REQUESTED_ANNOTATION)) or self._since(
            st, "Draining", None
        )
        if self.options.dry_run:
            self._dry(obj, f"drain Node {st.node_name} ({reason}) and delete it")
            return Result(requeue_after=self.options.resync_interval)
        if st.phase != "Draining":
            self._enter(st, "Draining")
            self._cond(vn, st, CONDITION_DRAINED, False, keys.REASON_DRAINING, f"draining ({reason})")
            self._event(
                obj, "Normal", keys.REASON_DRAINING, f"draining Node {st.node_name}: {reason}", ACTION_DRAIN
            )
        grace = self._grace(vn)
        expired = self.clock.now() - requested > grace
        if not expired:
            await self.drain.taint(node)
        progress = await self.drain.step(st.node_name or "", evict=not expired)
        if progress.done:
            return await self._drained(obj, vn, reason, f"{progress.evicted} pod(s) evicted in the last pass")
        if progress.blocker:
            st.last_error = f"eviction refused: {progress.blocker}"[:1024]
        if expired:
            return await self._abort_drain(obj, vn, st, node, grace, progress.remaining)
        await self._write(obj, vn, st)
        return Result(requeue_after=self.options.poll_interval)

    async def _drained(self, obj: dict[str, Any], vn: VPSieNode, reason: str, detail: str) -> Result:
        # Preconditions: a reconcile on a stale cache gets Conflict instead of counting the removal twice.
        preconditions = {"uid": vn.metadata.uid or "", "resourceVersion": vn.metadata.resource_version or ""}
        try:
            await self.client.delete(VPSIENODES, vn.metadata.name, preconditions=preconditions)
        except errors.NotFound:
            return Result()
        # scale_down_total is counted by the requester (scale-down, maxNodes enforcement), not here.
        note = f"drained ({reason}; {detail}); deleting"
        self._event(obj, "Normal", keys.REASON_DRAINED, note, ACTION_DRAIN)
        return Result()

    async def _abort_drain(  # noqa: PLR0917 - the drain's state, passed on from _drain
        self,
        obj: dict[str, Any],
        vn: VPSieNode,
        st: VPSieNodeStatus,
        node: dict[str, Any],
        grace: timedelta,
        remaining: list[str],
    ) -> Result:
        blocker = (st.last_error or "").removeprefix(
            "eviction refused: "
        ) or f"pod {remaining[0]} did not leave"
        note = f"drain did not finish within maxGracefulTermination {grace}: blocked by {blocker}"
        # The request is withdrawn first, locked on the version read: a reconcile on a stale cache stops
        # here with Conflict instead of tainting or untainting the Node again.
        withdraw = {DRAIN_REQUESTED_ANNOTATION: None, DRAIN_REASON_ANNOTATION: None}
        obj = await self.client.merge_patch(
            VPSIENODES,
            vn.metadata.name,
            {"metadata": {"annotations": withdraw, "resourceVersion": vn.metadata.resource_version}},
        )
        await self.drain.untaint(node)
        self._enter(st, "Ready")
        self._cond(vn, st, CONDITION_DRAINED, False, keys.REASON_DRAIN_FAILED, note[:1024])
        self._event(obj, "Warning", keys.REASON_DRAIN_FAILED, note, ACTION_DRAIN)
        self.recorder.event(node, "Warning", keys.REASON_DRAIN_FAILED, note, ACTION_DRAIN)
        log.warning("drain.failed", vpsienode=vn.metadata.name, blocker=blocker)
        await self._write(obj, vn, st)
        return Result(requeue_after=self.options.resync_interval)
