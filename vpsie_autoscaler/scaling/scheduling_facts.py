"""Immutable snapshots of pods, nodes and PodDisruptionBudgets, built from raw Kubernetes JSON.

The controllers hand the planners the raw dicts of their informer caches; everything the decisions
need is extracted here, once, into frozen values. What we cannot model (topology spread, pod
affinity, volume topology, dynamic resources, …) is recorded on the pod as a human-readable string so
the planners can *report* it instead of silently ignoring it (docs/scaling.md).

Effective pod requests follow the scheduler (``k8s.io/component-helpers/resource``, ``PodRequests``):
the sum of the app containers plus restartable init containers (sidecars), or the largest regular
init container plus the sidecars started before it, whichever is larger, plus the RuntimeClass
overhead; every pod also needs one ``pods`` slot. Container requests default to limits (API server
defaulting), which matters for pod templates that were never defaulted (DaemonSet overhead).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from vpsie_autoscaler.api.labels import (
    HOSTNAME_LABEL,
    MIRROR_POD_ANNOTATION,
    NODEGROUP_LABEL,
    TO_BE_DELETED_TAINT,
)
from vpsie_autoscaler.api.times import parse_time
from vpsie_autoscaler.scaling.resources import EMPTY, PODS, Resources, to_units
from vpsie_autoscaler.scaling.selectors import (
    LabelSelector,
    NodeSelectorTerm,
    Taint,
    Toleration,
)

DEFAULT_NAMESPACE: Final = "default"
DEFAULT_PROTOCOL: Final = "TCP"
ANY_HOST_IP: Final = "0.0.0.0"  # noqa: S104 - a wildcard to compare with, never bound
TERMINAL_PHASES: Final = frozenset({"Succeeded", "Failed"})
RESTART_ALWAYS: Final = "Always"
ONE_POD: Final = Resources({PODS: 1})

# Unmodelled-constraint descriptions (stable strings: they end up in Events and metrics).
UNMODELLED_TOPOLOGY_SPREAD: Final = "topologySpreadConstraints"
UNMODELLED_POD_AFFINITY: Final = "podAffinity"
UNMODELLED_ANTI_AFFINITY_TOPOLOGY: Final = "podAntiAffinity"
UNMODELLED_PVC: Final = "persistentVolumeClaim"
UNMODELLED_RESOURCE_CLAIMS: Final = "resourceClaims"


@dataclass(frozen=True, slots=True, order=True)
class HostPort:
    """A host port a container binds: conflicts with the same protocol and port on overlapping IPs."""

    protocol: str
    port: int
    host_ip: str = ANY_HOST_IP

    def conflicts(self, other: HostPort) -> bool:
        if self.port != other.port or self.protocol != other.protocol:
            return False
        return ANY_HOST_IP in (self.host_ip, other.host_ip) or self.host_ip == other.host_ip

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.port}/{self.protocol}"


def ports_conflict(a: Iterable[HostPort], b: Iterable[HostPort]) -> HostPort | None:
    """The first port of ``a`` that conflicts with one of ``b``."""
    b_list = list(b)
    for port in a:
        if any(port.conflicts(other) for other in b_list):
            return port
    return None


@dataclass(frozen=True, slots=True)
class AntiAffinityTerm:
    """A required pod anti-affinity term on ``kubernetes.io/hostname``: never share a node with a
    pod this term selects. ``namespaces`` None means every namespace (an empty namespaceSelector)."""

    selector: LabelSelector
    namespaces: frozenset[str] | None

    def selects(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        return self.selector.matches(labels)


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class PodInfo:
    """What the planners need to know about one pod. Built by :meth:`from_k8s`."""

    namespace: str
    name: str
    uid: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_name: str = ""
    phase: str = "Pending"
    requests: Resources = ONE_POD
    node_selector: tuple[tuple[str, str], ...] = ()
    affinity_terms: tuple[NodeSelectorTerm, ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    host_ports: tuple[HostPort, ...] = ()
    anti_affinity: tuple[AntiAffinityTerm, ...] = ()
    priority: int = 0
    controller_kind: str | None = None
    controller_name: str | None = None
    local_volumes: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()
    """Names of the PersistentVolumeClaims the pod mounts (its namespace)."""
    local_claims: tuple[str, ...] = ()
    """Claims whose volume lives on the pod's node, described (filled by the controllers from their
    PVC/PV caches: :func:`~vpsie_autoscaler.scaling.volumes.local_claims`)."""
    unmodelled: tuple[str, ...] = ()
    deleting: bool = False
    created: datetime | None = None
    start_time: datetime | None = None

    @property
    def key(self) -> str:
        """``namespace/name``, the pod's identity in results and Events."""
        return f"{self.namespace}/{self.name}"

    def __repr__(self) -> str:
        return f"PodInfo({self.key}, {self.requests!r})"

    @property
    def is_daemonset(self) -> bool:
        return self.controller_kind == "DaemonSet"

    @property
    def is_mirror(self) -> bool:
        """Static pods: managed by the kubelet, they never move and never block scale-down."""
        return MIRROR_POD_ANNOTATION in self.annotations or self.controller_kind == "Node"

    @property
    def is_terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def scheduling_key(self, label_keys: frozenset[str] = frozenset()) -> tuple[Any, ...]:
        """Pods with equal keys are interchangeable for placement (an equivalence group).

        Labels only matter through anti-affinity selectors, so only the label keys some selector in
        play looks at (``label_keys``) are part of the key; Job pods with unique labels still group.
        """
        labels = (
            tuple(sorted((k, v) for k, v in self.labels.items() if k in label_keys)) if label_keys else ()
        )
        return (
            self.namespace,
            tuple(sorted(self.requests.items())),
            self.node_selector,
            self.affinity_terms,
            self.tolerations,
            self.host_ports,
            self.anti_affinity,
            self.unmodelled,
            labels,
        )

    @classmethod
    def from_k8s(cls, obj: Mapping[str, Any]) -> PodInfo:
        """From a core/v1 Pod (or a pod template: ``{"metadata": ..., "spec": ...}``)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        namespace = meta.get("namespace") or DEFAULT_NAMESPACE
        unmodelled: list[str] = []

        controller_kind = controller_name = None
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller"):
                controller_kind, controller_name = ref.get("kind"), ref.get("name")
                break

        affinity = spec.get("affinity") or {}
        node_aff = (affinity.get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or {}
        affinity_terms = tuple(NodeSelectorTerm.from_k8s(t) for t in node_aff.get("nodeSelectorTerms") or ())

        anti_terms: list[AntiAffinityTerm] = []
        anti = (affinity.get("podAntiAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        ) or ()
        for term in anti:
            topology = term.get("topologyKey", "")
            ns_selector = term.get("namespaceSelector")
            if topology != HOSTNAME_LABEL:
                unmodelled.append(f"{UNMODELLED_ANTI_AFFINITY_TOPOLOGY}(topologyKey={topology})")
                continue
            if term.get("matchLabelKeys") or term.get("mismatchLabelKeys"):
                unmodelled.append(f"{UNMODELLED_ANTI_AFFINITY_TOPOLOGY}(matchLabelKeys)")
            namespaces: frozenset[str] | None
            if ns_selector is not None and not ns_selector:
                namespaces = None  # {} selects every namespace
            else:
                if ns_selector:
                    unmodelled.append(f"{UNMODELLED_ANTI_AFFINITY_TOPOLOGY}(namespaceSelector)")
                namespaces = frozenset(term.get("namespaces") or (namespace,))
            anti_terms.append(AntiAffinityTerm(LabelSelector.from_k8s(term.get("labelSelector")), namespaces))
        if (affinity.get("podAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"):
            unmodelled.append(UNMODELLED_POD_AFFINITY)
        for tsc in spec.get("topologySpreadConstraints") or ():
            if tsc.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule":
                unmodelled.append(f"{UNMODELLED_TOPOLOGY_SPREAD}(topologyKey={tsc.get('topologyKey', '')})")
        if spec.get("resourceClaims"):
            unmodelled.append(UNMODELLED_RESOURCE_CLAIMS)

        annotations = meta.get("annotations") or {}
        local: list[str] = []
        claims: list[str] = []
        for vol in spec.get("volumes") or ():
            on_disk = "emptyDir" in vol and (vol.get("emptyDir") or {}).get("medium") != "Memory"
            if "hostPath" in vol or on_disk:
                local.append(vol.get("name", ""))
            elif "persistentVolumeClaim" in vol:
                unmodelled.append(f"{UNMODELLED_PVC}(volume topology not checked)")
                claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
                if claim:
                    claims.append(str(claim))

        return cls(
            namespace=namespace,
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            labels=meta.get("labels") or {},
            annotations=annotations,
            node_name=spec.get("nodeName") or "",
            phase=status.get("phase") or "Pending",
            requests=pod_requests(spec),
            node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
            affinity_terms=affinity_terms,
            tolerations=tuple(Toleration.from_k8s(t) for t in spec.get("tolerations") or ()),
            host_ports=_host_ports(spec),
            anti_affinity=tuple(anti_terms),
            priority=int(spec.get("priority") or 0),
            controller_kind=controller_kind,
            controller_name=controller_name,
            local_volumes=tuple(local),
            claims=tuple(claims),
            unmodelled=tuple(dict.fromkeys(unmodelled)),
            deleting=bool(meta.get("deletionTimestamp")),
            created=parse_time(meta.get("creationTimestamp")),
            start_time=parse_time(status.get("startTime")),
        )


def _container_requests(container: Mapping[str, Any]) -> dict[str, int]:
    resources = container.get("resources") or {}
    out = {name: to_units(name, v) for name, v in (resources.get("limits") or {}).items()}
    out.update({name: to_units(name, v) for name, v in (resources.get("requests") or {}).items()})
    return out


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, value in other.items():
        into[name] = into.get(name, 0) + value


def _max(into: dict[str, int], other: Mapping[str, int]) -> None:
    for name, value in other.items():
        if value > into.get(name, 0):
            into[name] = value


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """Effective requests of a pod spec (see the module docstring), including one ``pods`` slot."""
    pod_level = ((spec.get("resources") or {}).get("requests")) or None
    total: dict[str, int] = {}
    if pod_level:
        total = {name: to_units(name, v) for name, v in pod_level.items()}
    else:
        for container in spec.get("containers") or ():
            _add(total, _container_requests(container))
        sidecars: dict[str, int] = {}
        init_peak: dict[str, int] = {}
        for container in spec.get("initContainers") or ():
            req = _container_requests(container)
            if container.get("restartPolicy") == RESTART_ALWAYS:
                _add(sidecars, req)
                _max(init_peak, sidecars)
            else:
                during = dict(sidecars)
                _add(during, req)
                _max(init_peak, during)
        _add(total, sidecars)
        _max(total, init_peak)
    _add(total, {name: to_units(name, v) for name, v in (spec.get("overhead") or {}).items()})
    total[PODS] = total.get(PODS, 0) + 1
    return Resources(total)


def _host_ports(spec: Mapping[str, Any]) -> tuple[HostPort, ...]:
    ports: set[HostPort] = set()
    for group in ("containers", "initContainers"):
        for container in spec.get(group) or ():
            for port in container.get("ports") or ():
                host_port = port.get("hostPort") or 0
                if host_port > 0:
                    ports.add(
                        HostPort(
                            port.get("protocol") or DEFAULT_PROTOCOL,
                            int(host_port),
                            port.get("hostIP") or ANY_HOST_IP,
                        )
                    )
    return tuple(sorted(ports))


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class NodeInfo:
    """A node and the pods bound to it. Also the shape of a virtual node built from a group template.

    ``deleting`` marks nodes on their way out (deletionTimestamp or our to-be-deleted taint): they are
    never counted as capacity, never a destination, never a candidate again.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    allocatable: Resources = EMPTY
    capacity: Resources = EMPTY
    unschedulable: bool = False
    ready: bool = True
    deleting: bool = False
    created: datetime | None = None
    pods: tuple[PodInfo, ...] = ()
    requested: Resources = EMPTY
    host_ports: tuple[HostPort, ...] = ()

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)}, free={self.free!r})"

    @property
    def group(self) -> str | None:
        """The owning NodeGroup (from the ``autoscaler.vpsie.com/nodegroup`` label), if any."""
        return self.labels.get(NODEGROUP_LABEL)

    @property
    def free(self) -> Resources:
        """Allocatable minus what the bound pods request (never below zero)."""
        return (self.allocatable - self.requested).clamp_zero()

    @classmethod
    def build(
        cls,
        name: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        taints: Sequence[Taint] = (),
        allocatable: Resources = EMPTY,
        capacity: Resources | None = None,
        unschedulable: bool = False,
        ready: bool = True,
        deleting: bool = False,
        created: datetime | None = None,
        pods: Sequence[PodInfo] = (),
    ) -> NodeInfo:
        """A node with derived totals (requests and host ports of its non-terminal pods)."""
        live = tuple(p for p in pods if not p.is_terminal)
        requested: dict[str, int] = {}
        ports: list[HostPort] = []
        for pod in live:
            _add(requested, pod.requests)
            ports.extend(pod.host_ports)
        return cls(
            name=name,
            labels=dict(labels or {}),
            annotations=dict(annotations or {}),
            taints=tuple(taints),
            allocatable=allocatable,
            capacity=capacity if capacity is not None else allocatable,
            unschedulable=unschedulable,
            ready=ready,
            deleting=deleting or any(t.key == TO_BE_DELETED_TAINT for t in taints),
            created=created,
            pods=live,
            requested=Resources(requested),
            host_ports=tuple(ports),
        )

    @classmethod
    def from_k8s(cls, obj: Mapping[str, Any], pods: Sequence[PodInfo] = ()) -> NodeInfo:
        """From a core/v1 Node and the pods bound to it."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        capacity = Resources.parse(status.get("capacity"))
        allocatable = Resources.parse(status.get("allocatable")) if status.get("allocatable") else capacity
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or ()
        )
        return cls.build(
            meta.get("name", ""),
            labels=meta.get("labels") or {},
            annotations=meta.get("annotations") or {},
            taints=[Taint.from_k8s(t) for t in spec.get("taints") or ()],
            allocatable=allocatable,
            capacity=capacity,
            unschedulable=bool(spec.get("unschedulable")),
            ready=ready,
            deleting=bool(meta.get("deletionTimestamp")),
            created=parse_time(meta.get("creationTimestamp")),
            pods=pods,
        )


def nodes_from_k8s(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any] | PodInfo]
) -> list[NodeInfo]:
    """Join raw Nodes with the pods bound to them (``spec.nodeName``); unbound pods are skipped."""
    by_node: dict[str, list[PodInfo]] = {}
    for raw in pods:
        pod = raw if isinstance(raw, PodInfo) else PodInfo.from_k8s(raw)
        if pod.node_name:
            by_node.setdefault(pod.node_name, []).append(pod)
    out = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "")
        out.append(NodeInfo.from_k8s(node, by_node.get(name, ())))
    return out


@dataclass(frozen=True, slots=True)
class PDBInfo:
    """A PodDisruptionBudget: which pods it covers and how many may be disrupted now."""

    namespace: str
    name: str
    selector: LabelSelector | None
    disruptions_allowed: int

    @classmethod
    def from_k8s(cls, obj: Mapping[str, Any]) -> PDBInfo:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        raw_selector = spec.get("selector")
        return cls(
            namespace=meta.get("namespace") or DEFAULT_NAMESPACE,
            name=meta.get("name", ""),
            # policy/v1: a null selector selects no pods, an empty one selects every pod in the namespace.
            selector=None if raw_selector is None else LabelSelector.from_k8s(raw_selector),
            disruptions_allowed=int((obj.get("status") or {}).get("disruptionsAllowed") or 0),
        )

    def covers(self, pod: PodInfo) -> bool:
        return (
            self.selector is not None
            and pod.namespace == self.namespace
            and self.selector.matches(pod.labels)
        )
