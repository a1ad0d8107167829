"""The VPSieNode lifecycle: one VPSie instance from request to deletion (Karpenter's NodeClaim lifecycle).

This controller is the only writer of VPSieNodes after their creation (finalizer, status, failure
annotations); requesters only create them, ask for a drain (annotations) or delete them.

Phases (``status.phase``; each entry time in ``status.phaseTimestamps``, so every timer survives a
restart or a new leader)::

    Pending ──launch record, create──▶ Provisioning ──running──▶ Joining ──Node Ready──▶ Ready ──▶ Draining
       │                                    │                        │                    │
       └─ create refused / not Ready within maxProvisionTime ──▶ Failed        Node lost ─┘
    (deletionTimestamp) ──▶ Deleting: drain, delete the instance by identifier, delete the Node, finalizer

- **Finalizer first.** Nothing is asked of VPSie before ``INSTANCE_FINALIZER`` is on the object.
- **Launch record, then one call.** ``status.launch`` (requested hostname, time, the group's baseline
  for managed groups) is written *before* the create call; from then on the request counts as sent,
  whatever the call's outcome (``DONE`` or ``UNKNOWN``: an answer lost to a timeout, a gateway error,
  a reset or a cancellation). Only a ``NOT_DONE`` outcome (refused before or by VPSie) fails the record
  (``CreateFailed`` with the error class) so the group backs off. Nothing is ever asked twice.
- **Evidence binds.** The instance that answers a launch is found in the shared listing of its group
  (:mod:`.binding`: a VM by its hostname, a managed node as the oldest new node no record owns) and
  written to ``status.launch.bound*`` at once. A record created to adopt an instance nobody asked for
  (``spec.adopt``) is bound from the start.
- **Failure.** An instance VPSie reports failed, an instance that vanished, or a node not Ready within
  ``maxProvisionTime`` → ``Failed``. Provisioning time counts only while VPSie answers: an outage never
  fails a record, and a record whose Node is Ready is never failed by time.
- **Joining.** The Node gets ``spec.labels``, ``spec.taints``, ``NODEGROUP_LABEL`` and ``VPSIENODE_LABEL``;
  a Node already labelled for another VPSieNode is never claimed twice.
- **Node lost.** A Ready VPSieNode whose Node has been missing for ``node_lost_grace`` → ``Failed``.
- **Drain protocol.** ``DRAIN_REQUESTED_ANNOTATION`` → ``Draining``: taint, evict (429 → next pass),
  then delete the VPSieNode; past ``maxGracefulTermination`` the drain is aborted (``DrainFailed``).
- **Deletion.** Drain; past ``maxGracefulTermination`` a drain blocked by PDBs waits and says why
  unless the NodeGroup sets ``forceTerminationAfterGrace``. Then delete the bound instance by
  identifier (never "any node of the group") until the listing no longer shows it, delete the Node,
  drop the finalizer. A launch never answered is waited for up to ``maxProvisionTime``.
- **Errors are outcomes.** A VPSie error requeues after a delay from its class, bounded by the group's
  back-off maximum; a fenced process (not sure it still leads) sends nothing and requeues.

Dry-run: phases and status are still observed and reported, but nothing is created, deleted,
tainted or evicted; each skipped action is logged and recorded as a ``DryRun`` Event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

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
    LaunchRecord,
    Phase,
    VPSieNode,
    VPSieNodeStatus,
)
from vpsie_autoscaler.controllers.cloud import Providers, ownership_tags
from vpsie_autoscaler.controllers.cluster_state import InvalidObject, InvalidObjects, parse_vpsienode
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.controllers.objects import (
    add_finalizer,
    ensure_index,
    labels_of,
    parse_time,
    patch_status,
    remove_finalizer,
)
from vpsie_autoscaler.controllers.vpsienode import keys
from vpsie_autoscaler.controllers.vpsienode.binding import (
    BindingBook,
    Waiting,
    assign,
    bound_key,
    instance_key,
    raw_owned_key,
    source_key_of_object,
    source_key_of_spec,
)
from vpsie_autoscaler.controllers.vpsienode.drain import DrainExecutor
from vpsie_autoscaler.controllers.vpsienode.nodes import apply_join, claimed_by_other, node_ready
from vpsie_autoscaler.controllers.vpsienode.outages import Outages, retry_delay
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import NODES, VPSIENODES
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.runtime.controller import Request, Result
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.fence import NotLeader
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.errors import ErrorClass, VPSieError, error_class
from vpsie_autoscaler.vpsie.provider import (
    CreateRequest,
    Instance,
    InstanceState,
    ManagedSource,
    NodeSource,
    Outcome,
    VMSource,
)
from vpsie_autoscaler.vpsie.provider import Taint as ProviderTaint

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")

LaunchOutcome = Literal["Done", "Unknown"]

NODE_NAME_INDEX: Final = "lifecycle.nodeName"
"""VPSieNode index: ``status.nodeName`` → VPSieNodes (Node events → requests; double-claim guard)."""
SOURCE_INDEX: Final = "lifecycle.source"
"""VPSieNode index: the VPSie source (managed group or VM group) → its records (binding)."""

# Cadence. VPSie cannot be watched, so provisioning is polled; a booting node changes every few seconds.
DEFAULT_POLL_SECONDS: Final = 5.0
# A Ready node is re-checked against the cloud this often (the Node informer covers the rest).
DEFAULT_RESYNC_SECONDS: Final = 60.0
# A Node missing this long while its VPSieNode is Ready is lost (kubelet re-registration takes seconds).
DEFAULT_NODE_LOST_GRACE_SECONDS: Final = 60.0
# After VPSie accepted a create, the instance may take a moment to show in the lists.
DEFAULT_INSTANCE_APPEAR_GRACE_SECONDS: Final = 60.0
# Deleting: the instance's disappearance is checked on a listing this old at most (shared by every record
# of the group), and a targeted delete still listed is sent again after this long (VPSie may drop one).
DEFAULT_DELETE_POLL_SECONDS: Final = 10.0
DEFAULT_DELETE_RESEND_SECONDS: Final = 60.0

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
    delete_poll_interval: float = DEFAULT_DELETE_POLL_SECONDS
    delete_resend: float = DEFAULT_DELETE_RESEND_SECONDS


def node_name_index(obj: Mapping[str, Any]) -> list[str]:
    name = (obj.get("status") or {}).get("nodeName")
    return [name] if name else []


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


def source_index(obj: Mapping[str, Any]) -> list[str]:
    return source_key_of_object(obj)


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
        book: BindingBook | None = None,
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
        self.book = book or BindingBook()
        self.outages = Outages()
        self._outcomes: dict[
            str, LaunchOutcome
        ] = {}  # record → launch outcome, until written with the binding
        self._delete_sent: dict[str, float] = {}  # record uid → monotonic time of the last delete sent
        self.invalid = InvalidObjects("VPSieNode", metrics)
        ensure_index(vpsienodes, NODE_NAME_INDEX, node_name_index)
        ensure_index(vpsienodes, SOURCE_INDEX, source_index)

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

    def _records_of(self, vn: VPSieNode) -> tuple[list[VPSieNode], set[str]]:
        """Every record sharing this record's source (the candidates for the same instances), and the
        instances owned by records of the source that cannot be parsed (never handed to another)."""
        records, unparsable = [], set()
        for o in self.vpsienodes.store.by_index(SOURCE_INDEX, source_key_of_spec(vn.spec)):
            try:
                records.append(VPSieNode.from_k8s(o))
            except ValidationError:
                key = raw_owned_key(o)
                if key is not None:
                    unparsable.add(key)
        return records, unparsable

    # -- reconcile --------------------------------------------------------------------------------

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
                self._event(obj, "Warning", keys.REASON_INVALID, f"cannot parse: {exc}{kept}", "Validate")
            return Result()
        self.invalid.forget(request.name)
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
        except NotLeader as exc:
            log.info("vpsienode.fenced", vpsienode=request.name, reason=str(exc))
            return Result(requeue_after=self.options.poll_interval)
        except VPSieError as exc:
            return self._cloud_error(vn, exc)

    def _cloud_error(self, vn: VPSieNode, exc: VPSieError) -> Result:
        """A VPSie error is an outcome, not a crash: requeue after a delay from its class, bounded by
        the group's back-off maximum (never the work queue's exponential per-item back-off)."""
        klass = error_class(exc)
        delay = retry_delay(exc, self.options.poll_interval)
        group = self._group(vn.spec.node_group)
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

    async def _advance(self, obj: dict[str, Any], vn: VPSieNode) -> Result:
        st = vn.status.model_copy(deep=True)
        if st.phase is None:
            self._enter(st, "Pending")
        phase = st.phase or "Pending"
        if phase == "Failed":
            return await self._failed(obj, vn, st)
        if DRAIN_REQUESTED_ANNOTATION in vn.metadata.annotations or phase == "Draining":
            return await self._drain(obj, vn, st)
        if phase == "Ready":
            try:
                return await self._ready(obj, vn, st)
            except _Failed as failed:  # NodeLost
                return await self._fail(obj, vn, st, failed)
        if phase != "Pending" and st.launch is None:
            st.launch = legacy_launch(vn)  # a record from before launch records: written with the next status
        try:
            source = await self.providers.source_of(vn)
            if phase == "Pending" and st.launch is None:
                return await self._launch(obj, vn, st, source)
            return await self._provisioning(obj, vn, st, source)
        except _Failed as failed:
            return await self._fail(obj, vn, st, failed)

    async def _listing(self, source: NodeSource, *, max_age: float) -> list[Instance]:
        """The shared listing; VPSie's silence is remembered so it never counts as provisioning time."""
        key = str(source)
        try:
            listed = await self.providers.listing(source, max_age=max_age)
        except VPSieError:
            self.outages.down(key, self.clock.now())
            raise
        self.outages.up(key, self.clock.now())
        return listed

    async def _launch(
        self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus, source: NodeSource
    ) -> Result:
        """Write the launch record, then ask VPSie once. From the write on, the request counts as sent."""
        now = self.clock.now()
        if vn.spec.adopt is not None:
            target = vn.spec.adopt
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
            self._enter(st, "Provisioning")
            self._cond(vn, st, CONDITION_LAUNCHED, True, keys.REASON_ADOPTED, "existing instance adopted")
            await self._write(obj, vn, st)
            self.book.expect(target.hostname.lower(), vn.metadata.name)
            self._event(
                obj,
                "Normal",
                keys.REASON_ADOPTED,
                f"adopted VPSie instance {target.hostname}: it was in the group without a record",
                ACTION_PROVISION,
            )
            return Result(requeue=True)
        if self.options.dry_run:
            await self._write(obj, vn, st)
            self._dry(obj, f"create VPSie instance {vn.spec.hostname}")
            return Result(requeue_after=self.options.resync_interval)
        self.providers.fence.check("launch")  # before the record: a fenced process writes nothing
        baseline: list[str] = []
        tags: tuple[str, ...] = ()
        if isinstance(source, VMSource):
            tags = ownership_tags(await self.providers.identity.get(), vn.spec.node_group)
        if isinstance(source, ManagedSource):
            listed = await self._listing(source, max_age=self.options.poll_interval)
            baseline = sorted({i.hostname.lower() for i in listed})
        st.launch = LaunchRecord(requested_hostname=vn.spec.hostname, sent_at=now, baseline=baseline)
        self._enter(st, "Provisioning")
        self._cond(vn, st, CONDITION_LAUNCHED, False, keys.REASON_LAUNCHING, "asking VPSie for the instance")
        obj = await self._write(obj, vn, st)  # write-ahead; a Conflict here ends the pass, nothing sent
        vn = VPSieNode.from_k8s(obj)
        request = CreateRequest(
            hostname=vn.spec.hostname,
            source=source,
            labels=dict(vn.spec.labels),
            taints=tuple(
                ProviderTaint(key=t.key, effect=t.effect, value=t.value or "") for t in vn.spec.taints
            ),
            tags=tags,
        )
        result = await self.providers.launch(request)
        self.metrics.launches_total.labels(nodegroup=vn.spec.node_group, outcome=result.outcome.value).inc()
        if not result.sent:
            error = result.error or VPSieError("not sent")
            st.launch.outcome = "NotDone"  # written with Failed: nothing will ever answer this launch
            failed = _Failed(
                keys.REASON_CREATE_FAILED, error_class(error), f"VPSie refused the creation: {error}"
            )
            return await self._fail(obj, vn, st, failed)
        self._outcomes[vn.metadata.name] = "Done" if result.outcome is Outcome.DONE else "Unknown"
        if result.outcome is Outcome.DONE:
            note = f"VPSie accepted the creation of {vn.spec.hostname}"
        else:
            note = (
                f"the answer to the creation of {vn.spec.hostname} was lost ({result.detail}); it counts as "
                "sent: waiting for the instance"
            )
        self._event(obj, "Normal", keys.REASON_LAUNCHED, note, ACTION_PROVISION)
        return Result(requeue_after=self.options.poll_interval)

    async def _bound_instance(
        self,
        obj: dict[str, Any],
        vn: VPSieNode,
        st: VPSieNodeStatus,
        source: NodeSource,
        listed: list[Instance],
    ) -> tuple[dict[str, Any], Instance | None]:
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
        if self.book.expected_for(vn.metadata.name) is not None:
            # Bound by this process already; the cache has not caught up. Never bind twice: re-read.
            raise errors.Conflict(
                f"VPSieNode {vn.metadata.name}: the cache is behind our binding", status=409
            )
        async with self.book.lock(source):
            records, unparsable = self._records_of(vn)
            waiting, owned = self.book.view(records)
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
            st.launch.bound_at = self.clock.now()
            st.launch.outcome = st.launch.outcome or self._outcomes.pop(vn.metadata.name, None)
            self._record_instance(st, found)
            self._cond(vn, st, CONDITION_LAUNCHED, True, keys.REASON_LAUNCHED, f"instance {found.hostname}")
            obj = await self._write(obj, vn, st)
            self.book.expect(instance_key(found), vn.metadata.name)
        log.info("vpsienode.bound", vpsienode=vn.metadata.name, hostname=found.hostname)
        return obj, found

    def _record_instance(self, st: VPSieNodeStatus, instance: Instance) -> None:
        st.instance_identifier = instance.identifier or st.instance_identifier
        st.instance_id = instance.numeric_id if instance.numeric_id is not None else st.instance_id
        st.ip = instance.ip or st.ip

    def _check_timeout(self, vn: VPSieNode, st: VPSieNodeStatus, source: NodeSource) -> None:
        """Not Ready within maxProvisionTime, counting only the time VPSie answered (an outage never
        turns a healthy node into a failed one)."""
        started = self._since(st, "Pending", vn.metadata.creation_timestamp)
        timeout = self._provision_timeout(vn)
        now = self.clock.now()
        silent = self.outages.silent_between(str(source), started, now)
        if now - started - silent <= timeout:
            return
        launch = st.launch
        if (
            launch is not None
            and launch.bound_hostname is None
            and launch.outcome is None
            and (vn.metadata.name not in self._outcomes)
        ):
            # Nobody saw the create's answer: a leader died between the record and the call (or during
            # it). Whether VPSie was asked at all is unknown, so it is no evidence against VPSie: the
            # record fails (a late node is adopted) without backing the group off.
            raise _Failed(
                keys.REASON_PROVISION_TIMEOUT,
                None,
                f"no instance answered within maxProvisionTime {timeout}; the launch's answer was never "
                "recorded (a restart during the launch), so the group does not back off",
            )
        raise _Failed(
            keys.REASON_PROVISION_TIMEOUT,
            ErrorClass.TRANSIENT,
            f"not Ready within maxProvisionTime {timeout}",
        )

    async def _provisioning(
        self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus, source: NodeSource
    ) -> Result:
        listed = await self._listing(source, max_age=self.options.poll_interval)
        obj, instance = await self._bound_instance(obj, vn, st, source, listed)
        if instance is None:
            if st.launch is not None and st.launch.bound_at is not None:
                gone_for = (self.clock.now() - st.launch.bound_at).total_seconds()
                if gone_for > self.options.instance_appear_grace:
                    raise _Failed(
                        keys.REASON_INSTANCE_NOT_FOUND,
                        ErrorClass.NOT_FOUND,
                        f"VPSie no longer lists instance {st.launch.bound_hostname}",
                    )
            self._check_timeout(vn, st, source)
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        self._record_instance(st, instance)
        if instance.state is InstanceState.FAILED:
            raise _Failed(
                keys.REASON_INSTANCE_FAILED, ErrorClass.TRANSIENT, "VPSie reports the instance failed"
            )
        if instance.state is not InstanceState.RUNNING:
            self._check_timeout(vn, st, source)
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
            self._check_timeout(vn, st, source)
            self._cond(
                vn, st, CONDITION_REGISTERED, False, "NodeNotRegistered", f"waiting for Node {node_name}"
            )
            await self._write(obj, vn, st)
            return Result(requeue_after=self.options.poll_interval)
        self._cond(vn, st, CONDITION_REGISTERED, True, keys.REASON_REGISTERED, f"Node {node_name} registered")
        await self._join(obj, vn, node)
        if not node_ready(node):
            self._check_timeout(vn, st, source)
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

    async def _ready(self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus) -> Result:
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
        """A Failed record keeps the instance it was bound to deleted. A managed one never binds a new
        one: a node arriving late for it is adopted (then scaled down with a drain like any other), so
        a record that will never get its own node can never take, and delete, the node of a newer
        launch. A VM record still binds (and deletes) the late VM of its own hostname.

        A node that joined late may already run pods (the scheduler uses a Ready Node at once, before
        this controller sees it): it is tainted and drained like any other before its instance goes,
        so a failed launch never takes pods down with it."""
        if self.options.dry_run:
            return Result(requeue_after=self.options.resync_interval)
        if st.launch is None or (bound_key(vn) is None and vn.spec.managed is not None):
            return Result(requeue_after=self.options.resync_interval)  # nothing of ours to delete
        source = await self.providers.source_of(vn)
        listed = await self._listing(source, max_age=self.options.delete_poll_interval)
        obj, instance = await self._bound_instance(obj, vn, st, source, listed)  # a late VM of ours
        if instance is None:
            return Result(requeue_after=self.options.resync_interval)
        node = self._node_of(vn, st) or self._own_node(vn, instance.node_name)
        if node is not None:
            obj, vn = await self._name_node(obj, vn, st, node)
        if node is not None and node_ready(node):
            failed_at = self._since(st, "Failed", vn.metadata.creation_timestamp)
            if not await self._drained_before_delete(obj, vn, st, node, failed_at):
                return Result(requeue_after=self.options.poll_interval)
        await self._delete_instance(obj, vn, instance)
        await self._delete_node(vn)
        return Result(requeue_after=self.options.delete_poll_interval)

    # -- deleting ---------------------------------------------------------------------------------

    async def _delete_instance(self, obj: dict[str, Any], vn: VPSieNode, instance: Instance) -> None:
        """Ask VPSie to delete exactly this instance. Sent again only after ``delete_resend`` (a
        targeted delete is idempotent; the memory only saves calls, it decides nothing)."""
        uid = vn.metadata.uid or vn.metadata.name
        last = self._delete_sent.get(uid)
        if last is not None and self.clock.monotonic() - last < self.options.delete_resend:
            return
        result = await self.providers.delete(instance)
        if not result.sent:
            error = result.error or VPSieError("not sent")
            self._event(
                obj,
                "Warning",
                keys.REASON_DELETE_FAILED,
                f"VPSie refused the deletion: {error}",
                ACTION_DELETE,
            )
            if isinstance(error, VPSieError):
                raise error
            return
        self._delete_sent[uid] = self.clock.monotonic()
        outcome = "" if result.outcome is Outcome.DONE else f" (answer lost: {result.detail}; counts as sent)"
        self._event(
            obj,
            "Normal",
            keys.REASON_INSTANCE_DELETED,
            f"asked VPSie to delete {instance.hostname}{outcome}",
            ACTION_DELETE,
        )

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
        vn = VPSieNode.from_k8s(obj)
        deleted_at = vn.metadata.deletion_timestamp or self.clock.now()
        node = self._node_of(vn, st)
        if node is not None:
            obj, vn = await self._name_node(obj, vn, st, node)
        # A node that never became Ready for us is drained too once the cluster sees it Ready: pods
        # may already run there. One that is not Ready runs nothing an eviction could move.
        if (
            node is not None
            and (was not in ("Failed", "Pending", "Provisioning") or node_ready(node))
            and not await self._drained_before_delete(obj, vn, st, node, deleted_at)
        ):
            return Result(requeue_after=self.options.poll_interval)
        if st.launch is None and vn.spec.adopt is None:
            return await self._release(obj, vn, "no instance was ever requested")
        source = await self.providers.source_of(vn)
        listed = await self._listing(source, max_age=self.options.delete_poll_interval)
        obj, instance = await self._bound_instance(obj, vn, st, source, listed)
        if instance is not None:
            await self._delete_instance(obj, vn, instance)
            return Result(requeue_after=self.options.poll_interval)
        if (
            bound_key(vn) is None
            and st.launch is not None
            and st.launch.outcome != "NotDone"
            and vn.status.phase != "Failed"
        ):
            # Sent, never answered: the node may still come. Wait for it (bounded), then let it go:
            # a node arriving later has no record and is adopted, never lost.
            waited = self.clock.now() - st.launch.sent_at
            if waited < self._provision_timeout(vn):
                return Result(requeue_after=self.options.poll_interval)
            log.warning(
                "vpsienode.launch_unanswered",
                vpsienode=vn.metadata.name,
                note="no instance answered the launch; releasing the record (a late one is adopted)",
            )
            return await self._release(obj, vn, "the launch was never answered")
        if bound_key(vn) is None:
            return await self._release(
                obj, vn, "nothing can answer the launch (refused, or the record failed)"
            )
        return await self._release(obj, vn, "VPSie no longer lists the instance")

    def _own_node(self, vn: VPSieNode, name: str | None) -> dict[str, Any] | None:
        """The Node of this record, when it exists and no other VPSieNode claims it."""
        node = self.nodes.store.get(name) if name else None
        if node is None or claimed_by_other(vn.metadata.name, node):
            return None
        return node

    def _node_of(self, vn: VPSieNode, st: VPSieNodeStatus) -> dict[str, Any] | None:
        """The Node this record's instance registered, even before this controller saw it join.

        The scheduler uses a Ready Node at once, and scale-down finds a Node's VPSieNode by
        ``status.nodeName`` and then by hostname (``cluster_state``): a record whose node joined
        while VPSie's listing was failing has pods on a Node its status does not name yet. So the
        Node is looked up the same way: ``status.nodeName``, the bound instance's hostname, and for
        a plain VM the hostname it was created with (VPSie lowercases hostnames into Node names)."""
        names = [st.node_name]
        if st.launch is not None and st.launch.bound_hostname:
            names.append(st.launch.bound_hostname.lower())
        if vn.spec.managed is None:
            names.append(vn.spec.hostname.lower())
        for name in names:
            node = self._own_node(vn, name)
            if node is not None:
                return node
        return None

    async def _name_node(
        self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus, node: dict[str, Any]
    ) -> tuple[dict[str, Any], VPSieNode]:
        """Record the Node found by hostname in status, so it is drained and deleted with the record."""
        if st.node_name == node["metadata"]["name"]:
            return obj, vn
        st.node_name = node["metadata"]["name"]
        obj = await self._write(obj, vn, st)
        return obj, VPSieNode.from_k8s(obj)

    async def _drained_before_delete(
        self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus, node: dict[str, Any], since: datetime
    ) -> bool:
        """Taint the Node and evict its pods; True once nothing that must leave is left on it (or,
        past ``maxGracefulTermination``, when the group forces termination). A drain that PDBs block
        past the grace waits and says why, as cluster-autoscaler's drain never breaks a PDB."""
        grace = self._grace(vn)
        within = self.clock.now() - since < grace
        await self.drain.taint(node)
        progress = await self.drain.step(node["metadata"]["name"])
        if progress.done:
            return True
        if within or not self._force_after_grace(vn):
            if not within:
                await self._termination_blocked(obj, vn, st, node, grace, progress.blocker)
            return False
        log.warning("drain.forced", vpsienode=vn.metadata.name, remaining=len(progress.remaining))
        return True

    async def _release(self, obj: dict[str, Any], vn: VPSieNode, why: str) -> Result:
        await self._delete_node(vn)
        await remove_finalizer(self.client, VPSIENODES, obj, INSTANCE_FINALIZER)
        self.book.forget(vn.metadata.name)
        self._delete_sent.pop(vn.metadata.uid or vn.metadata.name, None)
        self._outcomes.pop(vn.metadata.name, None)
        log.info("vpsienode.released", vpsienode=vn.metadata.name, why=why)
        return Result()

    def _force_after_grace(self, vn: VPSieNode) -> bool:
        group = self._group(vn.spec.node_group)
        return group is not None and group.spec.scale_down.force_termination_after_grace

    async def _termination_blocked(  # noqa: PLR0917 - the drain's state
        self,
        obj: dict[str, Any],
        vn: VPSieNode,
        st: VPSieNodeStatus,
        node: dict[str, Any],
        grace: timedelta,
        blocker: str | None,
    ) -> None:
        """Past maxGracefulTermination a drain that evictions cannot finish waits, and says why (a PDB
        is never broken unless the NodeGroup sets ``forceTerminationAfterGrace``)."""
        note = (
            f"deletion waits: drain did not finish within maxGracefulTermination {grace}: blocked by "
            f"{blocker or 'pods that did not leave'}; set scaleDown.forceTerminationAfterGrace to force it"
        )
        if st.last_error != note[:1024]:
            st.last_error = note[:1024]
            self._cond(vn, st, CONDITION_DRAINED, False, keys.REASON_DRAIN_FAILED, note[:1024])
            await self._write(obj, vn, st)
            self._event(obj, "Warning", keys.REASON_DRAIN_FAILED, note, ACTION_DRAIN)
            self.metrics.drain_failures_total.labels(vn.spec.node_group).inc()
            self.recorder.event(node, "Warning", keys.REASON_DRAIN_FAILED, note, ACTION_DRAIN)

    # -- drain ------------------------------------------------------------------------------------

    async def _drain(self, obj: dict[str, Any], vn: VPSieNode, st: VPSieNodeStatus) -> Result:
        annotations = vn.metadata.annotations
        reason = annotations.get(DRAIN_REASON_ANNOTATION, "Requested")
        node = self._node_of(vn, st)
        if node is None:
            # Nothing runs there (not joined yet, or the Node is gone): remove the capacity right away.
            return await self._drained(obj, vn, reason, "no Node to drain")
        st.node_name = node["metadata"]["name"]  # written with the Draining phase below
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
        self.metrics.drain_failures_total.labels(vn.spec.node_group).inc()
        await self._write(obj, vn, st)
        return Result(requeue_after=self.options.resync_interval)
