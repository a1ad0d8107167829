"""Controllers: turn informer events into requests and run a reconciler over them with N workers.

Upstream analogue: controller-runtime ``pkg/reconcile/reconcile.go`` (Request, Result,
TerminalError, Reconciler) and ``pkg/internal/controller/controller.go`` (``reconcileHandler``).

Reconciliation is level-based: a :class:`Request` names an object, never an event. A reconciler
reads the current state from caches and moves one step towards the desired state; when reacting to
a delete, it observes the absence.

Per request the worker does exactly what controller-runtime does:

1. an exception → ``add_rate_limited`` (exponential 5 ms..1000 s), unless it is a
   :class:`TerminalError` (no requeue); a Result returned together with an error is ignored;
2. ``requeue_after`` > 0 → ``forget`` then ``add_after``;
3. ``requeue`` → ``add_rate_limited``;
4. otherwise ``forget``. ``done`` always.

A reconcile gets a fresh ``reconcile_id`` bound, with ``controller``, ``namespace`` and ``name``,
into every log line it emits (structlog contextvars, local to the worker task). Exceptions never
kill a worker; ``asyncio.CancelledError`` is never swallowed. An optional per-reconcile timeout
cancels a hung reconcile and counts it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.kube import errors as kube_errors
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.informer import DEFAULT_CACHE_SYNC_TIMEOUT_SECONDS, SharedInformer
from vpsie_autoscaler.runtime.metrics import controller_metrics
from vpsie_autoscaler.runtime.store import DeletedFinalStateUnknown, Obj, unwrap
from vpsie_autoscaler.runtime.workqueue import RateLimiter, RateLimitingQueue, ShutDown

# controller-runtime's MaxConcurrentReconciles default.
DEFAULT_WORKERS = 1

log = structlog.get_logger("vpsie_autoscaler.runtime.controller")


@dataclass(frozen=True, slots=True, order=True)
class Request:
    """Which object to reconcile: a name, plus a namespace for namespaced objects."""

    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, slots=True)
class Result:
    """What to do after a successful reconcile.

    ``requeue_after`` (seconds) schedules the next look (resetting back-off); ``requeue`` asks for
    a rate-limited retry (deprecated upstream; prefer ``requeue_after``).
    """

    requeue: bool = False
    requeue_after: float | None = None


class TerminalError(Exception):
    """A failure retrying cannot fix (bad spec): counted and logged, never requeued."""


class Reconciler(Protocol):
    async def reconcile(self, request: Request) -> Result: ...


class FuncReconciler:
    """A plain async function as a :class:`Reconciler` (controller-runtime ``reconcile.Func``)."""

    def __init__(self, fn: Callable[[Request], Awaitable[Result]]) -> None:
        self._fn = fn

    async def reconcile(self, request: Request) -> Result:
        return await self._fn(request)


Mapper = Callable[[Obj], Iterable[Request]]
UpdatePredicate = Callable[[Obj, Obj], bool]


def request_for_object(obj: Obj) -> list[Request]:
    """controller-runtime ``EnqueueRequestForObject``: the object itself."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        return []
    return [Request(str(name), meta.get("namespace") or None)]


def generation_changed(old: Obj, new: Obj) -> bool:
    """``GenerationChangedPredicate``: only spec changes (status writes do not bump generation).

    Caveat from upstream: with this predicate a wiped status is never healed by update events.
    """
    return (old.get("metadata") or {}).get("generation") != (new.get("metadata") or {}).get("generation")


def resource_version_changed(old: Obj, new: Obj) -> bool:
    """``ResourceVersionChangedPredicate``: drop re-deliveries of an unchanged object."""
    return (old.get("metadata") or {}).get("resourceVersion") != (new.get("metadata") or {}).get(
        "resourceVersion"
    )


class Controller:
    """A named work queue plus workers that call a :class:`Reconciler`."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        workers: int = DEFAULT_WORKERS,
        reconcile_timeout: float | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        rate_limiter: RateLimiter[Request] | None = None,
        cache_sync_timeout: float = DEFAULT_CACHE_SYNC_TIMEOUT_SECONDS,
        needs_leader: bool = True,
    ) -> None:
        if workers < 1:
            raise ValueError("a controller needs at least one worker")
        self.name = name
        self.needs_leader = needs_leader
        self._reconciler = reconciler
        self._workers = workers
        self._timeout = reconcile_timeout
        self._clock = clock or RealClock()
        self._cache_sync_timeout = cache_sync_timeout
        reg = registry if registry is not None else CollectorRegistry()
        self.queue: RateLimitingQueue[Request] = RateLimitingQueue(
            name, rate_limiter, clock=self._clock, registry=reg
        )
        self._sources: list[SharedInformer] = []
        m = controller_metrics(reg)
        self._m_total = {
            r: m.reconcile_total.labels(name, r) for r in ("success", "error", "requeue", "requeue_after")
        }
        for child in self._m_total.values():
            child.inc(0)
        self._m_errors = m.reconcile_errors.labels(name)
        self._m_terminal = m.terminal_errors.labels(name)
        self._m_panics = m.panics.labels(name)
        self._m_timeouts = m.timeouts.labels(name)
        self._m_time = m.reconcile_time.labels(name)
        self._m_active = m.active_workers.labels(name)
        m.max_concurrent.labels(name).set(workers)
        for child in (self._m_errors, self._m_terminal, self._m_panics, self._m_timeouts):
            child.inc(0)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self._stopping = False
        self._log = log.bind(controller=name)

    # -- sources ----------------------------------------------------------------------------------

    def watch(
        self,
        informer: SharedInformer,
        mapper: Mapper | None = None,
        *,
        update_predicate: UpdatePredicate | None = None,
    ) -> None:
        """Enqueue requests for informer events: the object itself, or what ``mapper`` returns.

        On update both the old and the new object are mapped (an owner or label may have changed);
        deletes are mapped from the last known state (tombstones included).
        """
        map_fn = mapper or request_for_object

        def enqueue_all(obj: Obj) -> None:
            for req in map_fn(obj):
                self.queue.add(req)

        def on_add(obj: Obj) -> None:
            enqueue_all(obj)

        def on_update(old: Obj, new: Obj) -> None:
            if update_predicate is not None and not update_predicate(old, new):
                return
            enqueue_all(new)
            if mapper is not None:
                enqueue_all(old)

        def on_delete(obj: Obj | DeletedFinalStateUnknown) -> None:
            enqueue_all(unwrap(obj))

        informer.add_event_handler(on_add, on_update, on_delete)
        self._sources.append(informer)

    def enqueue(self, request: Request, after: float | None = None) -> None:
        """Ask for a reconcile of ``request`` now, or after ``after`` seconds (periodic sources)."""
        if after is None or after <= 0:
            self.queue.add(request)
        else:
            self.queue.add_after(request, after)

    # -- running ----------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def alive(self) -> bool:
        """All workers are running (or the controller has not started yet)."""
        return not self._started.is_set() or all(not t.done() for t in self._tasks)

    async def run(self) -> None:
        """Wait for the sources to sync, run the workers until cancelled, then drain.

        On cancellation the queue is shut down and in-flight reconciles finish (the caller bounds
        this with its graceful-shutdown timeout, as the manager does).
        """
        try:
            async with asyncio.timeout(self._cache_sync_timeout):
                for informer in self._sources:
                    await informer.wait_for_sync()
        except TimeoutError as exc:
            raise RuntimeError(
                f"controller {self.name}: caches not synced in {self._cache_sync_timeout}s"
            ) from exc
        self._log.info("starting workers", workers=self._workers)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"{self.name}-worker-{i}") for i in range(self._workers)
        ]
        self._started.set()
        try:
            await asyncio.wait(self._tasks)  # unlike gather, being cancelled here spares the workers
        finally:
            await self._drain()

    async def _drain(self) -> None:
        """Stop handing out work and let in-flight reconciles finish (controller-runtime's priority
        queue does not hand out queued items after shutdown either: level-based, nothing is lost)."""
        self._stopping = True
        self.queue.shutdown()
        try:
            await asyncio.wait(self._tasks)
        except asyncio.CancelledError:
            # Cancelled again while draining: the graceful period is over.
            for task in self._tasks:
                task.cancel()
            raise
        self._log.info("workers stopped")

    async def _worker(self) -> None:
        while True:
            try:
                req = await self.queue.get()
            except ShutDown:
                return
            if self._stopping:
                self.queue.done(req)
                return
            try:
                await self._reconcile_one(req)
            finally:
                self.queue.done(req)

    async def _reconcile_one(self, req: Request) -> None:
        reconcile_id = str(uuid.uuid4())
        with structlog.contextvars.bound_contextvars(
            controller=self.name, reconcile_id=reconcile_id, namespace=req.namespace, name=req.name
        ):
            started = self._clock.monotonic()
            self._m_active.inc()
            try:
                result = await self._call(req)
            except asyncio.CancelledError:
                raise
            except TerminalError as exc:
                self._m_total["error"].inc()
                self._m_errors.inc()
                self._m_terminal.inc()
                self._log.error("reconcile failed permanently", error=str(exc))
                self.queue.forget(req)
                return
            except Exception as exc:
                self._m_total["error"].inc()
                self._m_errors.inc()
                self._log_failure(exc)
                self.queue.add_rate_limited(req)
                return
            finally:
                self._m_active.dec()
                self._m_time.observe(self._clock.monotonic() - started)
            self._apply(req, result)

    async def _call(self, req: Request) -> Result:
        if self._timeout is None:
            return await self._reconciler.reconcile(req)
        try:
            async with asyncio.timeout(self._timeout) as scope:
                return await self._reconciler.reconcile(req)
        except TimeoutError as exc:
            if scope.expired():
                raise _ReconcileTimeout from exc
            raise

    def _log_failure(self, exc: Exception) -> None:
        if isinstance(exc, _ReconcileTimeout):
            self._m_timeouts.inc()
            self._log.error("reconcile timed out", timeout=self._timeout)
        elif isinstance(exc, kube_errors.Conflict):
            # Optimistic lock lost: normal under concurrent writers; the requeue reads fresh state.
            self._log.info("reconcile hit a write conflict, requeueing", error=str(exc))
        elif isinstance(exc, kube_errors.KubeError):
            self._log.warning("reconcile failed", error=str(exc), error_type=type(exc).__name__)
        else:
            # Not an API answer: a bug. controller-runtime counts recovered panics; so do we.
            self._m_panics.inc()
            self._log.error("reconcile raised", error=str(exc), error_type=type(exc).__name__, exc_info=exc)

    def _apply(self, req: Request, result: Any) -> None:
        if not isinstance(result, Result):
            self._log.warning("reconciler returned no Result; treating as success", returned=repr(result))
            result = Result()
        if result.requeue_after is not None and result.requeue_after > 0:
            self._m_total["requeue_after"].inc()
            self.queue.forget(req)
            self.queue.add_after(req, result.requeue_after)
        elif result.requeue:
            self._m_total["requeue"].inc()
            self.queue.add_rate_limited(req)
        else:
            self._m_total["success"].inc()
            self.queue.forget(req)


class _ReconcileTimeout(Exception):
    """The per-reconcile deadline passed."""
