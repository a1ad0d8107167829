"""The cloud contract the controllers program against, in the shape of Karpenter's ``CloudProvider``.

**Stateless.** A provider reads and mutates; it keeps nothing that decides correctness and knows no
Kubernetes client. What the autoscaler asked for, and which instance answers it, is the *launch record*
in the VPSieNode's status, written by the VPSieNode controller alone (Karpenter: the NodeClaim is the
record, ``CloudProvider.Create/Delete/List`` are plain calls).

**Typed outcomes.** Every mutation returns a :class:`MutationResult`: ``NOT_DONE`` (refused before it
left, or answered with a refusal by VPSie), ``DONE`` (VPSie accepted it), or ``UNKNOWN`` (the request may
have reached VPSie and its answer was lost: a timeout, a gateway 502/504, a connection reset, a
cancellation in flight). Unknown counts as sent: the caller waits for evidence and never asks again.

VPSie creates asynchronously and returns no id (``docs/vpsie-api.md`` §0, §3.5): a plain VM is found again
by the hostname chosen before the call; a node of a managed group is named by VPSie and is bound to its
launch record by the controller (see :mod:`vpsie_autoscaler.controllers.binding`). Hostnames
compare case-insensitively: VPSie keeps mixed case, Kubernetes lower-cases node names. Deletion always
targets one instance by its identifier.

Two implementations: :class:`~vpsie_autoscaler.vpsie.managed.ManagedKubernetesProvider` (nodes of a
VPSie managed-Kubernetes node group) and :class:`~vpsie_autoscaler.vpsie.vms.VMProvider` (plain VMs that
join a self-managed cluster with a boot script, tagged at creation with their owner).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from vpsie_autoscaler.vpsie.errors import request_may_have_reached_vpsie


class Outcome(StrEnum):
    """What a cloud mutation did, as far as the caller can know."""

    NOT_DONE = "NotDone"  # refused before sending or by VPSie: nothing happened
    DONE = "Done"  # VPSie accepted it
    UNKNOWN = "Unknown"  # may have reached VPSie, answer lost: counts as sent


@dataclass(frozen=True)
class MutationResult:
    outcome: Outcome
    error: BaseException | None = None

    @property
    def sent(self) -> bool:
        """True unless the mutation provably did not happen ("unknown" means sent)."""
        return self.outcome is not Outcome.NOT_DONE

    @property
    def detail(self) -> str:
        return "" if self.error is None else str(self.error) or type(self.error).__name__

    @classmethod
    def of_error(cls, exc: BaseException) -> MutationResult:
        """The outcome an exception of the call means (``errors.request_may_have_reached_vpsie``)."""
        unknown = request_may_have_reached_vpsie(exc)
        return cls(Outcome.UNKNOWN if unknown else Outcome.NOT_DONE, exc)


DONE: MutationResult = MutationResult(Outcome.DONE)


class InstanceState(StrEnum):
    PENDING = "pending"  # accepted by VPSie, not running yet
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Taint:
    """A Kubernetes node taint (``effect``: NoSchedule, PreferNoSchedule or NoExecute)."""

    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class ManagedSource:
    """A VPSie managed-Kubernetes node group. ``group_id`` is the numeric id VPSie uses in paths."""

    cluster_identifier: str
    group_id: int
    group_name: str = ""


@dataclass(frozen=True)
class VMSource:
    """Plain VMs of one NodeGroup: the VMs named ``hostname_prefix`` + ``suffix_length`` [a-z0-9]."""

    hostname_prefix: str
    resource_identifier: str  # the plan
    os_identifier: str
    dc_identifier: str
    project_identifier: str
    ssh_key_identifier: str | None = None
    script_identifier: str | None = None
    tags: tuple[str, ...] = ()
    suffix_length: int = 5


NodeSource = ManagedSource | VMSource


@dataclass(frozen=True)
class CreateRequest:
    """One node to create. ``labels``/``taints`` are what the Node must carry when it joins."""

    hostname: str
    source: NodeSource
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    taints: tuple[Taint, ...] = ()
    tags: tuple[str, ...] = ()  # ownership tags for VMs (this cluster, the NodeGroup)


@dataclass(frozen=True)
class Instance:
    """A VPSie instance as the provider sees it.

    ``hostname`` is VPSie's hostname (the Kubernetes node name is its lower-cased form).
    ``identifier`` is None while VPSie has not materialised the instance (a VM still in the pending
    queue).
    """

    hostname: str
    source: NodeSource
    state: InstanceState
    identifier: str | None = None
    numeric_id: int | None = None
    ip: str | None = None
    private_ip: str | None = None
    plan: str | None = None
    created_at: datetime | None = None
    cpu: int | None = None
    ram_mb: int | None = None
    disk_gb: int | None = None

    @property
    def node_name(self) -> str:
        return self.hostname.lower()

    def answers_to(self, hostname: str) -> bool:
        """True when ``hostname`` names this instance (any case)."""
        return hostname.lower() == self.hostname.lower()

    @property
    def key(self) -> str:
        """How records refer to it: the identifier once VPSie has one, else the lower-cased hostname."""
        return self.identifier or self.hostname.lower()


class NodeProvider(Protocol):
    async def launch(self, request: CreateRequest) -> MutationResult:
        """Ask VPSie for one node, once. Never reads first and never retries: the caller decided."""

    async def delete(self, instance: Instance) -> MutationResult:
        """Delete exactly this instance, by identifier. Already gone counts as done."""

    async def list(self, source: NodeSource) -> list[Instance]:
        """Every instance of that source, pending ones included."""

    async def owner_tags(self, instance: Instance) -> frozenset[str] | None:
        """The tags VPSie keeps for the instance (plain VMs), None where VPSie has no tags (managed)."""


@runtime_checkable
class ScopedListing(Protocol):
    """A provider whose listings of several sources come from one read.

    Why: VPSie's listings are wider than a NodeGroup. Every plain VM of the account comes from one
    ``vm`` listing and its pending queue (``docs/vpsie-api.md`` §4.5), and every node of a managed
    cluster from its one cluster detail (§4.10). Read per source, N NodeGroups cost N times the same
    calls, and the periodic listings of a dozen groups alone exceed the client's rate budget, so
    launches queue behind them. One read per *scope* answers every source in it: the calls scale with
    accounts and clusters, not with NodeGroups (cluster-autoscaler's cloud providers likewise refresh
    one cache of all instances per loop rather than one call per node group).
    """

    def listing_scope(self, source: NodeSource) -> Hashable:
        """Sources with equal scopes are answered by the same :meth:`read_scope`."""

    async def read_scope(self, source: NodeSource) -> object:
        """One read of everything in ``source``'s scope (opaque to the caller)."""

    def select(self, source: NodeSource, read: object) -> list[Instance]:
        """``source``'s instances in a read of its scope (what ``list(source)`` returns); raises like
        ``list`` when the read shows the source does not exist."""
