"""Informer caches → planner inputs (docs/scaling.md, "From caches to snapshots").

The scale-up and scale-down controllers both see the cluster through one :class:`ClusterSnapshot`,
built here from the read-only informer stores, so both count the same way. Counting is where an
autoscaler's worst bugs hide (deleting nodes counted twice, in-flight capacity ignored → five nodes
for one pod), so the rules live in one place:

- a VPSieNode is **leaving** when it has a deletionTimestamp, is ``Draining``/``Deleting``/``Failed``,
  or carries a drain request (``autoscaler.vpsie.com/drain-requested``) the lifecycle controller has
  not acted on yet — otherwise the next scale-down pass would pick another node before the phase
  changes and exceed the disruption budget;
- per NodeGroup: ``deleting`` = its leaving VPSieNodes; ``size`` = its other VPSieNodes plus Nodes
  labelled with the group that no VPSieNode claims (they exist, so they count against ``maxNodes``);
  ``in_flight`` = the part of ``size`` without a Ready Node;
- a Node whose VPSieNode is leaving is ``deleting`` in the snapshot: never capacity, never a
  destination, never a candidate again;
- in-flight capacity for scale-up = Nodes of our groups that are not Ready yet or became Ready
  within :data:`FRESH_NODE_SECONDS` (with their pods) plus a virtual node
  (``GroupTemplate.virtual_node(hostname)``) for each Pending/Provisioning/Joining VPSieNode without a
  Node (a Ready VPSieNode whose Node vanished is no capacity: pods must not wait for it), and the
  template again for a VPSieNode whose Node registered without the group's labels yet.

Node ↔ VPSieNode is a multi-key lookup (docs/architecture.md): the Node's ``VPSIENODE_LABEL``, then
the VPSieNode's ``status.nodeName``, then its hostname (VPSie lowercases it into the Node name).

Plan capacity comes from :class:`~vpsie_autoscaler.controllers.catalogue.PlanCatalogue`, a cache;
building a snapshot never does I/O. DaemonSet overhead: the pod templates of the DaemonSets in the
cache that would land on a group's new node (its selector, affinity and taints) are subtracted from
the group's allocatable (``setup_autoscaling`` gives the store; the chart grants daemonsets
list/watch). Local PersistentVolumes: bound pods whose claims are bound to a volume on their node
carry those claims (:mod:`~vpsie_autoscaler.scaling.volumes`), from the PVC and PV caches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.labels import (
    DRAIN_REQUESTED_ANNOTATION,
    HOSTNAME_LABEL,
    NODEGROUP_LABEL,
    VPSIENODE_LABEL,
)
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.times import parse_time
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.catalogue import PlanCatalogue
from vpsie_autoscaler.controllers.flexible import flexible, record_node, reserved_sizes
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.scaling import (
    ClusterUsage,
    GroupTemplate,
    NodeInfo,
    PDBInfo,
    PodInfo,
    TemplateError,
)
from vpsie_autoscaler.scaling.groups import template_problem
from vpsie_autoscaler.scaling.membership import is_in_flight, is_leaving
from vpsie_autoscaler.scaling.scheduling_facts import nodes_from_k8s
from vpsie_autoscaler.scaling.volumes import local_claims

log = structlog.get_logger("vpsie_autoscaler.controllers.cluster_state")

POD_SCHEDULED: Final = "PodScheduled"
UNSCHEDULABLE_REASON: Final = "Unschedulable"
"""The scheduler's reason on ``PodScheduled=False`` when no node fits (kube-scheduler
``v1.PodReasonUnschedulable``). ``SchedulingGated`` pods are not unschedulable: they wait for a gate."""
DEFAULT_PHASE: Final = "Pending"
READY_PHASE: Final = "Ready"
STARTUP_TAINTS: Final = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/network-unavailable",
        "node.cloudprovider.kubernetes.io/uninitialized",
    }
)
"""Taints the node lifecycle controller / cloud controller put on a node until it is Ready."""
FRESH_NODE_SECONDS: Final = 30.0
"""A Node of our groups that became Ready less than this ago still counts as arriving capacity for
scale-up. The scheduler retries unschedulable pods when a node appears, but the pods stay marked
Unschedulable until it binds them; without this window a batch that closes in between orders
nodes for pods that are about to land on the one that just joined (cluster-autoscaler filters
such pods out with its scheduler simulation). After the window the node is one of the
:attr:`ClusterSnapshot.ready_nodes`: pods that fit its free capacity still wait for the scheduler,
except pods with a constraint we do not model, for which the scheduler's verdict wins."""

Obj = Mapping[str, Any]

INVALID_MESSAGE_LENGTH: Final = 512
"""Why an object is invalid, at most this long (a hostile value must not make Events or logs huge)."""


class InvalidObject(ValueError):
    """A stored object the model refuses, or whose values are beyond the bounds the autoscaler accepts
    (stored before a schema rule existed, or written around validation). Never fatal: the object is
    reported and skipped; see docs/lifecycle.md, "Invalid objects"."""


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        details = exc.errors()
        loc = ".".join(str(p) for p in details[0]["loc"]) if details else ""
        msg = details[0]["msg"] if details else str(exc)
        text = f"{loc}: {msg}" if loc else msg
    else:
        text = str(exc) or type(exc).__name__
    return text[:INVALID_MESSAGE_LENGTH]


def parse_nodegroup(obj: Obj) -> NodeGroup:
    """``NodeGroup.from_k8s`` plus the bounded checks of the template's quantities; raises
    :class:`InvalidObject` (and nothing else) for whatever the stored object holds."""
    try:
        ng = NodeGroup.from_k8s(dict(obj))
    except (ValidationError, ValueError, ArithmeticError, TypeError, RecursionError) as exc:
        raise InvalidObject(_why(exc)) from exc
    problem = template_problem(ng)
    if problem is not None:
        raise InvalidObject(problem[:INVALID_MESSAGE_LENGTH])
    return ng


class NodeGroupParser:
    """:func:`parse_nodegroup` that parses each stored version of a NodeGroup once.

    The periodic passes (scale-down, consolidation, the NodeGroup resync, garbage collection) read
    every NodeGroup every ``scan_interval``, and validating the model is most of what an idle pass
    costs, although a group's spec rarely changes. An object is identified the way the informer
    cache tells its versions apart: ``metadata.uid`` and ``metadata.resourceVersion`` (the API server
    changes the latter on every write, client-go's ``ResourceVersionChanged`` predicate). An object
    without a resourceVersion (never read from the API server) is parsed every time. The refusal of
    an invalid version is kept too, so it is not re-validated every pass.

    The returned model is shared between calls for the same version: callers treat it as read-only
    (every change goes through ``model_copy``, as the controllers already do for the snapshot's).
    """

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[str, str, NodeGroup | InvalidObject]] = {}

    def parse(self, obj: Obj) -> NodeGroup:
        """:func:`parse_nodegroup` of ``obj``, reused while its uid and resourceVersion stay the same."""
        meta = obj.get("metadata") or {}
        name, uid, rv = _text(meta.get("name")), _text(meta.get("uid")), _text(meta.get("resourceVersion"))
        cached = self._parsed.get(name)
        if rv and cached is not None and cached[:2] == (uid, rv):
            found = cached[2]
        else:
            try:
                found = parse_nodegroup(obj)
            except InvalidObject as exc:
                found = exc
            if rv:
                self._parsed[name] = (uid, rv, found)
        if isinstance(found, InvalidObject):
            raise InvalidObject(str(found))
        return found

    def forget(self, name: str) -> None:
        self._parsed.pop(name, None)

    def retain(self, names: Iterable[str]) -> None:
        """Forget every NodeGroup not named (deleted ones), so the cache stays as large as the store."""
        keep = set(names)
        for name in [n for n in self._parsed if n not in keep]:
            del self._parsed[name]


def parse_vpsienode(obj: Obj) -> VPSieNode:
    """``VPSieNode.from_k8s``; raises :class:`InvalidObject` (and nothing else) when it cannot."""
    try:
        return VPSieNode.from_k8s(dict(obj))
    except (ValidationError, ValueError, ArithmeticError, TypeError, RecursionError) as exc:
        raise InvalidObject(_why(exc)) from exc


class InvalidObjects:
    """The stored objects of one kind that cannot be parsed: the ``vpsie_autoscaler_invalid_objects``
    gauge, and which ones were already reported (one Event per object and generation, not per pass)."""

    def __init__(self, kind: str, metrics: AutoscalerMetrics) -> None:
        self.kind = kind
        self.metrics = metrics
        self._seen: dict[str, tuple[str, int, bool, str]] = {}  # name → (uid, generation, deleting, why)
        self._gauge()

    def _gauge(self) -> None:
        self.metrics.invalid_objects.labels(self.kind).set(len(self._seen))

    def note(self, obj: Obj, why: str) -> bool:
        """Remember ``obj`` as invalid; True when this generation of it (or its deletion) is new."""
        meta = obj.get("metadata") or {}
        generation = meta.get("generation")
        key = (
            _text(meta.get("uid")),
            generation if isinstance(generation, int) else 0,
            bool(meta.get("deletionTimestamp")),
            why,
        )
        name = _text(meta.get("name"))
        new = self._seen.get(name, ("", -1, False, ""))[:3] != key[:3]
        self._seen[name] = key
        self._gauge()
        return new

    def forget(self, name: str) -> bool:
        """The object parses again, or is gone; True when it was invalid."""
        was = self._seen.pop(name, None) is not None
        if was:
            self._gauge()
        return was

    def __contains__(self, name: object) -> bool:
        return name in self._seen

    def __len__(self) -> int:
        return len(self._seen)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class ReadStore(Protocol):
    """What the snapshot reads from an informer store (``runtime.store.Indexer``)."""

    def list(self) -> Sequence[Any]: ...


def scheduled_condition(pod: Obj) -> Obj | None:
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == POD_SCHEDULED:
            return dict(cond)
    return None


def is_unschedulable(pod: Obj) -> bool:
    """``PodScheduled=False`` with reason ``Unschedulable``, not bound, not being deleted."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    cond = scheduled_condition(pod)
    return cond is not None and cond.get("status") == "False" and cond.get("reason") == UNSCHEDULABLE_REASON


def unschedulable_since(pod: Obj) -> datetime | None:
    """The ``lastTransitionTime`` of ``PodScheduled=False`` (whole seconds, API server clock)."""
    cond = scheduled_condition(pod)
    return parse_time(cond.get("lastTransitionTime")) if cond else None


@dataclass(frozen=True, slots=True)
class VPSieNodeView:
    """The facts of a VPSieNode the controllers count with (read tolerantly from raw JSON)."""

    name: str
    group: str
    hostname: str
    node_name: str
    phase: str
    deleting: bool
    drain_requested: bool
    created: datetime | None
    raw: Obj = field(repr=False, compare=False)

    @property
    def leaving(self) -> bool:
        """:func:`~vpsie_autoscaler.scaling.membership.is_leaving` (one rule for every count)."""
        return is_leaving(self.phase, deleting=self.deleting, drain_requested=self.drain_requested)

    @property
    def in_flight_phase(self) -> bool:
        """Pending/Provisioning/Joining and not leaving (not Ready yet)."""
        return is_in_flight(self.phase, deleting=self.deleting, drain_requested=self.drain_requested)

    @classmethod
    def from_k8s(cls, obj: Obj) -> VPSieNodeView:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        labels = meta.get("labels") or {}
        name = _text(meta.get("name"))
        return cls(
            name=name,
            group=_text(spec.get("nodeGroup")) or _text(labels.get(NODEGROUP_LABEL)),
            hostname=(_text(spec.get("hostname")) or name).lower(),
            node_name=_text(status.get("nodeName")).lower(),
            phase=_text(status.get("phase")) or DEFAULT_PHASE,
            deleting=bool(meta.get("deletionTimestamp")),
            drain_requested=DRAIN_REQUESTED_ANNOTATION in (meta.get("annotations") or {}),
            created=parse_time(meta.get("creationTimestamp")),
            raw=obj,
        )


class VPSieNodeIndex:
    """VPSieNodes by name, by ``status.nodeName`` and by hostname, for the Node → VPSieNode lookup."""

    def __init__(self, views: Iterable[VPSieNodeView]) -> None:
        self.by_name: dict[str, VPSieNodeView] = {}
        self._by_node: dict[str, VPSieNodeView] = {}
        self._by_host: dict[str, VPSieNodeView] = {}
        for v in views:
            self.by_name[v.name] = v
            if v.node_name:
                self._by_node[v.node_name] = v
            self._by_host[v.hostname] = v

    def __iter__(self) -> Any:
        return iter(self.by_name.values())

    def __len__(self) -> int:
        return len(self.by_name)

    def of_group(self, group: str) -> list[VPSieNodeView]:
        return [v for v in self.by_name.values() if v.group == group]

    def for_node(self, node: Obj) -> VPSieNodeView | None:
        """The VPSieNode of a Node: ``VPSIENODE_LABEL``, then ``status.nodeName``, then hostname."""
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        by_label = self.by_name.get(labels.get(VPSIENODE_LABEL, ""))
        if by_label is not None:
            return by_label
        name = str(meta.get("name", "")).lower()
        found = self._by_node.get(name) or self._by_host.get(name)
        if found is not None:
            return found
        host = str(labels.get(HOSTNAME_LABEL, "")).lower()
        return self._by_host.get(host) if host else None


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything the planners need, consistent with itself (one read of the caches)."""

    now: datetime
    nodes: tuple[NodeInfo, ...]
    node_objects: Mapping[str, Obj]
    groups: tuple[GroupTemplate, ...]
    nodegroups: Mapping[str, NodeGroup]
    nodegroup_objects: Mapping[str, Obj]
    group_errors: Mapping[str, str]
    """Groups the planners cannot use, with why (invalid object, capacity unknown)."""
    vpsienodes: VPSieNodeIndex
    node_vpsienode: Mapping[str, VPSieNodeView]
    """Node name → its VPSieNode (multi-key lookup)."""
    in_flight_nodes: tuple[NodeInfo, ...]
    virtual_nodes: tuple[NodeInfo, ...]
    pending_pods: tuple[PodInfo, ...]
    pending_objects: Mapping[str, Obj]
    """``namespace/name`` → raw pod, for Events and the decision latency."""
    pdbs: tuple[PDBInfo, ...]

    @property
    def usage(self) -> ClusterUsage:
        """Counted against the cluster-wide limits: every Node plus the VPSieNodes without one."""
        return ClusterUsage.from_nodes(list(self.nodes) + list(self.virtual_nodes))

    @property
    def ready_nodes(self) -> tuple[NodeInfo, ...]:
        """Ready nodes that are not leaving nor counted in flight: pending pods that fit their free
        capacity wait for the scheduler (cluster-autoscaler's "filter out schedulable"). Their free
        capacity is exact only when the snapshot was built ``with_pods``."""
        arriving = {n.name for n in self.in_flight_nodes}
        return tuple(n for n in self.nodes if n.ready and not n.deleting and n.name not in arriving)

    def group(self, name: str) -> GroupTemplate | None:
        return next((g for g in self.groups if g.name == name), None)


class SnapshotBuilder:
    """Builds :class:`ClusterSnapshot` from informer stores. Cheap enough to run every batch."""

    def __init__(
        self,
        *,
        pods: ReadStore,
        nodes: ReadStore,
        nodegroups: ReadStore,
        vpsienodes: ReadStore,
        catalogue: PlanCatalogue,
        pdbs: ReadStore | None = None,
        daemonsets: ReadStore | None = None,
        pvcs: ReadStore | None = None,
        pvs: ReadStore | None = None,
        fresh_node_seconds: float = FRESH_NODE_SECONDS,
    ) -> None:
        self.fresh_node_seconds = fresh_node_seconds
        self.pods = pods
        self.nodes = nodes
        self.nodegroups = nodegroups
        self.vpsienodes = vpsienodes
        self.pdbs = pdbs
        self.daemonsets = daemonsets
        self.pvcs = pvcs
        self.pvs = pvs
        self.catalogue = catalogue
        self.scale_down_defaults: Mapping[str, Any] = {}
        """AutoscalerSettings ``scaleDownDefaults`` for the fields a NodeGroup leaves out (set live)."""
        self._reported: dict[str, str] = {}
        self._pods: dict[str, tuple[str, PodInfo]] = {}
        self._nodegroups = NodeGroupParser()
        self._last: tuple[tuple[Any, ...], ClusterSnapshot] | None = None

    def _pod_info(self, pod: Obj, parsed: dict[str, tuple[str, PodInfo]]) -> PodInfo:
        """``PodInfo.from_k8s``, reused while the pod's resourceVersion is unchanged: parsing every
        bound pod on each scale-down pass is most of its cost (see benchmarks/autoscaling_bench.py)."""
        meta = pod.get("metadata") or {}
        uid, rv = meta.get("uid") or "", meta.get("resourceVersion") or ""
        cached = self._pods.get(uid)
        info = cached[1] if cached is not None and rv and cached[0] == rv else PodInfo.from_k8s(pod)
        if uid:
            parsed[uid] = (rv, info)
        return info

    def forget_pods(self) -> None:
        """Drop the parsed-pod cache and the last snapshot (benchmarks measure the cold path with it)."""
        self._pods.clear()
        self._last = None

    def _with_local_claims(self, bound: list[PodInfo]) -> list[PodInfo]:
        """Bound pods whose claims keep them on their node get ``local_claims`` (scale-down's
        ``LocalPersistentVolume`` rule); read from the PVC/PV caches on every build, since a claim's
        binding changes without the pod changing."""
        if self.pvcs is None or self.pvs is None or not any(p.claims for p in bound):
            return bound
        pvcs = {_key(o): o for o in self.pvcs.list()}
        pvs = {str((o.get("metadata") or {}).get("name", "")): o for o in self.pvs.list()}
        out = []
        for pod in bound:
            found = local_claims(pod.namespace, pod.claims, pvcs, pvs) if pod.claims else ()
            out.append(dataclasses.replace(pod, local_claims=found) if found else pod)
        return out

    def _reserved_sizes(self) -> dict[tuple[str, str], str]:
        """The sizes managed groups with several plans may not choose: other NodeGroups' own VPSie
        groups (``flexible.reserved_sizes``). Read only when a managed group has ``spec.plans``."""
        objs = list(self.nodegroups.list())
        if not any((o.get("spec") or {}).get("plans") and (o.get("spec") or {}).get("managed") for o in objs):
            return {}
        parsed = []
        for obj in objs:
            try:
                parsed.append(self._nodegroups.parse(obj).with_resolved_source())
            except InvalidObject:
                continue
        return reserved_sizes(parsed)

    def daemonset_pods(self) -> list[PodInfo]:
        if self.daemonsets is None:
            return []
        out = []
        for ds in self.daemonsets.list():
            template = (ds.get("spec") or {}).get("template") or {}
            meta = dict(template.get("metadata") or {})
            meta.setdefault("namespace", (ds.get("metadata") or {}).get("namespace"))
            out.append(PodInfo.from_k8s({"metadata": meta, "spec": template.get("spec") or {}}))
        return out

    def build(
        self,
        now: datetime,
        *,
        with_pods: bool = True,
        extra_vpsienodes: Iterable[Obj] = (),
    ) -> ClusterSnapshot:
        """One consistent view. ``with_pods`` False skips bound pods (scale-up only needs those of
        not-Ready nodes); ``extra_vpsienodes``: objects we created that the cache has not shown yet.

        When nothing it is built from changed since the last build — no store changed (their change
        counts), nor the catalogue's facts, the scale-down defaults, which nodes still count as
        arriving at ``now`` (the only use of the time), ``with_pods``, and there are no extra
        VPSieNodes — the last snapshot is returned with the new ``now``: an idle cluster's periodic
        passes (scale-down, consolidation, scale-up's resync) then cost no new snapshot.
        """
        extras = list(extra_vpsienodes)
        node_objs = {(n.get("metadata") or {}).get("name", ""): n for n in self.nodes.list()}
        arriving: set[str] = set()  # not Ready yet, or Ready so recently the scheduler may not have used it
        for name, node in node_objs.items():
            ready_since = _ready_since(node)
            if ready_since is None or (now - ready_since).total_seconds() < self.fresh_node_seconds:
                arriving.add(name)
        inputs = None if extras else self._inputs(with_pods, arriving)
        if inputs is not None and self._last is not None and self._last[0] == inputs:
            return dataclasses.replace(self._last[1], now=now)
        snap = self._build(now, with_pods, extras, node_objs, arriving)
        self._last = (inputs, snap) if inputs is not None else None
        return snap

    def _inputs(self, with_pods: bool, arriving: set[str]) -> tuple[Any, ...] | None:
        """What a snapshot is built from, to compare with the last build's (None: unknown, e.g. a
        store that does not count its changes)."""
        versions = []
        for store in (self.pods, self.nodes, self.nodegroups, self.vpsienodes, self.pdbs, self.daemonsets,
                      self.pvcs, self.pvs):  # fmt: skip
            version = 0 if store is None else getattr(store, "version", None)
            if not isinstance(version, int):
                return None
            versions.append(version)
        return (
            tuple(versions),
            self.catalogue.version,
            dict(self.scale_down_defaults),
            with_pods,
            frozenset(arriving),
        )

    def _build(
        self,
        now: datetime,
        with_pods: bool,
        extra_vpsienodes: list[Obj],
        node_objs: dict[str, Obj],
        arriving: set[str],
    ) -> ClusterSnapshot:
        vn_objs = list(self.vpsienodes.list())
        known = {(o.get("metadata") or {}).get("name") for o in vn_objs}
        vn_objs.extend(o for o in extra_vpsienodes if (o.get("metadata") or {}).get("name") not in known)
        index = VPSieNodeIndex(VPSieNodeView.from_k8s(o) for o in vn_objs)

        pod_objs = list(self.pods.list())
        pending_objects: dict[str, Obj] = {}
        pending: list[PodInfo] = []
        bound: list[PodInfo] = []
        seen_pods: dict[str, tuple[str, PodInfo]] = {}
        for p in pod_objs:
            try:
                if is_unschedulable(p):
                    info = self._pod_info(p, seen_pods)
                    pending.append(info)
                    pending_objects[info.key] = p
                else:
                    on = (p.get("spec") or {}).get("nodeName")
                    if on and (with_pods or on in arriving):
                        bound.append(self._pod_info(p, seen_pods))
            except (ValueError, ArithmeticError) as exc:  # e.g. a request beyond int64 milli-units
                log.warning("pod not usable for scaling", pod=_pod_key(p), reason=_why(exc))
        bound = self._with_local_claims(bound)
        if with_pods:  # every pod was looked at: what was not is gone
            self._pods = seen_pods
        else:
            self._pods.update(seen_pods)

        # Nodes, with the ones our VPSieNodes are removing marked as deleting.
        node_vn: dict[str, VPSieNodeView] = {}
        infos: list[NodeInfo] = []
        for parsed in nodes_from_k8s(node_objs.values(), bound):
            vn = index.for_node(node_objs[parsed.name])
            if vn is not None:
                node_vn[parsed.name] = vn
                if vn.leaving and not parsed.deleting:
                    parsed = dataclasses.replace(parsed, deleting=True)  # noqa: PLW2901
            infos.append(parsed)
        claimed = {vn.name for vn in node_vn.values()}
        nodes_by_name = {n.name: n for n in infos}

        groups: list[GroupTemplate] = []
        models: dict[str, NodeGroup] = {}
        raw_groups: dict[str, Obj] = {}
        errors: dict[str, str] = {}
        ds_pods = self.daemonset_pods()
        ready_vns = {node_vn[n.name].name for n in infos if n.ready and not n.deleting and n.name in node_vn}
        unclaimed_by_group: dict[str, int] = {}
        for n in infos:
            if n.group and not n.deleting and n.name not in node_vn:
                unclaimed_by_group[n.group] = unclaimed_by_group.get(n.group, 0) + 1
        reserved = self._reserved_sizes()
        ng_objs = list(self.nodegroups.list())
        self._nodegroups.retain((o.get("metadata") or {}).get("name", "") for o in ng_objs)
        for obj in ng_objs:
            name = (obj.get("metadata") or {}).get("name", "")
            raw_groups[name] = obj
            if (obj.get("metadata") or {}).get("deletionTimestamp"):
                errors[name] = "NodeGroup is being deleted"
                continue
            try:
                ng = (
                    self._nodegroups.parse(obj)
                    .with_resolved_source()
                    .with_scale_down_defaults(self.scale_down_defaults)
                )
            except InvalidObject as exc:
                errors[name] = f"invalid NodeGroup: {exc}"
                continue
            if ng.spec.managed is not None and ng.spec.managed.cluster_identifier is None:
                errors[name] = "the VPSie cluster is not known yet (condition SourceResolved)"
                continue
            models[name] = ng
            members = index.of_group(name)
            deleting = sum(1 for v in members if v.leaving)
            live = [v for v in members if not v.leaving]
            in_flight = sum(1 for v in live if v.name not in ready_vns)
            unclaimed = unclaimed_by_group.get(name, 0)
            facts = self.catalogue.facts(ng)
            try:
                base = GroupTemplate.from_nodegroup(
                    ng,
                    size=len(live) + unclaimed,
                    in_flight=in_flight,
                    deleting=deleting,
                    plan_capacity=facts.capacity if facts is not None else None,
                    plan_hourly_price=facts.hourly_price if facts is not None else None,
                    daemonset_pods=ds_pods,
                )
                groups.append(flexible(base, ng, self.catalogue, ds_pods, reserved))  # plans, headroom
            except (ValueError, ArithmeticError) as exc:  # one bad group never stops the others
                if not isinstance(exc, TemplateError):
                    errors[name] = f"invalid NodeGroup: {_why(exc)}"
                    continue
                detail = str(exc)
                why = self.catalogue.error(ng)
                if why:
                    detail += f"; VPSie catalogue: {why}"
                elif not self.catalogue.enabled:
                    detail += "; no VPSie credentials to read the plan"
                else:
                    detail += "; the VPSie plan has not been read yet"
                errors[name] = detail
        for name, why in errors.items():
            if self._reported.get(name) != why:
                log.warning("NodeGroup not usable for scaling", nodegroup=name, reason=why)
        self._reported = dict(errors)

        by_name = {g.name: g for g in groups}
        in_flight_nodes = [
            _as_arriving(n) for n in infos if n.name in arriving and not n.deleting and n.group in by_name
        ]
        # A Node that registered but does not carry its group's labels yet (the lifecycle controller
        # applies them when it joins) is not what pods select: its VPSieNode stays modelled by the
        # template, or a batch closing in that window would order the same capacity again.
        unlabelled = {
            vn.name
            for node_name, vn in node_vn.items()
            if node_name in arriving and nodes_by_name[node_name].group != vn.group
        }
        virtual: list[NodeInfo] = []  # VPSieNodes without any Node: they also count against the limits
        for vn in index:
            # Only records still being created are capacity on the way: a Ready record whose Node
            # vanished is no capacity at all, or pods would wait for it forever.
            template = by_name.get(vn.group)
            if vn.leaving or template is None:
                continue
            if vn.name in unlabelled:
                in_flight_nodes.append(record_node(template, vn.raw, vn.hostname))
            elif vn.in_flight_phase and vn.name not in claimed:
                virtual.append(record_node(template, vn.raw, vn.hostname))  # its own plan's shape
        pdbs = tuple(PDBInfo.from_k8s(p) for p in self.pdbs.list()) if self.pdbs is not None else ()
        return ClusterSnapshot(
            now=now,
            nodes=tuple(infos),
            node_objects=node_objs,
            groups=tuple(groups),
            nodegroups=models,
            nodegroup_objects=raw_groups,
            group_errors=errors,
            vpsienodes=index,
            node_vpsienode=node_vn,
            in_flight_nodes=tuple(in_flight_nodes + virtual),
            virtual_nodes=tuple(virtual),
            pending_pods=tuple(pending),
            pending_objects=pending_objects,
            pdbs=pdbs,
        )


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _pod_key(pod: Obj) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _as_arriving(node: NodeInfo) -> NodeInfo:
    """A joining node as it will be once Ready: without the taints the control plane puts on a node
    that is still starting (cluster-autoscaler sanitizes upcoming nodes the same way), or pods would
    be found not to tolerate a taint that is about to go."""
    taints = tuple(t for t in node.taints if t.key not in STARTUP_TAINTS)
    if taints == node.taints:
        return node
    return dataclasses.replace(node, taints=taints)


def _ready_since(node: Obj) -> datetime | None:
    """When the Node became Ready (None while it is not Ready)."""
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            if c.get("status") != "True":
                return None
            return parse_time(c.get("lastTransitionTime")) or datetime.min.replace(tzinfo=UTC)
    return None
