"""The reflector: keeps a local cache in step with the apiserver by LIST then WATCH.

Upstream analogue: client-go ``tools/cache/reflector.go`` (classic LIST+WATCH, not WatchList):

- LIST in pages of 500 (``tools/pager``); the first list asks for RV ``"0"`` (served from the
  apiserver's watch cache), later relists for the last RV seen, and after a LIST answered 410 for
  ``""`` (a consistent read). An expired ``continue`` token restarts the list unpaginated.
- WATCH from the list's RV with ``allowWatchBookmarks`` and a server ``timeoutSeconds`` drawn from
  [5, 10] minutes (spreads reconnects); the client's read timeout is a bit longer, so a dead
  connection ends the watch instead of hanging it. Every event (bookmarks too) advances the RV.
- A watch that ends normally is re-opened at once from the last RV; one that ends with 410 goes
  back to LIST (with the last RV, cheap); 429 or a connection refused while opening backs off and
  re-watches; a watch closing within 1 s without events is an error (no hot loop).
- Between LIST+WATCH cycles: back-off 0.8 s doubling to 30 s with 100 % jitter, reset after 2 min
  without trouble (client-go's constants; ~98 % less traffic against a sick apiserver).
- List mode. ``ListMode.CLIENT_GO`` is exactly the above. The default, ``ListMode.PAGINATED``,
  deliberately differs: every LIST is a consistent read (RV ``""``) in pages of 500. Reason,
  measured on Kubernetes 1.36: the watch cache ignores ``limit`` for RV ``"0"``, so client-go's first
  list of 30 000 pods arrives as one ~60 MB body — a peak of the whole body plus its parsed form in
  memory, and a multi-second event-loop stall (lease renewals wait). Pages bound both. Since
  Kubernetes 1.31 consistent lists are served from the watch cache too (ConsistentListFromCache),
  so this does not move load to etcd. Watches are identical in both modes.
- ``metadata.managedFields`` is stripped before caching (controller-runtime's
  ``TransformStripManagedFields``): it is often half of a Node's bytes and nobody here reads it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from contextlib import aclosing
from enum import StrEnum
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.kube import KubeClient, Resource, errors
from vpsie_autoscaler.runtime.backoff import ExponentialBackoff
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.metrics import informer_metrics

# client-go reflector.go constants, with their reasons.
# Back-off between LIST+WATCH cycles: start small, end at [30, 60) s intervals (~0.22 QPS).
BACKOFF_INITIAL_SECONDS = 0.8
BACKOFF_CAP_SECONDS = 30.0
BACKOFF_FACTOR = 2.0
BACKOFF_JITTER = 1.0
# A healthy period this long forgets earlier trouble.
BACKOFF_RESET_SECONDS = 120.0
# Watches last a random 5-10 minutes so reconnects of many clients spread out.
MIN_WATCH_TIMEOUT_SECONDS = 300
# A watch that ends faster than this with zero events means something is wrong: back off.
VERY_SHORT_WATCH_SECONDS = 1.0
# tools/pager default page size: ~2-3 MB of Node JSON, ~50-70 ms to parse on a small machine.
DEFAULT_PAGE_SIZE = 500

log = structlog.get_logger("vpsie_autoscaler.runtime.reflector")

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class ListMode(StrEnum):
    """How a reflector LISTs (see the module docstring)."""

    CLIENT_GO = "client-go"
    PAGINATED = "paginated"


class ReflectorSink(Protocol):
    """Where a reflector delivers what it sees (the informer)."""

    def replace(self, items: list[dict[str, Any]], resource_version: str) -> None:
        """The complete current list (after a LIST)."""

    def add(self, obj: dict[str, Any]) -> None: ...

    def update(self, obj: dict[str, Any]) -> None: ...

    def delete(self, obj: dict[str, Any]) -> None: ...


class VeryShortWatchError(errors.KubeError):
    """The watch closed within a second without a single event (client-go ``VeryShortWatchError``)."""


def strip_managed_fields(resource: Resource) -> Transform:
    """Drop ``metadata.managedFields`` and fill ``apiVersion``/``kind`` (LIST items lack them)."""

    def transform(obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            meta.pop("managedFields", None)
        if "kind" not in obj:
            obj["kind"] = resource.kind
        if "apiVersion" not in obj:
            obj["apiVersion"] = resource.api_version
        return obj

    return transform


def _rv_of(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion")
    return str(rv) if rv else None


class Reflector:
    """LIST+WATCH one resource (optionally one namespace / selector) into a :class:`ReflectorSink`."""

    def __init__(
        self,
        client: KubeClient,
        resource: Resource,
        sink: ReflectorSink,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        transform: Transform | None = None,
        rng: random.Random | None = None,
        list_mode: ListMode = ListMode.PAGINATED,
    ) -> None:
        self._client = client
        self._list_mode = list_mode
        self._resource = resource
        self._sink = sink
        self._namespace = namespace
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._clock = clock or RealClock()
        self._page_size = page_size
        self._transform = transform or strip_managed_fields(resource)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._backoff = ExponentialBackoff(
            initial=BACKOFF_INITIAL_SECONDS,
            cap=BACKOFF_CAP_SECONDS,
            factor=BACKOFF_FACTOR,
            jitter=BACKOFF_JITTER,
            reset_after=BACKOFF_RESET_SECONDS,
            clock=self._clock,
            rng=self._rng,
        )
        self._metrics = informer_metrics(registry if registry is not None else CollectorRegistry())
        self.last_sync_resource_version = ""
        # A LIST got 410 / "too large RV": the next LIST must be a consistent read (RV "").
        self._rv_unavailable = False
        # The first RV="0" list came back paginated: the watch cache is off, keep paginating.
        self._paginated_result = False
        self._log = log.bind(resource=str(resource), namespace=namespace, selector=label_selector)

    @property
    def resource(self) -> Resource:
        return self._resource

    async def run(self) -> None:
        """LIST+WATCH forever (until cancelled), backing off between failed cycles."""
        while True:
            try:
                await self.list_and_watch()
            except errors.KubeError as exc:
                self._log.warning("list/watch failed", error=str(exc), error_type=type(exc).__name__)
            await self._clock.sleep(self._backoff.next())

    async def list_and_watch(self) -> None:
        """One cycle: LIST into the sink, then WATCH until the watch must be re-listed."""
        await self._list()
        await self._watch_loop()

    # -- LIST -------------------------------------------------------------------------------------

    def _relist_resource_version(self) -> str:
        if self._list_mode is ListMode.PAGINATED or self._rv_unavailable:
            return ""
        return self.last_sync_resource_version or "0"

    async def _list(self) -> None:
        rv = self._relist_resource_version()
        try:
            items, list_rv = await self._list_all(rv)
        except errors.KubeError as exc:
            if errors.is_gone(exc) or errors.is_too_large_resource_version(exc):
                # The RV left the window (or is ahead of this apiserver): read from etcd at once.
                self._rv_unavailable = True
                self._log.info("list resource version unavailable, relisting consistently", rv=rv)
                items, list_rv = await self._list_all("")
            else:
                raise
        self._rv_unavailable = False
        self._metrics.relists.labels(str(self._resource)).inc()
        self._sink.replace(items, list_rv)
        self.last_sync_resource_version = list_rv
        self._metrics.objects.labels(str(self._resource)).set(len(items))

    async def _list_all(self, rv: str) -> tuple[list[dict[str, Any]], str]:
        # client-go: a LIST at a specific RV (not "0") is not paginated unless the server showed it
        # paginates, so it is served from the watch cache instead of etcd.
        paginate = self._list_mode is ListMode.PAGINATED or rv in ("", "0") or self._paginated_result
        limit = self._page_size if paginate else None
        items: list[dict[str, Any]] = []
        continue_token: str | None = None
        while True:
            try:
                page = await self._client.list(
                    self._resource,
                    self._namespace,
                    label_selector=self._label_selector,
                    field_selector=self._field_selector,
                    limit=limit,
                    continue_=continue_token,
                    resource_version=rv if continue_token is None else None,
                )
            except errors.Gone:
                if continue_token is None:
                    raise
                # tools/pager: the continue token expired mid-way; fall back to one full list.
                self._log.info("continue token expired, listing in full")
                items.clear()
                continue_token = None
                limit = None
                continue
            for item in page.get("items") or []:
                items.append(self._transform(item))
            meta = page.get("metadata") or {}
            continue_token = meta.get("continue") or None
            if continue_token is None:
                return items, str(meta.get("resourceVersion") or "")
            if rv == "0":
                self._paginated_result = True

    # -- WATCH ------------------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            timeout = self._rng.randint(MIN_WATCH_TIMEOUT_SECONDS, 2 * MIN_WATCH_TIMEOUT_SECONDS)
            started = self._clock.monotonic()
            events = 0
            try:
                stream = self._client.watch(
                    self._resource,
                    self._namespace,
                    resource_version=self.last_sync_resource_version,
                    timeout_seconds=timeout,
                    allow_bookmarks=True,
                    label_selector=self._label_selector,
                    field_selector=self._field_selector,
                )
                async with aclosing(stream) as events_stream:
                    async for event in events_stream:
                        events += 1
                        self._handle(event)
            except errors.Gone as exc:
                # The watch window moved past our RV: relist (with the last RV; not-older-than).
                self._log.debug("watch expired, relisting", error=str(exc))
                return
            except errors.TooManyRequests as exc:
                self._log.info("watch throttled, backing off", retry_after=exc.retry_after)
                await self._clock.sleep(max(exc.retry_after, self._backoff.next()))
                continue
            except (errors.KubeConnectionError, errors.KubeTimeout) as exc:
                if events == 0:
                    # Nothing arrived: could not open (refused) or a silent connection. Back off.
                    self._log.info("watch failed before any event, backing off", error=str(exc))
                    await self._clock.sleep(self._backoff.next())
                else:
                    self._log.debug("watch connection ended, resuming", error=str(exc))
                continue
            if events == 0 and self._clock.monotonic() - started < VERY_SHORT_WATCH_SECONDS:
                raise VeryShortWatchError(f"watch of {self._resource} closed at once with no events")

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        self._metrics.watch_events.labels(str(self._resource), str(kind)).inc()
        rv = _rv_of(obj)
        if kind == "BOOKMARK":
            if rv:
                self.last_sync_resource_version = rv
            return
        obj = self._transform(obj)
        if kind == "ADDED":
            self._sink.add(obj)
        elif kind == "MODIFIED":
            self._sink.update(obj)
        elif kind == "DELETED":
            self._sink.delete(obj)
        else:
            self._log.warning("unknown watch event type", type=kind)
            return
        if rv:
            self.last_sync_resource_version = rv
