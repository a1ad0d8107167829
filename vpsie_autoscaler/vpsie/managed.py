"""Nodes of VPSie managed-Kubernetes node groups behind the :class:`NodeProvider` contract.

VPSie's add-node call takes no hostname, returns ``data: true`` and names the node itself
(``<cluster>-slave-<4hex>``, ``docs/vpsie-api.md`` §4.10). The provider therefore only *reports*: which
nodes the group has (``list``), and what an add-node or a delete did (a typed outcome). Which node
answers which request is decided by the VPSieNode controller from its launch records
(:mod:`vpsie_autoscaler.controllers.binding`), never remembered here.

**Group membership.** Cluster detail nodes carry no group in the known shapes. A node belongs to the
group when (in this order): its ``group_id`` equals the group's id (simulator extension); its
cpu/ram/disk equal the group's cpu/ram/ssd (sound because VPSie allows one group per size in a
cluster); or the cluster has exactly one group and the node is a worker. The group's size and the
cluster's group list change rarely, so they are read once per ``group_ttl`` seconds: a listing costs one
call (the cluster detail) most of the time, and one listing answers every group of the cluster
(``listing_scope``).

**Deleting** uses the targeted ``delete/slave {identifier}`` only. VPSie's ``reduce/slave`` lets VPSie
choose which node goes: a healthy node of another record could die without a drain, and a reduce whose
answer was lost cannot be told apart from one that never happened. It is not used. A node VPSie does
not know by identifier ("Not found") is reported as already gone; the caller checks the next listing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import structlog

from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.errors import (
    DuplicateGroupSize,
    NotFound,
    VPSieError,
    request_may_have_reached_vpsie,
)
from vpsie_autoscaler.vpsie.provider import (
    DONE,
    CreateRequest,
    Instance,
    InstanceState,
    ManagedSource,
    MutationResult,
    NodeSource,
)

log = structlog.get_logger("vpsie_autoscaler.vpsie.managed")

# VPSie node status words (AS shape; vocabulary unverified, §7): anything else with a node present
# counts as running, since the SDK shape has no status at all and lists only existing nodes.
_PENDING_STATUSES = frozenset({"creating", "provisioning", "pending", "installing", "booting"})
_STOPPED_STATUSES = frozenset({"stopped", "off", "shutdown"})
_FAILED_STATUSES = frozenset({"failed", "error"})

DEFAULT_GROUP_TTL_SECONDS = 60.0
"""How long a cluster's group list (sizes, for membership) is reused. Groups are created by people."""


def _state(node: models.K8sNode) -> InstanceState:
    status = (node.status or "").lower()
    if status in _PENDING_STATUSES:
        return InstanceState.PENDING
    if status in _STOPPED_STATUSES:
        return InstanceState.STOPPED
    if status in _FAILED_STATUSES:
        return InstanceState.FAILED
    return InstanceState.RUNNING


@dataclass(frozen=True)
class ClusterRead:
    """One read of a managed cluster: its nodes (cluster detail) and its node groups (for membership)."""

    cluster_identifier: str
    nodes: tuple[models.K8sNode, ...]
    groups: tuple[models.K8sNodeGroup, ...]


def _source(source: NodeSource) -> ManagedSource:
    if not isinstance(source, ManagedSource):
        raise TypeError(f"ManagedKubernetesProvider serves managed node groups, got {type(source).__name__}")
    return source


def group_members(
    group: models.K8sNodeGroup | None, groups: list[models.K8sNodeGroup], nodes: list[models.K8sNode]
) -> list[models.K8sNode]:
    """The worker nodes of ``group`` among a cluster's nodes (see the module docstring)."""
    workers = [n for n in nodes if n.is_worker]
    if group is None:
        return []
    if any(n.group_id is not None for n in workers):
        return [n for n in workers if n.group_id == group.id]
    if any(n.cpu is not None for n in workers):
        size = (group.cpu, group.ram, group.ssd)
        return [n for n in workers if (n.cpu, n.ram, n.disk) == size]
    return workers if len(groups) == 1 else []


class ManagedKubernetesProvider:
    def __init__(
        self,
        client: VPSieClient,
        *,
        group_ttl: float = DEFAULT_GROUP_TTL_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._group_ttl = group_ttl
        self._monotonic = monotonic
        # A performance cache only: group sizes for membership (never decides what to create or delete).
        self._groups: dict[str, tuple[float, list[models.K8sNodeGroup]]] = {}

    def __repr__(self) -> str:
        return "ManagedKubernetesProvider()"

    async def _cluster_groups(self, cluster: str, *, fresh: bool = False) -> list[models.K8sNodeGroup]:
        entry = self._groups.get(cluster)
        if entry is not None and not fresh and self._monotonic() - entry[0] <= self._group_ttl:
            return entry[1]
        groups = await self._client.list_node_groups(cluster)
        self._groups[cluster] = (self._monotonic(), groups)
        return groups

    def listing_scope(self, source: NodeSource) -> Hashable:
        """The groups of one cluster share its cluster detail: one read answers all of them."""
        return ("vpsie-cluster", _source(source).cluster_identifier)

    async def read_scope(self, source: NodeSource) -> object:
        src = _source(source)
        detail = await self._client.get_k8s_cluster(src.cluster_identifier)
        groups = await self._cluster_groups(src.cluster_identifier)
        if not any(g.id == src.group_id for g in groups):  # a group created since the last read
            groups = await self._cluster_groups(src.cluster_identifier, fresh=True)
        return ClusterRead(
            cluster_identifier=src.cluster_identifier, nodes=tuple(detail.nodes), groups=tuple(groups)
        )

    def select(self, source: NodeSource, read: object) -> list[Instance]:
        src = _source(source)
        if not isinstance(read, ClusterRead) or read.cluster_identifier != src.cluster_identifier:
            raise TypeError(f"not a read of cluster {src.cluster_identifier}")
        group = next((g for g in read.groups if g.id == src.group_id), None)
        if group is None:
            raise NotFound(
                f"node group {src.group_id} not found in cluster {src.cluster_identifier}",
                operation="list_node_groups",
            )
        return [self._instance(src, n) for n in group_members(group, list(read.groups), list(read.nodes))]

    def _instance(self, source: ManagedSource, node: models.K8sNode) -> Instance:
        return Instance(
            hostname=node.hostname,
            source=source,
            state=_state(node),
            identifier=node.identifier,
            numeric_id=node.id,
            ip=node.address,
            private_ip=node.private_ip,
            created_at=node.created_on,
            cpu=node.cpu,
            ram_mb=node.ram,
            disk_gb=node.disk,
        )

    async def list(self, source: NodeSource) -> list[Instance]:
        return self.select(source, await self.read_scope(source))

    async def launch(self, request: CreateRequest) -> MutationResult:
        """One add-node call, never retried (VPSie has no idempotency key: a retry could add a node)."""
        src = _source(request.source)
        try:
            await self._client.add_node(src.cluster_identifier, src.group_id)
        except BaseException as exc:
            result = MutationResult.of_error(exc)
            log.warning(
                "vpsie.managed.add_node_failed",
                requested=request.hostname,
                group=src.group_id,
                outcome=result.outcome.value,
                error=result.detail,
            )
            if not isinstance(exc, Exception):
                raise  # cancellation: the caller's record already counts the call as sent
            return result
        log.info("vpsie.managed.add_node", requested=request.hostname, group=src.group_id)
        return DONE

    async def delete(self, instance: Instance) -> MutationResult:
        src = _source(instance.source)
        if instance.identifier is None:
            return MutationResult.of_error(
                NotFound(f"node {instance.hostname} has no VPSie identifier yet", operation="delete_node")
            )
        try:
            await self._client.delete_node(src.cluster_identifier, instance.identifier)
        except NotFound:
            log.info("vpsie.managed.already_gone", hostname=instance.hostname)
            return DONE
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            return MutationResult.of_error(exc)
        log.info("vpsie.managed.delete_node", hostname=instance.hostname, identifier=instance.identifier)
        return DONE

    async def owner_tags(self, instance: Instance) -> frozenset[str] | None:
        return None  # VPSie keeps no tags on managed nodes


# --- the VPSie node group itself -------------------------------------------------------------------


@dataclass(frozen=True)
class EnsuredGroup:
    """What :func:`ensure_node_group` found or did.

    ``group``: the VPSie group (None unless it exists and is listed). ``created``: this call created it
    (or proved that an earlier call whose answer was lost did). ``refused``: VPSie's refusal, or ours
    before asking (another group already has the size), in words. ``in_doubt``: a create may have
    happened but the listing does not show it yet: look again before asking again.
    """

    group: models.K8sNodeGroup | None
    created: bool = False
    refused: str | None = None
    in_doubt: bool = False


def _by_name(groups: list[models.K8sNodeGroup], name: str) -> models.K8sNodeGroup | None:
    return next((g for g in groups if g.group_name == name), None)


async def ensure_node_group(
    client: VPSieClient,
    cluster: str,
    name: str,
    size_id: int,
    *,
    may_create: bool = True,
    before_create: Callable[[], None] = lambda: None,
) -> EnsuredGroup:
    """Make sure the cluster has a VPSie node group ``name`` of size ``size_id``: **the single place**
    where the autoscaler creates VPSie node groups (a NodeGroup whose group does not exist, and any
    caller that needs a group per plan, go through here).

    1. List the cluster's groups: one named ``name`` is the answer, whatever its size (the caller
       compares sizes).
    2. VPSie keeps one group per size in a cluster (``docs/vpsie-api.md`` §4.10: "Group … has same
       selected Size, please select another size"): when another group has the size, the refusal is
       reported without asking.
    3. ``POST /k8s/cluster/add/group`` (``before_create`` first: the leader fence), then list again:
       VPSie returns no usable id.

    Never two creates for one answer lost: a create whose answer was lost (timeout, unparsable 2xx) is
    resolved by listing, and a create refused for "same size" by a group of our own name means an
    earlier create did happen. ``may_create=False`` (a create in doubt is still settling, or dry-run)
    only lists.
    """
    groups = await client.list_node_groups(cluster)
    found = _by_name(groups, name)
    if found is not None:
        return EnsuredGroup(found)
    same_size = next((g for g in groups if g.boxsize_id == size_id), None)
    if same_size is not None:
        return EnsuredGroup(
            None,
            refused=f"VPSie keeps one node group per size: group {same_size.group_name} (id {same_size.id}) "
            f"already has size {size_id}; name that group (nodeGroupName: {same_size.group_name}) or "
            "choose another sizeId",
        )
    if not may_create:
        return EnsuredGroup(None, in_doubt=True)
    before_create()
    try:
        created = await client.create_node_group(cluster, name, size_id)
    except DuplicateGroupSize as exc:
        again = _by_name(await client.list_node_groups(cluster), name)
        if again is not None:  # an earlier create of ours, answered late
            return EnsuredGroup(again, created=True)
        return EnsuredGroup(None, refused=str(exc))
    except VPSieError as exc:
        if not request_may_have_reached_vpsie(exc):
            log.warning("vpsie.managed.create_group_refused", cluster=cluster, group=name, error=str(exc))
            return EnsuredGroup(None, refused=str(exc))
        again = _by_name(await client.list_node_groups(cluster), name)
        if again is not None:
            return EnsuredGroup(again, created=True)
        log.warning("vpsie.managed.create_group_in_doubt", cluster=cluster, group=name, error=str(exc))
        return EnsuredGroup(None, in_doubt=True)
    log.info("vpsie.managed.create_group", cluster=cluster, group=name, size=size_id)
    if created is None:
        return EnsuredGroup(None, in_doubt=True)
    return EnsuredGroup(created, created=True)
