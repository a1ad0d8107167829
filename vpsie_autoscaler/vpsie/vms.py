"""Plain VPSie VMs behind the :class:`NodeProvider` contract (self-managed clusters).

The autoscaler names each VM ``<hostname_prefix><suffix>``: the hostname, chosen before the call and
kept in the VPSieNode's launch record, is the handle to find the VM again (VPSie returns no id,
§3.5). ``list`` is "every VM and pending creation whose hostname starts with the group's prefix"; both calls
are account-wide, so one read answers every plain-VM NodeGroup (``listing_scope``).
``launch`` sends the hostname, a fresh ``processId`` (echoed by the pending queue), the ownership tags
the caller passes (this cluster and the NodeGroup, so garbage collection can *prove* a VM is ours
rather than guess from its name) and a boot script in ``userData`` that registers the Node with the
NodeGroup's labels and taints (kubelet's ``--node-labels``/``--register-with-taints``, see
:mod:`bootstrap`). Nothing is read first and nothing is retried: the VPSieNode controller decides from
its record and the listing.

Readiness follows §4.5: ``is_active == 1 and power == 1`` is running. VPSie cannot delete a VM that
is still in the pending queue (no identifier yet): ``delete`` reports it not done, and the caller waits
for the VM to appear.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Hashable
from dataclasses import dataclass

import structlog

from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.bootstrap import render_user_data
from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClient
from vpsie_autoscaler.vpsie.errors import InstanceNotReady, NotFound
from vpsie_autoscaler.vpsie.provider import (
    DONE,
    CreateRequest,
    Instance,
    InstanceState,
    MutationResult,
    NodeSource,
    VMSource,
)

log = structlog.get_logger("vpsie_autoscaler.vpsie.vms")

DEFAULT_DELETE_REASON = "vpsie-autoscaler scale-down"


ACCOUNT_SCOPE = "vpsie-account-vms"
"""The listing scope of every plain-VM source (:class:`~vpsie_autoscaler.vpsie.provider.ScopedListing`)."""


@dataclass(frozen=True)
class AccountVMs:
    """One read of the account's VMs: the pending queue, then the VM list (in that order)."""

    queued: tuple[models.PendingVM, ...]
    vms: tuple[models.VM, ...]


def _source(source: NodeSource) -> VMSource:
    if not isinstance(source, VMSource):
        raise TypeError(f"VMProvider serves plain-VM node groups, got {type(source).__name__}")
    return source


def _state(vm: models.VM) -> InstanceState:
    if vm.is_terminated or vm.is_deleted:
        return InstanceState.FAILED
    if not vm.is_active:
        return InstanceState.PENDING
    return InstanceState.RUNNING if vm.power else InstanceState.STOPPED


class VMProvider:
    def __init__(
        self,
        client: VPSieClient,
        *,
        delete_password: str = "",
        delete_reason: str = DEFAULT_DELETE_REASON,
    ) -> None:
        self._client = client
        self._password = delete_password
        self._reason = delete_reason

    def __repr__(self) -> str:
        return "VMProvider()"

    def _instance(self, source: VMSource, vm: models.VM) -> Instance:
        return Instance(
            hostname=vm.hostname,
            source=source,
            state=_state(vm),
            identifier=vm.identifier,
            numeric_id=vm.id,
            ip=vm.default_ip or vm.public_ip,
            private_ip=vm.private_ip,
            plan=str(vm.boxsize_id) if vm.boxsize_id is not None else None,
            created_at=vm.created_on,
            cpu=vm.cpu,
            ram_mb=vm.ram,
            disk_gb=vm.ssd,
        )

    async def list_account(self, template: VMSource) -> builtins.list[Instance]:
        """Every VM of the account (not pending ones), for garbage collection across NodeGroups,
        deleted ones included. ``template`` is the source the instances are reported under."""
        return [self._instance(template, v) for v in await self._client.list_vms() if not v.is_deleted]

    def listing_scope(self, source: NodeSource) -> Hashable:
        """Every plain-VM source lists the same two account-wide calls: one read answers them all."""
        _source(source)
        return ACCOUNT_SCOPE

    async def read_scope(self, source: NodeSource) -> object:
        _source(source)
        # The pending queue is read first: a VM that leaves it between the two calls then shows up in
        # the VM list. In the other order it would be in neither, and look deleted.
        queued = await self._client.list_pending_vms()
        return AccountVMs(queued=tuple(queued), vms=tuple(await self._client.list_vms()))

    def select(self, source: NodeSource, read: object) -> builtins.list[Instance]:
        src = _source(source)
        if not isinstance(read, AccountVMs):
            raise TypeError(f"not a read of VPSie VMs: {type(read).__name__}")
        ours = re.compile(re.escape(src.hostname_prefix.lower()) + f"[a-z0-9]{{{src.suffix_length}}}")
        vms = [v for v in read.vms if ours.fullmatch(v.hostname.lower())]
        result = [self._instance(src, v) for v in vms if not v.is_deleted]
        known = {v.hostname.lower() for v in vms}
        for pending in read.queued:
            name = pending.data.hostname
            if ours.fullmatch(name.lower()) and name.lower() not in known:
                known.add(name.lower())
                result.append(
                    Instance(
                        hostname=name,
                        source=src,
                        state=InstanceState.PENDING,
                        plan=pending.data.resource_identifier,
                    )
                )
        return result

    async def list(self, source: NodeSource) -> builtins.list[Instance]:
        return self.select(source, await self.read_scope(source))

    async def launch(self, request: CreateRequest) -> MutationResult:
        src = _source(request.source)
        if not request.hostname.lower().startswith(src.hostname_prefix.lower()):
            raise ValueError(
                f"hostname {request.hostname!r} must start with the group's prefix {src.hostname_prefix!r}"
            )
        tags = tuple(dict.fromkeys((*src.tags, *request.tags)))
        try:
            process_id = await self._client.create_vm(
                VMCreate(
                    resource_identifier=src.resource_identifier,
                    os_identifier=src.os_identifier,
                    dc_identifier=src.dc_identifier,
                    hostname=request.hostname,
                    project_identifier=src.project_identifier,
                    ssh_key_identifier=src.ssh_key_identifier,
                    script_identifier=src.script_identifier,
                    user_data=render_user_data(request.labels, request.taints),
                    tags=tags,
                )
            )
        except BaseException as exc:
            result = MutationResult.of_error(exc)
            log.warning(
                "vpsie.vm.create_failed",
                hostname=request.hostname,
                outcome=result.outcome.value,
                error=result.detail,
            )
            if not isinstance(exc, Exception):
                raise
            return result
        log.info("vpsie.vm.create", hostname=request.hostname, process_id=process_id)
        return DONE

    async def delete(self, instance: Instance) -> MutationResult:
        _source(instance.source)
        if instance.identifier is None:
            return MutationResult.of_error(
                InstanceNotReady(
                    f"VM {instance.hostname} is still pending creation; delete it once it exists",
                    operation="delete_vm",
                )
            )
        try:
            await self._client.delete_vm(
                instance.identifier,
                password=self._password,
                reason=self._reason,
                note=f"hostname {instance.hostname}",
            )
        except NotFound:
            log.info("vpsie.vm.already_gone", hostname=instance.hostname)
            return DONE
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            return MutationResult.of_error(exc)
        log.info("vpsie.vm.delete", hostname=instance.hostname, identifier=instance.identifier)
        return DONE

    async def owner_tags(self, instance: Instance) -> frozenset[str] | None:
        if instance.identifier is None:
            return None
        return frozenset(await self._client.get_vm_tags(instance.identifier))
