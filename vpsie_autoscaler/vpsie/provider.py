"""The cloud contract the controllers program against, in the shape of Karpenter's ``CloudProvider``.

VPSie creates asynchronously and returns no id (``docs/vpsie-api.md`` §0, §3.5), so the **hostname is
the handle**: the autoscaler chooses it before the cloud call (and writes it into the VPSieNode first),
``create`` is idempotent by hostname, and ``get``/``list`` find instances by hostname, pending ones
included. Hostnames compare case-insensitively: VPSie keeps mixed case, Kubernetes lower-cases node
names.

Two implementations: :class:`~vpsie_autoscaler.vpsie.managed.ManagedKubernetesProvider` (nodes of a
VPSie managed-Kubernetes node group; VPSie names those nodes itself, see that module for how the
requested hostname is bound to the node VPSie creates) and :class:`~vpsie_autoscaler.vpsie.vms.VMProvider`
(plain VMs that join a self-managed cluster with a boot script).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol


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
    """Plain VMs of one NodeGroup: the VMs whose hostname starts with ``hostname_prefix``."""

    hostname_prefix: str
    resource_identifier: str  # the plan
    os_identifier: str
    dc_identifier: str
    project_identifier: str
    ssh_key_identifier: str | None = None
    script_identifier: str | None = None
    tags: tuple[str, ...] = ()


NodeSource = ManagedSource | VMSource


@dataclass(frozen=True)
class CreateRequest:
    """One node to create. ``labels``/``taints`` are what the Node must carry when it joins."""

    hostname: str
    source: NodeSource
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    taints: tuple[Taint, ...] = ()


@dataclass(frozen=True)
class Instance:
    """A VPSie instance as the provider sees it.

    ``hostname`` is VPSie's hostname (the Kubernetes node name is its lower-cased form);
    ``requested_hostname`` is the hostname the autoscaler asked for when VPSie chose another one
    (managed groups). ``identifier`` is None while VPSie has not materialised the instance.
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
    requested_hostname: str | None = None

    @property
    def node_name(self) -> str:
        return self.hostname.lower()

    def answers_to(self, hostname: str) -> bool:
        """True when ``hostname`` names this instance (its own or the requested one, any case)."""
        wanted = hostname.lower()
        return wanted == self.hostname.lower() or (
            self.requested_hostname is not None and wanted == self.requested_hostname.lower()
        )


class NodeProvider(Protocol):
    async def create(self, request: CreateRequest) -> None:
        """Start creating a node named ``request.hostname``; a no-op if it already exists or is pending."""

    async def delete(self, instance: Instance) -> None:
        """Delete the instance; an instance that is already gone counts as success."""

    async def list(self, source: NodeSource) -> list[Instance]:
        """Every instance of that source, pending ones included."""

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        """The instance answering to ``hostname`` (case-insensitive), or None."""
