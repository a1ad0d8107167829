"""What every phase of the VPSieNode lifecycle shares, so each phase module holds only its own job.

:class:`Lifecycle` holds the clients and caches, the options, the in-memory notes, and the few moves
every phase makes the same way (enter a phase, set a condition, write status, read the shared VPSie
listing, find the record's Node). The reconciler is a :class:`Lifecycle` plus the dispatch, and hands
itself to each phase handler; handler modules are plain functions over it, read top to bottom.

Memory decides nothing here: ``outcomes`` only enriches the launch record written with the binding,
``delete_sent`` only saves repeated delete calls, ``outages`` only stops VPSie's silence from counting
as provisioning time, and ``book`` holds this process's binding writes its cache has not shown yet
(client-go's expectations). Everything a restart needs is in the API server (docs/lifecycle.md).

Every phase change goes through :meth:`Lifecycle.enter`, which refuses any move the phase table
(:mod:`~vpsie_autoscaler.controllers.vpsienode.phases`) does not list: the table is the lifecycle's
contract, not a comment.

Dry-run is the controllers' one seam (:class:`~vpsie_autoscaler.controllers.writes.Writes`): an action
is skipped and reported (log, and a ``DryRun`` Event "would …" on the record) where :meth:`Lifecycle.would`
says so — the finalizer (reconciler), the launch (:mod:`.launch`), a Failed record's instance
(:mod:`.failure`), the drain (:mod:`.draining`) and the deletion (:mod:`.termination`) — and the Node's
labels and stale taint (:mod:`.registration`) are written through :attr:`Lifecycle.writes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Final, Literal

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.nodegroup import (
    DEFAULT_MAX_GRACEFUL_TERMINATION,
    DEFAULT_MAX_PROVISION_TIME,
    NodeGroup,
)
from vpsie_autoscaler.api.types import set_condition
from vpsie_autoscaler.api.vpsienode import Phase, VPSieNode, VPSieNodeStatus
from vpsie_autoscaler.controllers import vpsienode_keys as keys
from vpsie_autoscaler.controllers.binding import (
    SOURCE_INDEX,
    BindingBook,
    raw_owned_key,
    source_index,
    source_key_of_spec,
)
from vpsie_autoscaler.controllers.cloud import Providers
from vpsie_autoscaler.controllers.cluster_state import InvalidObjects
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.controllers.nodes import claimed_by_other
from vpsie_autoscaler.controllers.objects import ensure_index, patch_status
from vpsie_autoscaler.controllers.vpsienode.drain import DrainExecutor
from vpsie_autoscaler.controllers.vpsienode.outages import Outages
from vpsie_autoscaler.controllers.writes import Writes
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.errors import VPSieError
from vpsie_autoscaler.vpsie.provider import Instance, NodeSource

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode")

Raw = dict[str, Any]
"""An object as the API server returned it (what writes send back and take)."""
LaunchOutcome = Literal["Done", "Unknown"]
Transitions = Mapping[Phase, frozenset[Phase]]
"""Phase → the phases a record may move to from it (the phase table's ``to`` column)."""

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


class IllegalTransition(RuntimeError):
    """A handler tried a phase change the phase table does not allow: a bug, never written."""

    def __init__(self, current: Phase, wanted: Phase) -> None:
        super().__init__(f"the phase table does not allow {current} → {wanted}")
        self.current, self.wanted = current, wanted


def enter_phase(st: VPSieNodeStatus, phase: Phase, now: datetime, transitions: Transitions) -> None:
    """Move ``st`` to ``phase`` and stamp the time, if ``transitions`` allow it from the current phase
    (a record without a phase moves as Pending). Staying in a phase is always allowed and stamps
    nothing. A refused move raises :class:`IllegalTransition` and changes nothing."""
    if st.phase == phase:
        return
    current: Phase = st.phase or "Pending"
    if phase != current and phase not in transitions.get(current, frozenset()):
        raise IllegalTransition(current, phase)
    st.phase = phase
    st.phase_timestamps[phase] = now


class Lifecycle:
    """The VPSieNode controller's dependencies and shared moves (see the module docstring).

    :class:`~vpsie_autoscaler.controllers.vpsienode.reconciler.VPSieNodeReconciler` is this plus the
    dispatch: it sets :attr:`transitions` from the phase table and hands itself to each handler,
    which sees only what is defined here."""

    transitions: ClassVar[Transitions] = MappingProxyType({})
    """The phase table's moves (none here: only the dispatcher, which owns the table, moves phases)."""

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
        writes: Writes | None = None,
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
        self.writes = writes or Writes(client, dry_run=self.options.dry_run, recorder=recorder)
        self.book = book or BindingBook(clock)
        self.drain = DrainExecutor(client, metrics)
        self.outages = Outages()
        self.outcomes: dict[str, LaunchOutcome] = {}  # record → outcome, until written with the binding
        self.delete_sent: dict[str, float] = {}  # record uid → monotonic time of the last delete sent
        self.invalid = InvalidObjects("VPSieNode", metrics)
        ensure_index(vpsienodes, NODE_NAME_INDEX, node_name_index)
        ensure_index(vpsienodes, SOURCE_INDEX, source_index)

    @property
    def dry_run(self) -> bool:
        return self.writes.dry_run

    # -- the record's NodeGroup (its timers and policies; defaults when it is gone) -----------------

    def group(self, name: str) -> NodeGroup | None:
        obj = self.nodegroups.store.get(name)
        if obj is None:
            return None
        try:
            return NodeGroup.from_k8s(obj)
        except ValidationError:
            return None

    def provision_timeout(self, vn: VPSieNode) -> timedelta:
        group = self.group(vn.spec.node_group)
        if group is None:
            return parse_duration(DEFAULT_MAX_PROVISION_TIME)
        return group.spec.provisioning.provision_timeout

    def grace(self, vn: VPSieNode) -> timedelta:
        group = self.group(vn.spec.node_group)
        if group is None:
            return parse_duration(DEFAULT_MAX_GRACEFUL_TERMINATION)
        return group.spec.scale_down.graceful_termination

    # The same two settings as the NodeGroup spells them ("10m", not "0:10:00"), for messages: the
    # text an operator reads is the text to look for in the NodeGroup.

    def provision_timeout_text(self, vn: VPSieNode) -> str:
        group = self.group(vn.spec.node_group)
        return DEFAULT_MAX_PROVISION_TIME if group is None else group.spec.provisioning.max_provision_time

    def grace_text(self, vn: VPSieNode) -> str:
        group = self.group(vn.spec.node_group)
        return (
            DEFAULT_MAX_GRACEFUL_TERMINATION
            if group is None
            else group.spec.scale_down.max_graceful_termination
        )

    def force_after_grace(self, vn: VPSieNode) -> bool:
        group = self.group(vn.spec.node_group)
        return group is not None and group.spec.scale_down.force_termination_after_grace

    # -- status -------------------------------------------------------------------------------------

    def enter(self, st: VPSieNodeStatus, phase: Phase) -> None:
        enter_phase(st, phase, self.clock.now(), self.transitions)
        if st.phase != "Draining":  # the count belongs to a drain under way, not to the record
            st.pods_remaining = None

    def since(self, st: VPSieNodeStatus, phase: str, fallback: datetime | None) -> datetime:
        return st.phase_timestamps.get(phase) or fallback or self.clock.now()

    def cond(  # noqa: PLR0917 - a condition is these six facts
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

    async def write(self, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus) -> Raw:
        """Write ``st`` through the status subresource, locked on the version ``obj`` was read at; no
        call when nothing changed."""
        st.observed_generation = vn.metadata.generation
        if st == vn.status:
            return obj
        return await patch_status(self.client, VPSIENODES, obj, st.to_k8s())

    # -- reporting ----------------------------------------------------------------------------------

    def event(self, obj: Raw, type_: str, reason: str, note: str, action: str) -> None:
        self.recorder.event(obj, type_, reason, note, action)

    def would(self, obj: Raw, what: str) -> bool:
        """In dry-run: report that ``what`` would be done for this record, and say to skip it."""
        return self.writes.would(what, obj=obj, action=ACTION_PROVISION)

    # -- VPSie --------------------------------------------------------------------------------------

    async def listing(self, source: NodeSource, *, max_age: float) -> list[Instance]:
        """The shared listing; VPSie's silence is remembered so it never counts as provisioning time."""
        key = str(source)
        try:
            listed = await self.providers.listing(source, max_age=max_age)
        except VPSieError:
            self.outages.down(key, self.clock.now())
            raise
        self.outages.up(key, self.clock.now())
        return listed

    def records_of(self, vn: VPSieNode) -> tuple[list[VPSieNode], set[str]]:
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

    # -- the record's Node --------------------------------------------------------------------------

    def own_node(self, vn: VPSieNode, name: str | None) -> Raw | None:
        """The Node of this record, when it exists and no other VPSieNode claims it."""
        node = self.nodes.store.get(name) if name else None
        if node is None or claimed_by_other(vn.metadata.name, node):
            return None
        return node

    def node_of(self, vn: VPSieNode, st: VPSieNodeStatus) -> Raw | None:
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
            node = self.own_node(vn, name)
            if node is not None:
                return node
        return None

    async def name_node(
        self, obj: Raw, vn: VPSieNode, st: VPSieNodeStatus, node: Raw
    ) -> tuple[Raw, VPSieNode]:
        """Record the Node found by hostname in status, so it is drained and deleted with the record."""
        if st.node_name == node["metadata"]["name"]:
            return obj, vn
        st.node_name = node["metadata"]["name"]
        obj = await self.write(obj, vn, st)
        return obj, VPSieNode.from_k8s(obj)

    def drain_failed(self, obj: Raw, vn: VPSieNode, node: Raw, note: str) -> None:
        """Warning ``DrainFailed`` on the VPSieNode and on its Node (where ``kubectl describe`` looks),
        counted per group (the alert's signal)."""
        self.event(obj, "Warning", keys.REASON_DRAIN_FAILED, note, ACTION_DRAIN)
        self.metrics.drain_failures_total.labels(vn.spec.node_group).inc()
        self.recorder.event(node, "Warning", keys.REASON_DRAIN_FAILED, note, ACTION_DRAIN)
