"""Nodes of VPSie managed-Kubernetes node groups behind the :class:`NodeProvider` contract.

**How the hostname is the handle here.** VPSie's add-node call takes no hostname, returns ``data:
true`` and names the node itself (``<cluster>-slave-<4hex>``, ``docs/vpsie-api.md`` §4.10). So the
provider *binds* the hostname the autoscaler asked for to the node VPSie creates:

1. ``create`` records a claim (requested hostname, group, the set of nodes the group had just before
   the call, time) and calls add-node once (never retried: a retry could add a second node);
2. ``get``/``list`` match claims to nodes that appeared in the group since the claim's snapshot, oldest
   claim to oldest new node (FIFO: VPSie provisions a group's nodes in request order);
3. until then the claim shows as a PENDING instance named by the requested hostname; once bound, the
   instance carries VPSie's hostname (the Node name is its lower-cased form) and
   ``requested_hostname``, and answers to both.

Claims are kept in a :class:`ClaimStore`, written *before* add-node is called, again once add-node
has answered (``sent``), and again when bound (a write-ahead log, as the VPSieNode itself is written
before the cloud call). The default :class:`MemoryClaimStore` forgets on restart; a store that
persists claims (for example in the VPSieNode's annotations) makes the binding survive a crash
between add-node and the node's first appearance. Nodes of the group bound to no claim show up in
``list`` with ``requested_hostname=None``.

**A claim in doubt.** A claim written but never marked ``sent`` was left by a process that died
between the write and add-node's answer: VPSie may or may not have received the call. Such a claim
is *not* shown as a pending instance (that would let the caller "adopt" a node nobody asked for and
later steal the node of the next request, leaving one record without a node). It binds only to a new
node that no sent claim takes (sent claims are served first, so a node really requested by someone
else is never taken); if none is there, ``create`` for that hostname asks VPSie again. This follows
the write-ahead-log recovery rule: an operation whose commit record is missing is redone, never
presumed done. The redo can double a node only if the lost call reached VPSie *and* its node is not
listed yet when the next leader acts (after the lease handover); such a node is unclaimed and goes
the orphan way (reported, then deleted after the grace).

A claim whose node never appears (VPSie accepted but never delivered, or a crash between writing the
claim and add-node) is abandoned on ``delete`` once it is older than ``abandon_after``: the delete
succeeds, and a node arriving later is simply unclaimed.

**Group membership.** Cluster detail nodes carry no group in the known shapes. A node belongs to the
group when (in this order): its ``group_id`` equals the group's id (simulator extension); its
cpu/ram/disk equal the group's cpu/ram/ssd (sound because VPSie allows one group per size in a
cluster); or the cluster has exactly one group and the node is a worker.

**Deleting.** The targeted ``delete/slave {identifier}`` is used when the node identifier is known
(AS shape). If VPSie does not know the node identifier (SDK shape, or the targeted route answers "Not
found" while the node is still listed), the provider falls back to ``reduce/slave {groupId}``, where
VPSie chooses which node goes; that fallback can be switched off. A reduce is sent at most once per
node (remembered in memory), so repeating a delete never removes a second node; whether VPSie removed
the intended node is visible in ``list`` afterwards. Delete first re-reads the group: an instance that is
no longer listed is already gone (success).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.vpsie import models as m
from vpsie_autoscaler.vpsie.client import VPSieClient
from vpsie_autoscaler.vpsie.errors import InstanceNotReady, NotFound, VPSieTimeout
from vpsie_autoscaler.vpsie.provider import (
    CreateRequest,
    Instance,
    InstanceState,
    ManagedSource,
    NodeSource,
)

log = structlog.get_logger("vpsie_autoscaler.vpsie.managed")

# VPSie node status words (AS shape; vocabulary unverified, §7): anything else with a node present
# counts as running, since the SDK shape has no status at all and lists only existing nodes.
_PENDING_STATUSES = frozenset({"creating", "provisioning", "pending", "installing", "booting"})
_STOPPED_STATUSES = frozenset({"stopped", "off", "shutdown"})
_FAILED_STATUSES = frozenset({"failed", "error"})


DEFAULT_ABANDON_AFTER = timedelta(minutes=30)  # longer than any sane maxProvisionTime


@dataclass(frozen=True)
class Claim:
    """A requested node: the hostname the autoscaler chose, and the VPSie node it was bound to."""

    requested: str  # the hostname the autoscaler chose
    source: ManagedSource
    baseline: frozenset[str]  # lower-cased hostnames in the group just before add-node
    created: datetime
    bound: str | None = None  # lower-cased VPSie hostname once matched
    # add-node answered (or timed out) in the process that wrote the claim; False = written ahead only
    sent: bool = True

    @property
    def in_doubt(self) -> bool:
        """Written ahead of an add-node whose outcome nobody saw, and matched to no node yet."""
        return not self.sent and self.bound is None

    @property
    def key(self) -> str:
        return self.requested.lower()


class ClaimStore(Protocol):
    """Where claims live. Every method may do I/O; ``put`` replaces a claim with the same key."""

    async def load(self) -> list[Claim]: ...

    async def put(self, claim: Claim) -> None: ...

    async def remove(self, requested: str) -> None: ...


class MemoryClaimStore:
    """Claims in memory only (lost on restart)."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}

    async def load(self) -> list[Claim]:
        return list(self.claims.values())

    async def put(self, claim: Claim) -> None:
        self.claims[claim.key] = claim

    async def remove(self, requested: str) -> None:
        self.claims.pop(requested.lower(), None)


def _state(node: m.K8sNode) -> InstanceState:
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


class ManagedKubernetesProvider:
    def __init__(
        self,
        client: VPSieClient,
        *,
        clock: Clock | None = None,
        claims: ClaimStore | None = None,
        reduce_fallback: bool = True,
        abandon_after: timedelta = DEFAULT_ABANDON_AFTER,
    ) -> None:
        self._client = client
        self._clock = clock or RealClock()
        self._store: ClaimStore = claims if claims is not None else MemoryClaimStore()
        self._reduce_fallback = reduce_fallback
        self._abandon_after = abandon_after
        self._claims: dict[str, Claim] | None = None  # cache of the store, by lower-cased requested hostname
        self._reducing: set[str] = set()  # lower-cased hostnames a reduce was sent for
        # Claims change under one lock: two concurrent creates of a hostname must not both add a node,
        # and two concurrent lists must not bind one node to two claims.
        self._lock = asyncio.Lock()

    async def _loaded(self) -> dict[str, Claim]:
        if self._claims is None:
            self._claims = {c.key: c for c in await self._store.load()}
        return self._claims

    async def _put(self, claim: Claim) -> None:
        await self._store.put(claim)
        (await self._loaded())[claim.key] = claim

    async def _mark_sent(self, claim: Claim) -> None:
        """Record that add-node was asked. This process knows it even if the store write fails (then a
        restart sees the claim in doubt and binds it to its node, which is listed by then)."""
        sent = replace(claim, sent=True)
        (await self._loaded())[sent.key] = sent
        try:
            await self._store.put(sent)
        except Exception as exc:  # the call was made: failing now would hide that
            log.warning("vpsie.managed.claim_sent_not_persisted", requested=claim.requested, error=str(exc))

    async def _drop(self, claim: Claim) -> None:
        await self._store.remove(claim.requested)
        (await self._loaded()).pop(claim.key, None)

    async def _group_nodes(self, source: ManagedSource) -> tuple[m.K8sNodeGroup | None, list[m.K8sNode]]:
        detail = await self._client.get_k8s_cluster(source.cluster_identifier)
        groups = await self._client.list_node_groups(source.cluster_identifier)
        group = next((g for g in groups if g.id == source.group_id), None)
        workers = [n for n in detail.nodes if n.is_worker]
        if group is None:
            return None, []
        if any(n.group_id is not None for n in workers):
            return group, [n for n in workers if n.group_id == group.id]
        if any(n.cpu is not None for n in workers):
            size = (group.cpu, group.ram, group.ssd)
            return group, [n for n in workers if (n.cpu, n.ram, n.disk) == size]
        return group, workers if len(groups) == 1 else []

    async def _bind(self, source: ManagedSource, nodes: list[m.K8sNode]) -> dict[str, Claim]:
        async with self._lock:
            return await self._bind_locked(source, nodes)

    async def _bind_locked(self, source: ManagedSource, nodes: list[m.K8sNode]) -> dict[str, Claim]:
        claims = await self._loaded()
        # Sent claims first (FIFO), then claims in doubt: a node someone surely asked for is never
        # given to a request that may never have reached VPSie.
        waiting = sorted(
            (c for c in claims.values() if c.source == source and c.bound is None),
            key=lambda c: (c.in_doubt, c.created),
        )
        taken = {c.bound for c in claims.values() if c.bound is not None}
        fresh = sorted(nodes, key=lambda n: (n.created_on is None, n.created_on or datetime.min, n.id or 0))
        for claim in waiting:
            for node in fresh:
                name = node.hostname.lower()
                if name not in taken and name not in claim.baseline:
                    await self._put(replace(claim, bound=name, sent=True))
                    taken.add(name)
                    log.info("vpsie.managed.bound", requested=claim.requested, hostname=node.hostname)
                    break
        return claims

    def _instance(self, source: ManagedSource, node: m.K8sNode, requested: str | None) -> Instance:
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
            requested_hostname=requested,
        )

    def _pending(self, claim: Claim) -> Instance:
        return Instance(
            hostname=claim.requested,
            source=claim.source,
            state=InstanceState.PENDING,
            created_at=claim.created,
            requested_hostname=claim.requested,
        )

    async def list(self, source: NodeSource) -> list[Instance]:
        src = _source(source)
        _, nodes = await self._group_nodes(src)
        claims = await self._bind(src, nodes)
        requested_by_node = {c.bound: c.requested for c in claims.values() if c.bound}
        result = [self._instance(src, n, requested_by_node.get(n.hostname.lower())) for n in nodes]
        # A bound claim whose node is gone is not listed: the node was deleted. A claim in doubt is not
        # listed either: nothing says VPSie was ever asked (``create`` resolves it).
        result.extend(
            self._pending(c)
            for c in claims.values()
            if c.source == src and c.bound is None and not c.in_doubt
        )
        return result

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        for instance in await self.list(source):
            if instance.answers_to(hostname):
                return instance
        return None

    async def create(self, request: CreateRequest) -> None:
        async with self._lock:
            await self._create_locked(request)

    async def _create_locked(self, request: CreateRequest) -> None:
        src = _source(request.source)
        key = request.hostname.lower()
        existing = (await self._loaded()).get(key)
        if existing is not None and not existing.in_doubt:
            return  # already requested: VPSie has no idempotency key, so never ask twice
        group, nodes = await self._group_nodes(src)
        if group is None:
            raise NotFound(
                f"node group {src.group_id} not found in cluster {src.cluster_identifier}",
                operation="add_node",
            )
        if any(n.hostname.lower() == key for n in nodes):
            return
        if existing is not None:
            # In doubt: if the lost call did reach VPSie, its node is here and unclaimed; else redo it.
            resolved = (await self._bind_locked(src, nodes)).get(key)
            if resolved is not None and not resolved.in_doubt:
                return
            log.warning("vpsie.managed.claim_in_doubt_redone", requested=request.hostname, group=src.group_id)
        claim = Claim(
            requested=request.hostname,
            source=src,
            baseline=frozenset(n.hostname.lower() for n in nodes),
            created=self._clock.now(),
            sent=False,
        )
        await self._put(claim)  # write-ahead: a crash after add-node still finds the claim
        try:
            await self._client.add_node(src.cluster_identifier, src.group_id)
        except VPSieTimeout:
            # The outcome is unknown but VPSie was asked: keep the claim as sent, the node may appear.
            await self._mark_sent(claim)
            raise
        except BaseException:
            await self._drop(claim)
            raise
        await self._mark_sent(claim)
        log.info("vpsie.managed.add_node", requested=request.hostname, group=src.group_id)

    async def delete(self, instance: Instance) -> None:
        src = _source(instance.source)
        current = await self.get(src, instance.requested_hostname or instance.hostname)
        if current is None:
            await self._forget(instance)
            return  # already gone
        if current.identifier is None and current.numeric_id is None:
            created = current.created_at or self._clock.now()
            if self._clock.now() - created < self._abandon_after:
                raise InstanceNotReady(
                    f"node {instance.hostname} is not created yet; delete it once it appears",
                    operation="delete_node",
                )
            log.warning(
                "vpsie.managed.claim_abandoned", requested=current.hostname, since=created.isoformat()
            )
            await self._forget(current)
            return
        if current.identifier is not None:
            try:
                await self._client.delete_node(src.cluster_identifier, current.identifier)
            except NotFound:
                _, nodes = await self._group_nodes(src)
                if any(n.identifier == current.identifier for n in nodes):
                    # The node is listed but the targeted route does not know it: no targeted delete here.
                    log.warning("vpsie.managed.targeted_delete_unavailable", hostname=current.hostname)
                    await self._reduce(src, current)
            await self._forget(current)
            return
        await self._reduce(src, current)
        await self._forget(current)

    async def _reduce(self, src: ManagedSource, instance: Instance) -> None:
        """Ask VPSie to remove *a* node of the group, once per node (a second reduce would take another)."""
        name = instance.hostname.lower()
        if name in self._reducing:
            return  # already asked; the node is on its way out
        if not self._reduce_fallback:
            raise NotFound(
                f"VPSie cannot delete node {instance.hostname} by identifier and reduce fallback is off",
                operation="delete_node",
            )
        log.warning(
            "vpsie.managed.reduce",
            hostname=instance.hostname,
            group=src.group_id,
            note="VPSie picks the node",
        )
        await self._client.reduce_group(src.cluster_identifier, src.group_id)
        self._reducing.add(name)

    async def _forget(self, instance: Instance) -> None:
        async with self._lock:
            await self._forget_locked(instance)

    async def _forget_locked(self, instance: Instance) -> None:
        for claim in list((await self._loaded()).values()):
            if instance.answers_to(claim.requested) or claim.bound == instance.hostname.lower():
                await self._drop(claim)
