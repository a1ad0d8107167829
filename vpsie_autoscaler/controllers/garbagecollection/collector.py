"""Garbage collection: orphan VPSie instances, and Failed VPSieNodes past their TTL.

**Orphans** (SPEC §4 "Always"; cluster-autoscaler's "unregistered nodes", Karpenter's garbage
collection controller). An instance is an orphan when it is *ours* and no VPSieNode answers to it:

- plain VMs: the hostname is exactly ``<group prefix><5 [a-z0-9]>``, the name
  :func:`~vpsie_autoscaler.api.vpsienode.hostname_for` gives every new VPSieNode of the group;
- managed nodes: VPSie names them itself, so only a node the provider bound to a hostname we
  requested (``Instance.requested_hostname`` of our naming) is ours. Nodes of the VPSie group that
  nobody requested through the autoscaler are never touched.

Every orphan is reported (log, Warning Event ``OrphanInstance`` on its NodeGroup, the
``vpsie_autoscaler_orphan_instances`` gauge), and deleted once it is older than the grace period,
counted from the instance's creation time in VPSie: the timer survives restarts without any state,
and a VPSieNode always exists before its instance (it is written before the cloud call), so an
instance that old without one is not a creation in flight. Instances still pending in VPSie (no
creation time yet) are only reported.

**Failed TTL.** Failed VPSieNodes stay so the NodeGroup's back-off can be derived from them; after
``failed_ttl`` (at least the group's back-off maximum) they are deleted (their finalizer makes sure
the instance is gone).

Dry-run: everything is reported, nothing is deleted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import HOSTNAME_SUFFIX_LENGTH, VPSieNode
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.controllers.providers import Providers, vm_prefix
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.errors import InstanceNotReady, VPSieError
from vpsie_autoscaler.vpsie.provider import Instance, ManagedSource

log = structlog.get_logger("vpsie_autoscaler.controllers.garbagecollection")

DEFAULT_INTERVAL_SECONDS: Final = 60.0  # orphans cost money by the hour; a minute is plenty
DEFAULT_ORPHAN_GRACE_SECONDS: Final = 600.0  # longer than any create → VPSieNode-visible window
DEFAULT_FAILED_TTL_SECONDS: Final = 3600.0  # longer than the default back-off maximum (15m)

REASON_ORPHAN: Final = "OrphanInstance"
REASON_ORPHAN_DELETED: Final = "OrphanDeleted"
REASON_FAILED_EXPIRED: Final = "FailedExpired"
ACTION_GC: Final = "GarbageCollect"


@dataclass(frozen=True)
class GCOptions:
    dry_run: bool = False
    interval: float = DEFAULT_INTERVAL_SECONDS
    orphan_grace: float = DEFAULT_ORPHAN_GRACE_SECONDS
    failed_ttl: float = DEFAULT_FAILED_TTL_SECONDS


@dataclass
class GCReport:
    orphans: list[str] = field(default_factory=list)  # hostnames
    deleted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # Failed VPSieNodes deleted
    errors: list[str] = field(default_factory=list)


def our_name_pattern(group_name: str) -> re.Pattern[str]:
    return re.compile(re.escape(vm_prefix(group_name)) + f"[a-z0-9]{{{HOSTNAME_SUFFIX_LENGTH}}}")


def is_ours(group_name: str, instance: Instance) -> bool:
    """Whether the instance carries our naming for that group (see the module docstring)."""
    pattern = our_name_pattern(group_name)
    if isinstance(instance.source, ManagedSource):
        return instance.requested_hostname is not None and bool(
            pattern.fullmatch(instance.requested_hostname.lower())
        )
    return bool(pattern.fullmatch(instance.hostname.lower()))


class GarbageCollector:
    def __init__(
        self,
        *,
        client: KubeClient,
        recorder: EventRecorder,
        clock: Clock,
        providers: Providers,
        nodegroups: SharedInformer,
        vpsienodes: SharedInformer,
        metrics: AutoscalerMetrics,
        options: GCOptions | None = None,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.clock = clock
        self.providers = providers
        self.nodegroups = nodegroups
        self.vpsienodes = vpsienodes
        self.metrics = metrics
        self.options = options or GCOptions()

    async def run(self) -> None:
        while True:
            try:
                await self.collect()
            except Exception:  # one bad pass must not stop collection for good
                log.exception("gc.pass_failed")
            await self.clock.sleep(self.options.interval)

    def _records(self) -> list[VPSieNode]:
        records = []
        for obj in self.vpsienodes.store.list():
            try:
                records.append(VPSieNode.from_k8s(obj))
            except ValidationError:
                continue
        return records

    def _groups(self) -> list[tuple[dict[str, Any], NodeGroup]]:
        groups = []
        for obj in self.nodegroups.store.list():
            try:
                groups.append((obj, NodeGroup.from_k8s(obj)))
            except ValidationError:
                continue
        return groups

    async def collect(self) -> GCReport:
        """One pass: report and (after the grace period) delete orphans, expire Failed records."""
        report = GCReport()
        records = self._records()
        known: set[str] = set()
        for vn in records:
            known.add(vn.spec.hostname.lower())
            if vn.status.node_name:
                known.add(vn.status.node_name.lower())
        groups = self._groups()
        for obj, group in groups:
            await self._orphans_of(obj, group, known, report)
        self.metrics.orphan_instances.set(len(report.orphans))
        await self._expire_failed(records, {g.metadata.name: g for _, g in groups}, report)
        return report

    async def _orphans_of(
        self, obj: dict[str, Any], group: NodeGroup, known: set[str], report: GCReport
    ) -> None:
        name = group.metadata.name
        try:
            source = await self.providers.source_for(name, group.spec.managed, group.spec.vm)
            provider = self.providers.provider_for(source, fresh=True)
            instances = await provider.list(source)
        except VPSieError as exc:
            report.errors.append(f"{name}: {exc}")
            log.warning("gc.list_failed", nodegroup=name, error=str(exc))
            return
        now = self.clock.now()
        for inst in instances:
            names = {inst.hostname.lower()} | (
                {inst.requested_hostname.lower()} if inst.requested_hostname else set()
            )
            if not is_ours(name, inst) or names & known:
                continue
            report.orphans.append(inst.hostname)
            age = (now - inst.created_at).total_seconds() if inst.created_at is not None else None
            due = age is not None and age > self.options.orphan_grace
            note = f"VPSie instance {inst.hostname} carries this group's naming but has no VPSieNode" + (
                f" (age {age:.0f}s)" if age is not None else " (still pending in VPSie)"
            )
            log.warning("gc.orphan", nodegroup=name, hostname=inst.hostname, age=age, due=due)
            self.recorder.event(obj, "Warning", REASON_ORPHAN, note, ACTION_GC)
            if not due:
                continue
            if self.options.dry_run:
                log.info("dry_run.skipped", action=f"delete orphan instance {inst.hostname}")
                continue
            try:
                await provider.delete(inst)
            except InstanceNotReady:
                continue
            except VPSieError as exc:
                report.errors.append(f"{inst.hostname}: {exc}")
                log.warning("gc.delete_failed", hostname=inst.hostname, error=str(exc))
                continue
            report.deleted.append(inst.hostname)
            self.recorder.event(
                obj, "Normal", REASON_ORPHAN_DELETED, f"deleted orphan instance {inst.hostname}", ACTION_GC
            )
            log.info("gc.orphan_deleted", nodegroup=name, hostname=inst.hostname)

    async def _expire_failed(
        self, records: list[VPSieNode], groups: dict[str, NodeGroup], report: GCReport
    ) -> None:
        now = self.clock.now()
        for vn in records:
            failed_at = vn.status.phase_timestamps.get("Failed")
            if vn.status.phase != "Failed" or failed_at is None or vn.metadata.deletion_timestamp is not None:
                continue
            ttl = timedelta(seconds=self.options.failed_ttl)
            group = groups.get(vn.spec.node_group)
            if group is not None:
                ttl = max(ttl, parse_duration(group.spec.provisioning.backoff.max))
            if now - failed_at <= ttl:
                continue
            report.expired.append(vn.metadata.name)
            if self.options.dry_run:
                log.info("dry_run.skipped", action=f"delete expired Failed VPSieNode {vn.metadata.name}")
                continue
            try:
                await self.client.delete(VPSIENODES, vn.metadata.name)
            except errors.NotFound:
                continue
            log.info("gc.failed_expired", vpsienode=vn.metadata.name, failed_at=failed_at.isoformat())
