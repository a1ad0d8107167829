"""Shared informers: one reflector + cache per (resource, namespace, selectors), many handlers.

Upstream analogue: client-go ``tools/cache/shared_informer.go`` and controller-runtime's informer
cache. Contract (from client-go's doc comment): the cache is eventually consistent; each object's
states are seen in order, possibly skipping some; there is no order across objects; a delete
carries the last known state, or a :class:`~vpsie_autoscaler.runtime.store.DeletedFinalStateUnknown`
tombstone when the object vanished while the watch was down.

Handlers run synchronously in the informer's task, one event at a time: they must be quick and
only enqueue work (the controller's mappers do exactly that). A handler that raises is logged and
does not stop the informer. A handler added after start receives an add for every cached object.

Periodic resync (re-delivering the cache as updates) is not implemented: controller-runtime's
default is 10 h and it never touches the API, so it detects nothing; controllers that must look
at the outside world (the cloud) requeue themselves with ``requeue_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.kube import KubeClient, Resource
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.metrics import informer_metrics
from vpsie_autoscaler.runtime.reflector import (
    DEFAULT_PAGE_SIZE,
    ListMode,
    Reflector,
    Transform,
    strip_managed_fields,
)
from vpsie_autoscaler.runtime.store import DeletedFinalStateUnknown, Indexer, IndexFunc, Obj

# controller-runtime's CacheSyncTimeout: a cache not synced after this fails the start.
DEFAULT_CACHE_SYNC_TIMEOUT_SECONDS = 120.0

log = structlog.get_logger("vpsie_autoscaler.runtime.informer")

OnAdd = Callable[[Obj], None]
OnUpdate = Callable[[Obj, Obj], None]
OnDelete = Callable[[Obj | DeletedFinalStateUnknown], None]


@dataclass(frozen=True)
class EventHandler:
    on_add: OnAdd | None = None
    on_update: OnUpdate | None = None
    on_delete: OnDelete | None = None


class SharedInformer:
    """A cache of one resource kept current by a reflector, fanning events out to handlers."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        page_size: int | None = None,
        list_mode: ListMode = ListMode.PAGINATED,
        transform: Transform | None = None,
    ) -> None:
        self.resource = resource
        self.transform = transform
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = Indexer(indexers)
        self._handlers: list[EventHandler] = []
        self._synced = asyncio.Event()
        self._registry = registry if registry is not None else CollectorRegistry()
        self._objects = informer_metrics(self._registry).objects.labels(str(resource))
        self._reflector = Reflector(
            client,
            resource,
            self,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            clock=clock or RealClock(),
            registry=self._registry,
            page_size=page_size or DEFAULT_PAGE_SIZE,
            list_mode=list_mode,
            transform=_compose(strip_managed_fields(resource), transform),
        )
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(resource=str(resource), namespace=namespace, selector=label_selector)

    # -- public API -------------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> EventHandler:
        """Register handlers; if the cache is already filled, ``on_add`` sees every cached object now."""
        handler = EventHandler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if self._synced.is_set() and on_add is not None:
            for obj in self.store.list():
                self._call(on_add, obj)
        return handler

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.store.add_indexers(indexers)

    def has_synced(self) -> bool:
        """True once the first complete LIST has been delivered to the store and the handlers."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    @property
    def last_sync_resource_version(self) -> str:
        return self._reflector.last_sync_resource_version

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self) -> None:
        """Run the reflector until cancelled."""
        await self._reflector.run()

    def start(self) -> asyncio.Task[None]:
        """Start :meth:`run` as a task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name=f"informer-{self.resource}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- ReflectorSink ----------------------------------------------------------------------------

    def replace(self, items: list[Obj], resource_version: str) -> None:
        """A complete LIST: adds/updates for what is there, tombstone deletes for what vanished."""
        initial = not self._synced.is_set()
        seen: set[str] = set()
        for obj in items:
            key = self.store.key_of(obj)
            seen.add(key)
            old = self.store.add(obj)
            self._dispatch_upsert(old, obj)
        for key in self.store.keys_not_in(seen):
            last = self.store.delete_key(key)
            if last is not None:
                self._dispatch_delete(DeletedFinalStateUnknown(key, last))
        self._objects.set(len(self.store))
        if initial:
            self._synced.set()
            self._log.info("informer synced", objects=len(self.store), resource_version=resource_version)

    def add(self, obj: Obj) -> None:
        self._dispatch_upsert(self.store.add(obj), obj)
        self._objects.set(len(self.store))

    def update(self, obj: Obj) -> None:
        self.add(obj)

    def delete(self, obj: Obj) -> None:
        last = self.store.delete(obj)
        self._objects.set(len(self.store))
        # The DELETED event carries the final state; fall back to the cached one if it is bare.
        self._dispatch_delete(obj if obj.get("metadata") else (last or obj))

    # -- fan-out ----------------------------------------------------------------------------------

    def _dispatch_upsert(self, old: Obj | None, new: Obj) -> None:
        for h in self._handlers:
            if old is None:
                if h.on_add is not None:
                    self._call(h.on_add, new)
            elif h.on_update is not None:
                self._call(h.on_update, old, new)

    def _dispatch_delete(self, obj: Obj | DeletedFinalStateUnknown) -> None:
        for h in self._handlers:
            if h.on_delete is not None:
                self._call(h.on_delete, obj)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self._log.exception("event handler failed")


def _compose(first: Transform, then: Transform | None) -> Transform:
    if then is None:
        return first

    def both(obj: Obj) -> Obj:
        return then(first(obj))

    return both


InformerKey = tuple[Resource, str | None, str | None, str | None]


class InformerFactory:
    """Hands out one shared informer per (resource, namespace, label selector, field selector)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        page_size: int | None = None,
        list_mode: ListMode = ListMode.PAGINATED,
    ) -> None:
        self._client = client
        self._clock = clock or RealClock()
        self._registry = registry if registry is not None else CollectorRegistry()
        self._page_size = page_size
        self._list_mode = list_mode
        self._informers: dict[InformerKey, SharedInformer] = {}
        self._started = False

    def informer_for(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = None,
    ) -> SharedInformer:
        """The shared informer for this key, created on first request.

        ``transform`` (applied after ``managedFields`` are stripped, before caching) trims objects to
        what the controllers read — the main lever on cache memory. Every requester of the same
        key must agree on it: a different transform for an existing informer is an error.
        """
        key = (resource, namespace, label_selector, field_selector)
        informer = self._informers.get(key)
        if informer is not None and transform is not None and informer.transform is not transform:
            raise ValueError(f"informer for {resource} already exists with a different transform")
        if informer is None:
            informer = SharedInformer(
                self._client,
                resource,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                clock=self._clock,
                registry=self._registry,
                page_size=self._page_size,
                list_mode=self._list_mode,
                transform=transform,
            )
            self._informers[key] = informer
            if self._started:
                informer.start()
        return informer

    @property
    def informers(self) -> list[SharedInformer]:
        return list(self._informers.values())

    def start(self) -> None:
        """Start every informer, and any requested later (idempotent)."""
        self._started = True
        for informer in self._informers.values():
            informer.start()

    def has_synced(self) -> bool:
        return all(i.has_synced() for i in self._informers.values())

    def alive(self) -> bool:
        """Every started informer's task is still running (liveness)."""
        return not self._started or all(i.running for i in self._informers.values())

    async def wait_for_cache_sync(self, sync_timeout: float = DEFAULT_CACHE_SYNC_TIMEOUT_SECONDS) -> bool:
        """Wait until all informers synced; False on timeout (controller-runtime fails start then)."""
        try:
            async with asyncio.timeout(sync_timeout):
                for informer in list(self._informers.values()):
                    await informer.wait_for_sync()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(i.stop() for i in self._informers.values()))
