"""Which VPSie cluster and node group a managed NodeGroup uses, when its spec does not say it all.

A managed NodeGroup may omit ``clusterIdentifier``, ``sizeId`` and ``datacenterIdentifier``. VPSie's Go
autoscaler filled such gaps once at startup from the API host name, node labels and the stock
``vpsie-secret``; here the answer is looked for on every NodeGroup reconcile until found, and shown in
``status.managed`` (with ``clusterFrom`` saying how) and the ``SourceResolved`` condition.

**The cluster**, first that answers:

1. ``spec.managed.clusterIdentifier``;
2. the ``--vpsie-cluster-identifier`` setting (``VPSIE_AUTOSCALER_VPSIE_CLUSTER_IDENTIFIER``, chart value
   ``vpsie.clusterIdentifier``);
3. the stock ``vpsie-secret``'s ``resourceIdentifier`` hint
   (:class:`~vpsie_autoscaler.vpsie.credentials.SecretHints`);
4. a cluster found earlier by matching nodes (``status.managed`` with ``clusterFrom: nodes``): once found,
   kept, so a second cluster that later shares a name never moves a group;
5. matching: the VPSie clusters (``GET /k8s/cluster/all``) whose nodes (``GET /k8s/cluster/byId/{id}``)
   are this cluster's Nodes, by host name (case-insensitive: VPSie names ``HEL-…-slave-11cc`` what
   Kubernetes calls ``hel-…-slave-11cc``, ``docs/vpsie-api.md`` §4.10) or, when no host name matches, by
   IP address. Exactly one cluster must match: two that match are reported by name and identifier,
   never guessed between (:func:`match_cluster`).

**The group and its size.** The VPSie node group is the spec's, by name or id, in that cluster. A group
named by the spec that does not exist is created with the spec's ``sizeId``
(:meth:`~vpsie_autoscaler.controllers.cloud.Providers.ensure_group`, the single place); a refusal
(VPSie's one group per size, quota) is condition ``SourceResolved`` reason ``GroupCreateRefused``. Its size
(``boxsize_id``) is what VPSie gives every new node, so it is the size the planners use; a ``sizeId`` in
the spec that differs is reported (condition ``SizeMismatch`` and an Event), never planned with. The
datacenter is the spec's, else the group's.

A discovery by matching costs one cluster list and one detail per cluster: it is shared by every
NodeGroup (single flight), kept once found, and retried no more than once per scan interval after a
failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.nodegroup import ClusterFrom, ManagedSource, ResolvedManagedSource
from vpsie_autoscaler.controllers.cloud import Providers
from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.credentials import SecretHints
from vpsie_autoscaler.vpsie.errors import NotFound, VPSieError

log = structlog.get_logger("vpsie_autoscaler.controllers.discovery")

HOSTNAME_LABEL: Final = "kubernetes.io/hostname"
DEFAULT_RETRY_SECONDS: Final = 10.0
"""After a failed discovery, the next try waits this long (the scan interval): matching lists every
cluster of the account, so a failure is not retried on every NodeGroup reconcile."""

# Reasons of the SourceResolved condition.
REASON_RESOLVED: Final = "Resolved"
REASON_NO_MATCH: Final = "ClusterNotFound"
REASON_AMBIGUOUS: Final = "ClusterAmbiguous"
REASON_NO_NODES: Final = "NoNodesToMatch"
REASON_GROUP_NOT_FOUND: Final = "GroupNotFound"
REASON_GROUP_REFUSED: Final = "GroupCreateRefused"
REASON_GROUP_CREATING: Final = "GroupCreating"
REASON_LOOKUP_FAILED: Final = "VPSieAPIError"
REASON_SIZE_MISMATCH: Final = "SizeMismatch"
REASON_SIZE_MATCHES: Final = "SizeMatches"


# --- matching (pure) -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeEvidence:
    """What this Kubernetes cluster's Nodes say about themselves: host names (lower case) and IPs."""

    hostnames: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.hostnames and not self.addresses


def node_evidence(nodes: Iterable[Mapping[str, Any]]) -> NodeEvidence:
    """Names, ``kubernetes.io/hostname`` labels and ``status.addresses`` of raw Node objects."""
    hostnames: set[str] = set()
    addresses: set[str] = set()
    for node in nodes:
        meta = node.get("metadata") or {}
        if meta.get("name"):
            hostnames.add(str(meta["name"]).lower())
        label = (meta.get("labels") or {}).get(HOSTNAME_LABEL)
        if label:
            hostnames.add(str(label).lower())
        for addr in (node.get("status") or {}).get("addresses") or []:
            value = str(addr.get("address") or "")
            if not value:
                continue
            if addr.get("type") == "Hostname":
                hostnames.add(value.lower())
            else:
                addresses.add(value)
    return NodeEvidence(frozenset(hostnames), frozenset(addresses))


@dataclass(frozen=True)
class ClusterCandidate:
    """A VPSie cluster and what its nodes are called and reached at."""

    identifier: str
    name: str
    hostnames: frozenset[str]
    addresses: frozenset[str]

    @classmethod
    def of(cls, detail: models.K8sClusterDetail) -> ClusterCandidate:
        hostnames = {n.hostname.lower() for n in detail.nodes if n.hostname}
        addresses = {a for n in detail.nodes for a in (n.default_ip, n.private_ip, n.ip) if a}
        return cls(detail.identifier, detail.cluster_name, frozenset(hostnames), frozenset(addresses))

    def label(self) -> str:
        return f"{self.name} ({self.identifier})" if self.name else self.identifier


@dataclass(frozen=True)
class ClusterMatch:
    """The answer of :func:`match_cluster`: a cluster, or why there is none (reason and message)."""

    identifier: str | None
    name: str | None
    reason: str
    message: str


def match_cluster(candidates: Sequence[ClusterCandidate], evidence: NodeEvidence) -> ClusterMatch:
    """The one VPSie cluster whose nodes are this cluster's Nodes.

    Host names decide first; IP addresses only when no cluster matches by host name (private ranges
    repeat across clusters, host names do not). Two clusters matching on the same kind of evidence is
    an ambiguity naming both, never a guess.
    """
    if evidence.empty:
        return ClusterMatch(
            None, None, REASON_NO_NODES, "this cluster has no Nodes to match VPSie clusters to"
        )
    by_kind: tuple[tuple[str, Callable[[ClusterCandidate], int]], ...] = (
        ("host name", lambda c: len(c.hostnames & evidence.hostnames)),
        ("IP address", lambda c: len(c.addresses & evidence.addresses)),
    )
    for kind, score in by_kind:
        found = sorted(
            ((c, n) for c in candidates if (n := score(c))), key=lambda cn: (-cn[1], cn[0].identifier)
        )
        if len(found) == 1:
            ((cluster, count),) = found
            return ClusterMatch(
                cluster.identifier,
                cluster.name or None,
                REASON_RESOLVED,
                f"VPSie cluster {cluster.label()}: {count} of its node(s) match this cluster's Nodes "
                f"by {kind}",
            )
        if len(found) > 1:
            named = "; ".join(f"{c.label()} ({n} by {kind})" for c, n in found)
            return ClusterMatch(
                None,
                None,
                REASON_AMBIGUOUS,
                f"{len(found)} VPSie clusters have nodes that are this cluster's Nodes: {named}; set "
                "spec.managed.clusterIdentifier or --vpsie-cluster-identifier",
            )
    return ClusterMatch(
        None,
        None,
        REASON_NO_MATCH,
        f"none of the {len(candidates)} VPSie cluster(s) of the account has a node that is one of this "
        "cluster's Nodes (by host name or IP); set spec.managed.clusterIdentifier or "
        "--vpsie-cluster-identifier",
    )


# --- the source of one NodeGroup (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    """A managed NodeGroup's source as found: ``found`` for status, or the reason there is none; and a
    size mismatch in words when the spec's ``sizeId`` disagrees with the VPSie group."""

    found: ResolvedManagedSource | None
    reason: str
    message: str
    size_mismatch: str | None = None

    @property
    def ok(self) -> bool:
        return self.found is not None


def find_group(spec: ManagedSource, groups: Sequence[models.K8sNodeGroup]) -> models.K8sNodeGroup | None:
    """The spec's VPSie node group among the cluster's, by id or by name."""
    if spec.node_group_id is not None:
        return next((g for g in groups if g.id == spec.node_group_id), None)
    return next((g for g in groups if g.group_name == spec.node_group_name), None)


def resolve_group(
    spec: ManagedSource,
    *,
    cluster: str,
    cluster_name: str | None,
    cluster_from: ClusterFrom,
    group: models.K8sNodeGroup,
    created: bool = False,
) -> Resolution:
    """The resolved source for a VPSie group that exists; the size is the group's (see module doc)."""
    size = group.boxsize_id or spec.size_id
    mismatch = None
    if spec.size_id is not None and group.boxsize_id is not None and spec.size_id != group.boxsize_id:
        mismatch = (
            f"spec.managed.sizeId {spec.size_id} differs from VPSie group {group.group_name}'s size "
            f"{group.boxsize_id}: new nodes get size {group.boxsize_id} (VPSie's), and scaling plans "
            "with it; "
            f"set sizeId: {group.boxsize_id} or remove it"
        )
    found = ResolvedManagedSource(
        cluster_identifier=cluster,
        cluster_name=cluster_name or None,
        cluster_from=cluster_from,
        node_group_id=group.id,
        node_group_name=group.group_name or None,
        size_id=size,
        datacenter_identifier=spec.datacenter_identifier or group.dc_identifier,
        created=created,
    )
    how = {"spec": "given", "setting": "from --vpsie-cluster-identifier", "secret": "from the vpsie-secret",
           "nodes": "discovered from the Nodes"}[cluster_from]  # fmt: skip
    message = (
        f"VPSie cluster {cluster_name or cluster} ({how}), node group {group.group_name} (id {group.id}), "
        f"size {size}"
    )
    return Resolution(found, REASON_RESOLVED, message, mismatch)


# --- discovery (I/O) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterAnswer:
    identifier: str | None
    name: str | None
    cluster_from: ClusterFrom
    reason: str = REASON_RESOLVED
    message: str = ""


class ClusterDiscovery:
    """This cluster's VPSie cluster, for every managed NodeGroup that does not name one.

    ``client`` and ``hints`` are read at each call (credentials may appear or rotate while running);
    ``nodes`` gives the Nodes from the informer cache.
    """

    def __init__(
        self,
        *,
        client: Callable[[], VPSieClient | None],
        nodes: Callable[[], Iterable[Mapping[str, Any]]],
        setting: str | None = None,
        hints: Callable[[], SecretHints] = SecretHints,
        retry_after: float = DEFAULT_RETRY_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._nodes = nodes
        self._setting = setting or None
        self._hints = hints
        self._retry_after = retry_after
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._found: ClusterMatch | None = None
        self._failed: tuple[float, ClusterMatch] | None = None
        self.matches = 0  # discoveries by matching that reached VPSie (tests, benchmarks)

    async def cluster(self, spec: ManagedSource, previous: ResolvedManagedSource | None) -> ClusterAnswer:
        """The cluster of a NodeGroup with this managed source (see the module docstring for the order)."""
        if spec.cluster_identifier:
            return ClusterAnswer(spec.cluster_identifier, None, "spec")
        if self._setting:
            return ClusterAnswer(self._setting, None, "setting")
        hinted = self._hints().cluster_identifier
        if hinted:
            return ClusterAnswer(hinted, None, "secret")
        if previous is not None and previous.cluster_from == "nodes":
            return ClusterAnswer(previous.cluster_identifier, previous.cluster_name, "nodes")
        match = await self._match()
        return ClusterAnswer(match.identifier, match.name, "nodes", match.reason, match.message)

    async def _match(self) -> ClusterMatch:
        async with self._lock:  # one discovery at a time; the others take its answer
            if self._found is not None:
                return self._found
            if self._failed is not None and self._monotonic() - self._failed[0] < self._retry_after:
                return self._failed[1]
            match = await self._discover()
            if match.identifier is not None:
                self._found = match
                log.info(
                    "discovery.cluster_found", cluster=match.identifier, name=match.name, how=match.message
                )
            else:
                self._failed = (self._monotonic(), match)
                log.warning("discovery.cluster_not_found", reason=match.reason, message=match.message)
            return match

    async def _discover(self) -> ClusterMatch:
        client = self._client()
        if client is None:
            return ClusterMatch(
                None, None, REASON_LOOKUP_FAILED, "no VPSie client to discover the cluster with"
            )
        evidence = node_evidence(self._nodes())
        if evidence.empty:
            return match_cluster([], evidence)
        self.matches += 1
        candidates = []
        try:
            for summary in await client.list_k8s_clusters():
                try:
                    candidates.append(ClusterCandidate.of(await client.get_k8s_cluster(summary.identifier)))
                except NotFound:
                    continue  # deleted since the list: not ours to match
        except VPSieError as exc:
            return ClusterMatch(None, None, REASON_LOOKUP_FAILED, f"listing VPSie clusters: {exc}")
        return match_cluster(candidates, evidence)


class SourceResolver:
    """The whole resolution of one managed NodeGroup's source (cluster, VPSie group, size, datacenter)
    against the shared providers; what the NodeGroup controller writes into ``status.managed``."""

    def __init__(self, providers: Providers, discovery: ClusterDiscovery, *, max_age: float) -> None:
        self.providers = providers
        self.discovery = discovery
        self.max_age = max_age

    async def resolve(
        self,
        spec: ManagedSource,
        previous: ResolvedManagedSource | None,
        *,
        may_create: Callable[[str], bool] = lambda what: True,
    ) -> Resolution:
        """``may_create(what)`` is asked before a VPSie group is created (False: dry-run said "would")."""
        answer = await self.discovery.cluster(spec, previous)
        if answer.identifier is None:
            return Resolution(None, answer.reason, answer.message)
        try:
            groups = await self.providers.node_groups(answer.identifier, max_age=self.max_age)
        except VPSieError as exc:
            return Resolution(
                None, REASON_LOOKUP_FAILED, f"listing the node groups of {answer.identifier}: {exc}"
            )
        group = find_group(spec, groups)
        created = False
        if group is None:
            ensured = await self._create(spec, answer, may_create)
            if isinstance(ensured, Resolution):
                return ensured
            group, created = ensured
        return resolve_group(
            spec,
            cluster=answer.identifier,
            cluster_name=answer.name,
            cluster_from=answer.cluster_from,
            group=group,
            created=created
            or (previous is not None and previous.created and previous.node_group_id == group.id),
        )

    async def _create(
        self, spec: ManagedSource, answer: ClusterAnswer, may_create: Callable[[str], bool]
    ) -> tuple[models.K8sNodeGroup, bool] | Resolution:
        """A missing VPSie group named by the spec: created with the spec's size, or why not."""
        cluster = answer.identifier
        assert cluster is not None
        where = answer.name or cluster
        if spec.node_group_name is None:
            return Resolution(
                None, REASON_GROUP_NOT_FOUND, f"VPSie node group id {spec.node_group_id} not found in {where}"
            )
        name = spec.node_group_name
        if spec.size_id is None:
            return Resolution(
                None,
                REASON_GROUP_NOT_FOUND,
                f"VPSie node group {name} not found in cluster {where}; set spec.managed.sizeId to have it "
                "created",
            )
        allowed = may_create(f"create VPSie node group {name} of size {spec.size_id} in cluster {where}")
        try:
            ensured = await self.providers.ensure_group(cluster, name, spec.size_id, may_create=allowed)
        except VPSieError as exc:
            return Resolution(None, REASON_LOOKUP_FAILED, f"creating VPSie node group {name}: {exc}")
        if ensured.group is not None:
            return ensured.group, ensured.created
        if ensured.refused is not None:
            return Resolution(
                None,
                REASON_GROUP_REFUSED,
                f"VPSie node group {name} (size {spec.size_id}) cannot be created in cluster {where}: "
                f"{ensured.refused}",
            )
        if not allowed:
            return Resolution(
                None,
                REASON_GROUP_NOT_FOUND,
                f"VPSie node group {name} not found in cluster {where} (dry run)",
            )
        return Resolution(
            None,
            REASON_GROUP_CREATING,
            f"VPSie node group {name} was asked for in cluster {where} and is not listed yet; waiting for it "
            "(never asked twice)",
        )
