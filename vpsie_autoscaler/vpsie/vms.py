"""Plain VPSie VMs behind the :class:`NodeProvider` contract (self-managed clusters).

The autoscaler names each VM ``<hostname_prefix><suffix>``; the prefix identifies the NodeGroup, so
``list`` is "every VM and pending creation whose hostname starts with the prefix". ``create`` sends the
hostname and a fresh ``processId`` (echoed by the pending queue, §3.5), plus a boot script in
``userData`` that registers the Node with the NodeGroup's labels and taints (kubelet's
``--node-labels``/``--register-with-taints``, see :mod:`bootstrap`). Creation is never retried blindly:
``create`` first looks for the hostname in the VM list and the pending queue.

Readiness follows §4.5: ``is_active == 1 and power == 1`` is running. VPSie cannot delete a VM that
is still in the pending queue: ``delete`` answers :class:`InstanceNotReady` until ``abandon_after`` has
passed since it first tried, then succeeds (a VM that still materialises later carries our naming and
no VPSieNode, so garbage collection removes it).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.vpsie import models as m
from vpsie_autoscaler.vpsie.bootstrap import render_user_data
from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClient
from vpsie_autoscaler.vpsie.errors import InstanceNotReady, NotFound
from vpsie_autoscaler.vpsie.provider import CreateRequest, Instance, InstanceState, NodeSource, VMSource

log = structlog.get_logger("vpsie_autoscaler.vpsie.vms")

DEFAULT_DELETE_REASON = "vpsie-autoscaler scale-down"
DEFAULT_ABANDON_AFTER = timedelta(minutes=30)  # a VM stuck this long in /vm/pending is not coming


def _source(source: NodeSource) -> VMSource:
    if not isinstance(source, VMSource):
        raise TypeError(f"VMProvider serves plain-VM node groups, got {type(source).__name__}")
    return source


def _state(vm: m.VM) -> InstanceState:
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
        clock: Clock | None = None,
        delete_password: str = "",
        delete_reason: str = DEFAULT_DELETE_REASON,
        abandon_after: timedelta = DEFAULT_ABANDON_AFTER,
    ) -> None:
        self._client = client
        self._clock = clock or RealClock()
        self._password = delete_password
        self._reason = delete_reason
        self._abandon_after = abandon_after
        self._pending_since: dict[str, datetime] = {}  # first time a delete found it still pending
        self._creating: dict[str, asyncio.Lock] = {}  # per lower-cased hostname

    def __repr__(self) -> str:
        return "VMProvider()"

    def _instance(self, source: VMSource, vm: m.VM) -> Instance:
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

    async def list(self, source: NodeSource) -> list[Instance]:
        src = _source(source)
        prefix = src.hostname_prefix.lower()
        # The pending queue is read first: a VM that leaves it between the two calls then shows up in
        # the VM list. In the other order it would be in neither, and look deleted.
        queued = await self._client.list_pending_vms()
        vms = [v for v in await self._client.list_vms() if v.hostname.lower().startswith(prefix)]
        result = [self._instance(src, v) for v in vms if not v.is_deleted]
        known = {v.hostname.lower() for v in vms}
        for pending in queued:
            name = pending.data.hostname
            if name.lower().startswith(prefix) and name.lower() not in known:
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

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        for instance in await self.list(source):
            if instance.answers_to(hostname):
                return instance
        return None

    async def create(self, request: CreateRequest) -> None:
        key = request.hostname.lower()
        lock = self._creating.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # two concurrent creates of one hostname must not both reach VPSie
                await self._create(request)
        finally:
            if not lock.locked():
                self._creating.pop(key, None)

    async def _create(self, request: CreateRequest) -> None:
        src = _source(request.source)
        if not request.hostname.lower().startswith(src.hostname_prefix.lower()):
            raise ValueError(
                f"hostname {request.hostname!r} must start with the group's prefix {src.hostname_prefix!r}"
            )
        if await self.get(src, request.hostname) is not None:
            return
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
                tags=src.tags,
            )
        )
        log.info("vpsie.vm.create", hostname=request.hostname, process_id=process_id)

    async def delete(self, instance: Instance) -> None:
        src = _source(instance.source)
        identifier = instance.identifier
        if identifier is None:
            current = await self.get(src, instance.hostname)
            if current is None:
                return
            if current.identifier is None:
                key = current.hostname.lower()
                since = self._pending_since.setdefault(key, self._clock.now())
                if self._clock.now() - since < self._abandon_after:
                    raise InstanceNotReady(
                        f"VM {instance.hostname} is still pending creation; delete it once it exists",
                        operation="delete_vm",
                    )
                # VPSie never delivered it. If it ever does, it carries our naming and no VPSieNode:
                # the garbage collector removes it.
                log.warning("vpsie.vm.pending_abandoned", hostname=instance.hostname, since=since.isoformat())
                del self._pending_since[key]
                return
            identifier = current.identifier
        try:
            await self._client.delete_vm(
                identifier, password=self._password, reason=self._reason, note=f"hostname {instance.hostname}"
            )
        except NotFound:
            log.info("vpsie.vm.already_gone", hostname=instance.hostname)
