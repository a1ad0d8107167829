"""Plan capacity from the VPSie catalogue, cached and refreshed off the hot path.

A NodeGroup's template may omit cpu/memory/disk; then the node's shape comes from VPSie: for a
managed group, the VPSie node group's ``cpu``/``ram``/``ssd`` (falling back to the Kubernetes offer
whose id is the group's ``sizeId``); for plain VMs, the plan named by ``resourceIdentifier``. The
scale-up path must never wait on VPSie (the planner runs within the 1 s batch window, and VPSie may
be slow, rate-limited or down), so :class:`PlanCatalogue` is a cache filled by a background loop
(like cluster-autoscaler's cloud-provider ``Refresh`` every loop, and Karpenter's instance-type
cache with a TTL): every :data:`REFRESH_SECONDS`, and soon after a group with an unknown source
appears (:meth:`PlanCatalogue.want`). A failed refresh keeps the last good facts (stale capacity is
better than none: the plan of a source never changes shape in practice).

A group that allows several plans (``spec.plans``) also needs the plans it may choose from: every
plan of its datacenter and OS image (for VMs; by category when its requirements name categories), or
every Kubernetes offer of its datacenter (managed groups). :meth:`PlanCatalogue.options` serves them
from the same cache and loop.

Units: VPSie reports RAM in MB and disk in GB; they become ``Mi`` and ``Gi`` quantities
(docs/scaling.md). Prices: plan and offer prices are monthly; hourly = monthly / 730.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import structlog
from pydantic import ValidationError

from vpsie_autoscaler.api.nodegroup import HOURS_PER_MONTH, ManagedSource, NodeGroup, VMSource
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.errors import VPSieError

REFRESH_SECONDS: Final = 300.0
"""Full refresh period. Plans and node-group sizes change rarely; 5 minutes keeps prices current
without spending the client's rate budget (100 requests/minute) on the catalogue."""

RETRY_SECONDS: Final = 30.0
"""A source whose fetch failed (VPSie down, plan missing) is tried again this often."""

log = structlog.get_logger("vpsie_autoscaler.controllers.catalogue")

SourceKey = tuple[str, ...]


class CatalogueClient(Protocol):
    """The part of :class:`~vpsie_autoscaler.vpsie.client.VPSieClient` the catalogue reads."""

    async def list_node_groups(self, cluster_identifier: str) -> list[models.K8sNodeGroup]: ...

    async def list_k8s_offers(self, dc_identifier: str) -> list[models.K8sOffer]: ...

    async def list_plans(
        self, dc_identifier: str, os_identifier: str, category_identifier: str = ""
    ) -> list[models.Plan]: ...


@runtime_checkable
class CategoryClient(Protocol):
    """Plan categories by name (``spec.plans.requirements.categories``); without it names are used as
    category identifiers."""

    async def list_plan_categories(self) -> list[models.PlanCategory]: ...


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """What VPSie says a node of a source looks like."""

    capacity: Mapping[str, int | str]
    """``{"cpu": ..., "memory": "<MB>Mi", "ephemeral-storage": "<GB>Gi"}`` (only what is known)."""
    hourly_price: float | None = None
    name: str = ""
    identifier: str = ""
    """The plan's identifier (VM ``resourceIdentifier``, size id) in :meth:`PlanCatalogue.options`."""
    category: str = ""


def source_key(ng: NodeGroup) -> SourceKey:
    """The cache key of a group's source (two groups on the same plan share one entry)."""
    if ng.spec.managed is not None:
        src = ng.spec.managed
        group = src.node_group_name or f"#{src.node_group_id}"
        cluster = src.cluster_identifier or ""
        return ("managed", cluster, group, str(src.size_id), src.datacenter_identifier or "")
    vm = ng.spec.vm
    assert vm is not None  # the model guarantees exactly one source
    return ("vm", vm.dc_identifier, vm.os_identifier, vm.resource_identifier)


def options_key(ng: NodeGroup) -> SourceKey:
    """The cache key of the plans a group with ``spec.plans`` may choose from."""
    requirements = ng.spec.plans.requirements if ng.spec.plans is not None else None
    categories = tuple(sorted(requirements.categories)) if requirements is not None else ()
    return ("options", *source_key(ng), *categories)


def capacity_of(cpu: int | None, ram_mb: int | None, disk_gb: int | None) -> dict[str, int | str]:
    """VPSie sizes as Kubernetes quantities; unknown or zero values are left out."""
    out: dict[str, int | str] = {}
    if cpu:
        out["cpu"] = cpu
    if ram_mb:
        out["memory"] = f"{ram_mb}Mi"
    if disk_gb:
        out["ephemeral-storage"] = f"{disk_gb}Gi"
    return out


def _hourly(monthly: float | None, hourly: float | None = None) -> float | None:
    if hourly is not None:
        return hourly
    return monthly / HOURS_PER_MONTH if monthly is not None else None


class PlanCatalogue:
    """Cached :class:`PlanFacts` per source. :meth:`facts` never does I/O."""

    def __init__(
        self,
        client: CatalogueClient | None,
        clock: Clock,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._client = client
        self._clock = clock
        self._refresh_seconds = refresh_seconds
        self._facts: dict[SourceKey, PlanFacts] = {}
        self._sources: dict[SourceKey, NodeGroup] = {}
        self._options: dict[SourceKey, tuple[PlanFacts, ...]] = {}
        self._option_sources: dict[SourceKey, NodeGroup] = {}
        self._wanted: set[SourceKey] = set()
        self._errors: dict[SourceKey, str] = {}
        self._want_event = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        self.version = 0
        """Counts every change of facts, plans or errors: what was derived from them (a snapshot's
        group templates) is reused only while it stays the same."""

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after a refresh that learnt new or changed facts (scale-up re-plans)."""
        self._listeners.append(listener)

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def facts(self, ng: NodeGroup) -> PlanFacts | None:
        """The cached facts for the group's source (None until fetched); marks unknown sources wanted."""
        key = source_key(ng)
        self._sources.setdefault(key, ng)
        found = self._facts.get(key)
        if found is None and self._client is not None and key not in self._wanted:
            self._wanted.add(key)
            self._want_event.set()
        return found

    def hourly_price(self, ng: NodeGroup) -> float | None:
        """Hourly price of one node of the group's plan (None until the plan is read, or unpriced)."""
        found = self.facts(ng)
        return found.hourly_price if found is not None else None

    def options(self, ng: NodeGroup) -> tuple[PlanFacts, ...] | None:
        """The plans a group with ``spec.plans`` may choose from (None until fetched); marks them wanted."""
        key = options_key(ng)
        self._option_sources[key] = ng
        found = self._options.get(key)
        if found is None and self._client is not None and key not in self._wanted:
            self._wanted.add(key)
            self._want_event.set()
        return found

    def options_pending(self, ng: NodeGroup) -> bool:
        """Whether a group with ``spec.plans`` waits for its plans: never fetched, the fetch not
        failed, and a client to fetch with. Planned with its source's plan alone, the first decision
        after a start would choose from one plan where the group allows several (an 8-cpu pod would
        get no node, small pods the base plan's), and a re-plan moments later would add to it."""
        if self._client is None or ng.spec.plans is None:
            return False
        return self.options(ng) is None and options_key(ng) not in self._errors

    def error(self, ng: NodeGroup) -> str | None:
        """The last error fetching this group's source, for the message that capacity is unknown."""
        return self._errors.get(source_key(ng))

    def want(self, groups: Iterable[NodeGroup]) -> None:
        for ng in groups:
            self.facts(ng)

    def want_object(self, obj: Mapping[str, Any]) -> None:
        """Informer handler: mark a NodeGroup's source wanted (invalid objects are ignored here; the
        snapshot reports them)."""
        with contextlib.suppress(ValidationError):
            ng = NodeGroup.from_k8s(dict(obj)).with_resolved_source()
            self.facts(ng)
            if ng.spec.plans is not None:
                self.options(ng)  # fetched when the group is seen, not when its first decision asks

    def put(self, ng: NodeGroup, facts: PlanFacts) -> None:
        """Seed the cache (tests, or a caller that already fetched)."""
        key = source_key(ng)
        self._sources[key] = ng
        self._facts[key] = facts
        self.version += 1

    def put_options(self, ng: NodeGroup, options: Iterable[PlanFacts]) -> None:
        """Seed the plans a group with ``spec.plans`` may choose from (tests, or a caller that fetched)."""
        key = options_key(ng)
        self._option_sources[key] = ng
        self._options[key] = tuple(options)
        self.version += 1

    async def refresh(self, keys: Iterable[SourceKey] | None = None) -> None:
        """Fetch the facts of ``keys`` (default: every source seen). Errors are logged and kept."""
        if self._client is None:
            return
        todo = list(keys if keys is not None else [*self._sources, *self._option_sources])
        changed = False
        for key in todo:
            if key[:1] == ("options",):
                changed = await self._refresh_options(self._client, key) or changed
                continue
            ng = self._sources.get(key)
            if ng is None:
                continue
            try:
                facts = await self._fetch(self._client, ng)
            except VPSieError as exc:
                self._errors[key] = str(exc)
                self.version += 1
                log.warning("plan catalogue refresh failed", source=key, error=str(exc))
                continue
            self._wanted.discard(key)
            if facts is None:
                self._errors[key] = "the source's plan was not found in the VPSie catalogue"
                self.version += 1
                log.warning("plan not found in the VPSie catalogue", source=key)
                continue
            self._errors.pop(key, None)
            changed = changed or self._facts.get(key) != facts
            self._facts[key] = facts
            self.version += 1
        if changed:
            for listener in self._listeners:
                listener()

    async def run(self) -> None:
        """Refresh everything every ``refresh_seconds``; fetch a newly wanted source at once, and
        retry a source that failed every :data:`RETRY_SECONDS`."""
        last_full: float | None = None
        while True:
            self._want_event.clear()
            now = self._clock.monotonic()
            if last_full is None or now - last_full >= self._refresh_seconds:
                last_full = now
                await self.refresh()
            elif self._wanted:
                await self.refresh(list(self._wanted))
            timeout = self._refresh_seconds - (self._clock.monotonic() - last_full)
            if self._wanted:
                timeout = min(timeout, RETRY_SECONDS)
            await self._until_wanted_or(max(timeout, 0.0))

    async def _until_wanted_or(self, seconds: float) -> None:
        """Sleep ``seconds`` on the clock, or less if a new source is wanted."""
        waiter = asyncio.ensure_future(self._want_event.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, sleeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _refresh_options(self, client: CatalogueClient, key: SourceKey) -> bool:
        """Fetch the plans of an ``options`` key; whether they changed."""
        ng = self._option_sources.get(key)
        if ng is None:
            return False
        try:
            found = await self._fetch_options(client, ng)
        except VPSieError as exc:
            self._errors[key] = str(exc)
            self.version += 1
            log.warning("plan catalogue refresh failed", source=key, error=str(exc))
            return False
        self._wanted.discard(key)
        self._errors.pop(key, None)
        changed = self._options.get(key) != found
        self._options[key] = found
        self.version += 1
        return changed

    @staticmethod
    async def _fetch_options(client: CatalogueClient, ng: NodeGroup) -> tuple[PlanFacts, ...]:
        if ng.spec.managed is not None:
            src = ng.spec.managed
            dc = src.datacenter_identifier
            if not dc and src.cluster_identifier is None:
                return ()  # the cluster is not resolved yet (status.managed)
            if not dc and src.cluster_identifier is not None:
                groups = await client.list_node_groups(src.cluster_identifier)
                dc = next((g.dc_identifier for g in groups if g.dc_identifier), None)
            if not dc:
                return ()
            return tuple(
                PlanFacts(
                    capacity_of(o.cpu, o.ram, o.ssd or o.disk),
                    _hourly(o.price, o.hourly_price),
                    o.nickname or o.name or "",
                    identifier=str(o.id),
                )
                for o in await client.list_k8s_offers(dc)
                if o.id is not None
            )
        vm = ng.spec.vm
        assert vm is not None
        requirements = ng.spec.plans.requirements if ng.spec.plans is not None else None
        wanted = list(requirements.categories) if requirements is not None else []
        listed: list[tuple[models.Plan, str]] = []
        if wanted:  # a plan carries no category: list each wanted category on its own
            ids: dict[str, str] = {}
            if isinstance(client, CategoryClient):
                ids = {c.name: c.identifier for c in await client.list_plan_categories()}
            for name in wanted:
                plans = await client.list_plans(vm.dc_identifier, vm.os_identifier, ids.get(name, name))
                listed.extend((p, name) for p in plans)
        else:
            listed = [(p, "") for p in await client.list_plans(vm.dc_identifier, vm.os_identifier)]
        return tuple(
            PlanFacts(
                capacity_of(p.cpu, p.ram, p.ssd),
                _hourly(p.price),
                p.nickname,
                identifier=p.identifier,
                category=c,
            )
            for p, c in listed
        )

    async def _fetch(self, client: CatalogueClient, ng: NodeGroup) -> PlanFacts | None:
        if ng.spec.managed is not None:
            return await self._fetch_managed(client, ng.spec.managed)
        assert ng.spec.vm is not None
        return await self._fetch_vm(client, ng.spec.vm)

    @staticmethod
    async def _fetch_managed(client: CatalogueClient, src: ManagedSource) -> PlanFacts | None:
        if src.cluster_identifier is None:
            return None  # the cluster is not resolved yet (status.managed)
        groups = await client.list_node_groups(src.cluster_identifier)
        group = next(
            (
                g
                for g in groups
                if (src.node_group_id is not None and g.id == src.node_group_id)
                or (src.node_group_name is not None and g.group_name == src.node_group_name)
            ),
            None,
        )
        offer: models.K8sOffer | None = None
        dc = src.datacenter_identifier or (group.dc_identifier if group is not None else None)
        if dc:
            offers = await client.list_k8s_offers(dc)
            offer = next((o for o in offers if o.id == src.size_id), None)
        if group is not None and group.cpu and group.ram:
            capacity = capacity_of(group.cpu, group.ram, group.ssd)
        elif offer is not None:
            capacity = capacity_of(offer.cpu, offer.ram, offer.ssd or offer.disk)
        else:
            return None
        price = _hourly(offer.price, offer.hourly_price) if offer is not None else None
        name = (offer.nickname or offer.name or "") if offer is not None else ""
        return PlanFacts(capacity, price, name)

    @staticmethod
    async def _fetch_vm(client: CatalogueClient, src: VMSource) -> PlanFacts | None:
        plans = await client.list_plans(src.dc_identifier, src.os_identifier)
        plan = next((p for p in plans if p.identifier == src.resource_identifier), None)
        if plan is None:
            return None
        return PlanFacts(capacity_of(plan.cpu, plan.ram, plan.ssd), _hourly(plan.price), plan.nickname)
