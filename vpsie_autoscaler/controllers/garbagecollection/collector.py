"""Garbage collection: orphan VPSie VMs, and Failed VPSieNodes past their TTL.

**Orphans** (cluster-autoscaler's "unregistered nodes", Karpenter's garbage
collection controller). A VM is an orphan when it is provably *ours* and no VPSieNode owns it. Proof is
the ownership tag every VM we create carries (``vpsie-autoscaler:cluster=<this cluster>``, see
:func:`~vpsie_autoscaler.controllers.cloud.ownership_tags`), read from VPSie (``vmTags``) only for
VMs that have our naming shape and no record. The whole account is walked, so VMs of NodeGroups that
were deleted are collected too. A VM that is merely *named* like ours (another cluster's NodeGroup of
the same name, a person's VM called ``<group>-xxxxx``) is reported (Event ``NamedLikeOurs`` on the
group, a log line), never deleted.

Nodes of managed groups never become orphans: a node that no record owns is adopted by the NodeGroup
controller (it gets a record, and is then scaled down like any other).

Every orphan is reported (log, Warning Event ``OrphanInstance`` on its NodeGroup when it still exists,
the ``vpsie_autoscaler_orphan_instances`` gauge), and deleted by identifier once it is older than the
grace period, counted from the instance's creation time in VPSie: the timer survives restarts without
any state, and a VPSieNode always exists before its instance (its launch record is written before the
cloud call), so an instance that old without one is not a creation in flight.

**Failed TTL.** Failed VPSieNodes stay so the NodeGroup's back-off can be derived from them; after
``failed_ttl`` (at least the group's back-off maximum) they are deleted (their finalizer makes sure
the instance is gone).

Dry-run: everything is reported, nothing is deleted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.durations import format_duration, parse_duration
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import HOSTNAME_SUFFIX_LENGTH, VPSieNode
from vpsie_autoscaler.controllers.binding import bound_key
from vpsie_autoscaler.controllers.cloud import Providers, cluster_tag, tagged_group, vm_hostname_prefix
from vpsie_autoscaler.controllers.cluster_state import InvalidObject, NodeGroupParser, parse_vpsienode
from vpsie_autoscaler.controllers.deps import Deps, UsesDeps
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.fence import NotLeader
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.vpsie.errors import VPSieError
from vpsie_autoscaler.vpsie.provider import Instance, VMSource
from vpsie_autoscaler.vpsie.vms import VMProvider

log = structlog.get_logger("vpsie_autoscaler.controllers.garbagecollection")

DEFAULT_INTERVAL_SECONDS: Final = 60.0  # orphans cost money by the hour; a minute is plenty
DEFAULT_ORPHAN_GRACE_SECONDS: Final = 600.0  # longer than any create → VPSieNode-visible window
DEFAULT_FAILED_TTL_SECONDS: Final = 3600.0  # longer than the default back-off maximum (15m)

REASON_ORPHAN: Final = "OrphanInstance"
REASON_ORPHAN_DELETED: Final = "OrphanDeleted"
REASON_NAMED_LIKE_OURS: Final = "NamedLikeOurs"
OUR_NAMING_SHAPE: Final = re.compile(rf"[a-z0-9]([-a-z0-9]*[a-z0-9])?-[a-z0-9]{{{HOSTNAME_SUFFIX_LENGTH}}}")
"""``hostname_for``'s shape, whatever the group: the only VMs whose tags are worth reading."""
ACCOUNT_SOURCE: Final = VMSource(
    hostname_prefix="", resource_identifier="", os_identifier="", dc_identifier="", project_identifier=""
)
REASON_FAILED_EXPIRED: Final = "FailedExpired"
ACTION_GC: Final = "GarbageCollect"


@dataclass(frozen=True)
class GCOptions:
    interval: float = DEFAULT_INTERVAL_SECONDS
    orphan_grace: float = DEFAULT_ORPHAN_GRACE_SECONDS
    failed_ttl: float = DEFAULT_FAILED_TTL_SECONDS


@dataclass
class GCReport:
    orphans: list[str] = field(default_factory=list)  # hostnames
    named_like_ours: list[str] = field(default_factory=list)  # hostnames, never touched
    deleted: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # Failed VPSieNodes deleted
    errors: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def raw_identifiers(obj: Mapping[str, Any]) -> set[str]:
    """Every name a VPSieNode may own its instance by, read from the raw object (lower case): its name,
    ``spec.hostname``, ``spec.adopt.hostname``, ``status.nodeName`` and the launch record's requested
    and bound hostnames. Works when the model refuses the object: such a record is never absent."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    adopt = spec.get("adopt") if isinstance(spec, Mapping) else None
    launch = status.get("launch") if isinstance(status, Mapping) else None
    values = [
        meta.get("name") if isinstance(meta, Mapping) else None,
        spec.get("hostname") if isinstance(spec, Mapping) else None,
        adopt.get("hostname") if isinstance(adopt, Mapping) else None,
        status.get("nodeName") if isinstance(status, Mapping) else None,
        launch.get("requestedHostname") if isinstance(launch, Mapping) else None,
        launch.get("boundHostname") if isinstance(launch, Mapping) else None,
    ]
    return {_text(v).lower() for v in values if _text(v)}


def our_name_pattern(group_name: str) -> re.Pattern[str]:
    return re.compile(re.escape(vm_hostname_prefix(group_name)) + f"[a-z0-9]{{{HOSTNAME_SUFFIX_LENGTH}}}")


class GarbageCollector(UsesDeps):
    def __init__(
        self,
        deps: Deps,
        *,
        providers: Providers,
        nodegroups: SharedInformer,
        vpsienodes: SharedInformer,
        options: GCOptions | None = None,
    ) -> None:
        super().__init__(deps)
        self.providers = providers
        self.nodegroups = nodegroups
        self.vpsienodes = vpsienodes
        self.options = options or GCOptions()
        self._tags: dict[str, frozenset[str]] = {}  # VM identifier → its tags (set at creation)
        self._parser = NodeGroupParser()

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
                records.append(parse_vpsienode(obj))
            except InvalidObject:
                continue  # still known by its raw identifiers; never expired
        return records

    def _groups(self) -> list[tuple[dict[str, Any], NodeGroup]]:
        groups = []
        objs = self.nodegroups.store.list()
        self._parser.retain((o.get("metadata") or {}).get("name", "") for o in objs)
        for obj in objs:
            try:
                groups.append((obj, self._parser.parse(obj)))
            except InvalidObject:
                continue
        return groups

    async def collect(self) -> GCReport:
        """One pass: report and (after the grace period) delete orphans, expire Failed records."""
        report = GCReport()
        records = self._records()
        known: set[str] = set()
        for obj in self.vpsienodes.store.list():  # raw: a record the model refuses still owns its VM
            known |= raw_identifiers(obj)
        for vn in records:
            known.add(vn.spec.hostname.lower())
            key = bound_key(vn)
            if key is not None:
                known.add(key)
            if vn.status.node_name:
                known.add(vn.status.node_name.lower())
        groups = self._groups()
        by_name = {g.metadata.name: obj for obj, g in groups}
        raw_groups = self.nodegroups.store.list()
        for obj in raw_groups:  # an invalid group still exists: its orphans are reported on it
            by_name.setdefault(_text((obj.get("metadata") or {}).get("name")), obj)
        if any(isinstance((o.get("spec") or {}).get("vm"), Mapping) for o in raw_groups) or self._tags:
            await self._vm_orphans(by_name, groups, known, report)
        self.metrics.orphan_instances.set(len(report.orphans))
        await self._expire_failed(records, {g.metadata.name: g for _, g in groups}, report)
        return report

    async def _vm_orphans(
        self,
        by_name: dict[str, dict[str, Any]],
        groups: list[tuple[dict[str, Any], NodeGroup]],
        known: set[str],
        report: GCReport,
    ) -> None:
        vms = self.providers.vms
        if not isinstance(vms, VMProvider):
            return  # no VPSie client (yet): nothing can be listed
        try:
            ours = cluster_tag(await self.providers.identity.get())
            instances = await vms.list_account(ACCOUNT_SOURCE)
        except (VPSieError, errors.KubeError) as exc:
            report.errors.append(f"list: {exc}")
            log.warning("gc.list_failed", error=str(exc))
            return
        patterns = {name: our_name_pattern(name) for name, _ in [(g.metadata.name, g) for _, g in groups]}
        listed = {i.identifier for i in instances if i.identifier}
        self._tags = {k: v for k, v in self._tags.items() if k in listed}  # forget VMs that are gone
        now = self.clock.now()
        for inst in instances:
            name = inst.hostname.lower()
            if name in known or inst.identifier is None or not OUR_NAMING_SHAPE.fullmatch(name):
                continue
            tags = self._tags.get(inst.identifier)
            if tags is None:
                try:
                    tags = await vms.owner_tags(inst) or frozenset()
                except VPSieError as exc:
                    report.errors.append(f"{inst.hostname}: {exc}")
                    continue
                self._tags[inst.identifier] = tags
            group_name = tagged_group(tags)
            if ours not in tags:
                like = next((g for g, p in patterns.items() if p.fullmatch(name)), None)
                if like is not None:
                    report.named_like_ours.append(inst.hostname)
                    note = (
                        f"VM {inst.hostname} is named like this group's nodes but is not tagged for this "
                        "cluster: not ours, never touched"
                    )
                    log.info("gc.named_like_ours", nodegroup=like, hostname=inst.hostname)
                    self.recorder.event(by_name[like], "Normal", REASON_NAMED_LIKE_OURS, note, ACTION_GC)
                continue
            await self._orphan(inst, by_name.get(group_name or ""), group_name, now, report)

    async def _orphan(
        self,
        inst: Instance,
        group_obj: dict[str, Any] | None,
        group_name: str | None,
        now: datetime,
        report: GCReport,
    ) -> None:
        report.orphans.append(inst.hostname)
        age = (now - inst.created_at).total_seconds() if inst.created_at is not None else None
        due = age is not None and age > self.options.orphan_grace
        owner = f"NodeGroup {group_name}" if group_obj is not None else f"deleted NodeGroup {group_name}"
        note = f"VPSie VM {inst.hostname} is tagged for this cluster ({owner}) but has no VPSieNode" + (
            f" (age {format_duration(round(age))})" if age is not None else ""
        )
        log.warning("gc.orphan", nodegroup=group_name, hostname=inst.hostname, age=age, due=due)
        if group_obj is not None:
            self.recorder.event(group_obj, "Warning", REASON_ORPHAN, note, ACTION_GC)
        if not due:
            return
        if self.writes.would(f"delete orphan instance {inst.hostname}"):
            return
        try:
            result = await self.providers.delete(inst)
        except NotLeader as exc:
            report.errors.append(f"{inst.hostname}: {exc}")
            return
        if not result.sent:
            report.errors.append(f"{inst.hostname}: {result.detail}")
            log.warning("gc.delete_failed", hostname=inst.hostname, error=result.detail)
            return
        report.deleted.append(inst.hostname)
        if group_obj is not None:
            self.recorder.event(
                group_obj,
                "Normal",
                REASON_ORPHAN_DELETED,
                f"deleted orphan instance {inst.hostname}",
                ACTION_GC,
            )
        log.info(
            "gc.orphan_deleted", nodegroup=group_name, hostname=inst.hostname, outcome=result.outcome.value
        )

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
            try:
                if not await self.writes.delete(VPSIENODES, vn.metadata.name):
                    continue  # dry-run
            except errors.NotFound:
                continue
            self.metrics.vpsienode_ttl_deletions_total.labels(vn.spec.node_group).inc()
            log.info("gc.failed_expired", vpsienode=vn.metadata.name, failed_at=failed_at.isoformat())
