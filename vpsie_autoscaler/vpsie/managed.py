"""Nodes of VPSie managed-Kubernetes node groups behind the :class:`NodeProvider` contract.

VPSie's add-node call takes no hostname, returns ``data: true`` and names the node itself
(``<cluster>-slave-<4hex>``, ``docs/vpsie-api.md`` §4.10). The provider therefore only *reports*: which
nodes the group has (``list``), and what an add-node or a delete did (a typed outcome). Which node
answers which request is decided by the VPSieNode controller from its launch records
(:mod:`vpsie_autoscaler.controllers.vpsienode.binding`), never remembered here.

**Group membership.** Cluster detail nodes carry no group in the known shapes. A node belongs to the
group when (in this order): its ``group_id`` equals the group's id (simulator extension); its
cpu/ram/disk equal the group's cpu/ram/ssd (sound because VPSie allows one group per size in a
cluster); or the cluster has exactly one group and the node is a worker. The group's size and the
cluster's group list change rarely, so they are read once per ``group_ttl`` seconds: a listing costs one
call (the cluster detail) most of the time.

**Deleting** uses the targeted ``delete/slave {identifier}`` only. VPSie's ``reduce/slave`` lets VPSie
choose which node goes: a healthy node of another record could die without a drain, and a reduce whose
answer was lost cannot be told apart from one that never happened. It is not used. A node VPSie does
not know by identifier ("Not found") is reported as already gone; the caller checks the next listing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.errors import NotFound
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

    async def _group_nodes(self, source: ManagedSource) -> list[models.K8sNode]:
        detail = await self._client.get_k8s_cluster(source.cluster_identifier)
        groups = await self._cluster_groups(source.cluster_identifier)
        group = next((g for g in groups if g.id == source.group_id), None)
        if group is None:  # a group created since the last read
            groups = await self._cluster_groups(source.cluster_identifier, fresh=True)
            group = next((g for g in groups if g.id == source.group_id), None)
        if group is None:
            raise NotFound(
                f"node group {source.group_id} not found in cluster {source.cluster_identifier}",
                operation="list_node_groups",
            )
        return group_members(group, groups, detail.nodes)

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
        src = _source(source)
        return [self._instance(src, n) for n in await self._group_nodes(src)]

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
