"""An event recorder for ``events.k8s.io/v1`` that never blocks (or fails) a reconcile.

Upstream analogue: client-go ``tools/events`` (the new Events API behind controller-runtime's
``GetEventRecorder``):

- events are *isomorphic* when type, action, reason, reporting controller/instance, regarding and
  related match (the note is not part of the key). The first is created; the second turns into a
  series (count 2) and is patched; later ones only bump the local count and ``lastObservedTime``,
  and a refresher patches running series every 30 min. A series with no occurrence for 6 min is
  finished and forgotten;
- a bounded queue (1000) between :meth:`EventRecorder.event` and the sender task: when full the
  event is dropped and counted — observability must never slow down the control loop;
- up to 12 attempts per write, 10 s apart, then the event is given up (and counted).

Events about cluster-scoped objects (Nodes, NodeGroups) live in the ``default`` namespace, as
upstream does. The name is ``<regarding name>.<hex unix nanos>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import EVENTS
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.metrics import event_metrics

NORMAL = "Normal"
WARNING = "Warning"
# client-go tools/events constants.
QUEUE_SIZE = 1000
MAX_TRIES = 12
RETRY_SECONDS = 10.0
SERIES_REFRESH_SECONDS = 30 * 60.0
SERIES_FINISH_SECONDS = 6 * 60.0
# The API limits a note to 1 kB.
MAX_NOTE_CHARS = 1024
# Namespace for events about cluster-scoped objects.
CLUSTER_SCOPED_EVENT_NAMESPACE = "default"
# Event names are DNS subdomains (max 253 characters).
MAX_NAME_CHARS = 253
# How often the sender looks for series to refresh or finish.
HOUSEKEEPING_SECONDS = 60.0

log = structlog.get_logger("vpsie_autoscaler.runtime.events")

EventKey = tuple[str, str, str, str, str, tuple[str, ...], tuple[str, ...]]


def _micro_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def object_reference(obj: Mapping[str, Any]) -> dict[str, str]:
    """The ``ObjectReference`` of a cached object (apiVersion, kind, namespace, name, uid, rv)."""
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": str(obj.get("apiVersion") or ""),
        "kind": str(obj.get("kind") or ""),
        "name": str(meta.get("name") or ""),
        "namespace": str(meta.get("namespace") or ""),
        "uid": str(meta.get("uid") or ""),
        "resourceVersion": str(meta.get("resourceVersion") or ""),
    }
    return {k: v for k, v in ref.items() if v}


def _ref_key(ref: Mapping[str, str] | None) -> tuple[str, ...]:
    if not ref:
        return ()
    return tuple(ref.get(k, "") for k in ("apiVersion", "kind", "namespace", "name", "uid"))


@dataclass
class _Series:
    event: dict[str, Any]  # as created on the server (name, namespace)
    count: int = 1
    last_observed: float = 0.0
    last_observed_wall: str = ""
    dirty: bool = False


@dataclass
class _Pending:
    key: EventKey
    body: dict[str, Any]
    series_count: int | None = None  # None: create; else patch the series
    tries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class EventRecorder:
    """Records Events for objects; :meth:`event` is synchronous, cheap and never raises."""

    def __init__(
        self,
        client: KubeClient,
        component: str,
        instance: str | None = None,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self._client = client
        self.component = component
        self.instance = instance or f"{component}-{socket.gethostname()}"
        self._clock = clock or RealClock()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._series: dict[EventKey, _Series] = {}
        self._m = event_metrics(registry if registry is not None else CollectorRegistry())
        self._task: asyncio.Task[None] | None = None

    def event(
        self,
        obj: Mapping[str, Any],
        type: str,
        reason: str,
        note: str,
        action: str,
        *,
        related: Mapping[str, Any] | None = None,
    ) -> None:
        """Record that ``action`` happened to ``obj`` for ``reason`` (never blocks, never raises)."""
        try:
            self._record(obj, type, reason, note, action=action, related=related)
        except Exception:
            log.exception("could not record event", reason=reason)

    def _record(
        self,
        obj: Mapping[str, Any],
        type_: str,
        reason: str,
        note: str,
        *,
        action: str,
        related: Mapping[str, Any] | None,
    ) -> None:
        regarding = object_reference(obj)
        related_ref = object_reference(related) if related else None
        key: EventKey = (
            type_, action, reason, self.component, self.instance, _ref_key(regarding), _ref_key(related_ref)
        )  # fmt: skip
        now_mono = self._clock.monotonic()
        now_wall = _micro_time(self._clock.now())
        series = self._series.get(key)
        if series is not None:
            series.count += 1
            series.last_observed = now_mono
            series.last_observed_wall = now_wall
            if series.count == 2:
                self._enqueue(_Pending(key, series.event, series_count=2))
            else:
                series.dirty = True  # the refresher writes it later
            return
        namespace = regarding.get("namespace") or CLUSTER_SCOPED_EVENT_NAMESPACE
        name = f"{regarding.get('name', 'unknown')}.{int(self._clock.now().timestamp() * 1e9):x}"
        if len(name) > MAX_NAME_CHARS:
            name = str(uuid.uuid4())
        body: dict[str, Any] = {
            "apiVersion": EVENTS.api_version,
            "kind": EVENTS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "eventTime": now_wall,
            "reportingController": self.component,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": note[:MAX_NOTE_CHARS],
            "type": type_,
            "regarding": regarding,
        }
        if related_ref:
            body["related"] = related_ref
        self._series[key] = _Series(body, 1, now_mono, now_wall)
        self._enqueue(_Pending(key, body))

    def _enqueue(self, pending: _Pending) -> None:
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self._m.dropped.inc()
            log.warning("event queue full, dropping event", reason=pending.body.get("reason"))

    # -- sender -----------------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="event-recorder")
        return self._task

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Send what is queued (bounded by ``flush_timeout``), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_timeout):
                await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def run(self) -> None:
        housekeeping = asyncio.get_running_loop().create_task(self._housekeeping())
        try:
            while True:
                pending = await self._queue.get()
                try:
                    await self._send(pending)
                finally:
                    self._queue.task_done()
        finally:
            housekeeping.cancel()

    async def _send(self, pending: _Pending) -> None:
        body = pending.body
        meta = body["metadata"]
        while True:
            pending.tries += 1
            try:
                if pending.series_count is None:
                    await self._client.create(EVENTS, body, meta["namespace"])
                else:
                    series = self._series.get(pending.key)
                    count = series.count if series else pending.series_count
                    last = series.last_observed_wall if series else _micro_time(self._clock.now())
                    await self._client.merge_patch(
                        EVENTS,
                        meta["name"],
                        {"series": {"count": count, "lastObservedTime": last}},
                        meta["namespace"],
                    )
                    if series:
                        series.dirty = False
                self._m.sent.inc()
                return
            except errors.AlreadyExists:
                return  # same name written already (a retry of a create that went through)
            except errors.NotFound:
                if pending.series_count is not None:
                    # The event expired server-side (default TTL 1 h): start over as a new event.
                    self._series.pop(pending.key, None)
                return
            except errors.KubeError as exc:
                if pending.tries >= MAX_TRIES or not errors.is_retriable(exc):
                    self._m.failed.inc()
                    log.warning("giving up on event", reason=body.get("reason"), error=str(exc))
                    return
                await self._clock.sleep(RETRY_SECONDS)

    async def _housekeeping(self) -> None:
        last_refresh = self._clock.monotonic()
        while True:
            await self._clock.sleep(HOUSEKEEPING_SECONDS)
            now = self._clock.monotonic()
            for key, series in list(self._series.items()):
                if now - series.last_observed > SERIES_FINISH_SECONDS:
                    if series.dirty:
                        self._enqueue(_Pending(key, series.event, series_count=series.count))
                    del self._series[key]
            if now - last_refresh >= SERIES_REFRESH_SECONDS:
                last_refresh = now
                for key, series in self._series.items():
                    if series.count > 1 and series.dirty:
                        self._enqueue(_Pending(key, series.event, series_count=series.count))

    @property
    def queued(self) -> int:
        return self._queue.qsize()
