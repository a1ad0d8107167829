"""The manager: owns the shared pieces and runs everything in the right order.

Upstream analogue: controller-runtime ``pkg/manager`` (``internal.go``, ``runnable_group.go``).

Start order: HTTP servers (metrics, probes) → event recorder → caches (informers) and wait for
sync → runnables that do not need leadership → leader election → controllers and leader-only
runnables. ``/readyz`` turns green once the caches are synced — standbys are ready too, so a
rolling update can proceed; ``/healthz`` fails if a loop died or a leader's renewals hung.

Stop order on SIGTERM/SIGINT, bounded by the graceful-shutdown timeout (30 s): controllers and
leader-only runnables (in-flight reconciles finish) → other runnables → caches → release the Lease
(a standby takes over within a second or two) → flush events → HTTP servers. A second signal exits
at once. **Losing leadership is fatal**: no graceful shutdown, :class:`LeaderElectionLost` is raised
and the process must exit, so two leaders never act at the same time.

**Fence** (:attr:`Manager.fence`): cloud mutations call ``manager.fence.check(operation)`` right
before acting. With leader election it is the elector's
:class:`~vpsie_autoscaler.runtime.fence.LeaseFence`: open only while the Lease is held with enough
validity left; it closes at once when a renewal fails or the Lease is lost — also while reconciles
drain during a graceful shutdown — and, on shutdown, before the Lease is released. In-flight
reconciles may keep mutating while they drain as long as the Lease is still renewed. Without
leader election it is :class:`~vpsie_autoscaler.runtime.fence.AlwaysLeader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.controller import DEFAULT_WORKERS, Controller, Reconciler, Request
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.runtime.fence import AlwaysLeader, Fence, FenceReason
from vpsie_autoscaler.runtime.http import Check, HttpServer, metrics_app, probes_app
from vpsie_autoscaler.runtime.informer import DEFAULT_CACHE_SYNC_TIMEOUT_SECONDS, InformerFactory
from vpsie_autoscaler.runtime.leaderelection import (
    DEFAULT_LEASE_DURATION_SECONDS,
    DEFAULT_RENEW_DEADLINE_SECONDS,
    DEFAULT_RETRY_PERIOD_SECONDS,
    LeaderElectionConfig,
    LeaderElectionLost,
    LeaderElector,
    default_identity,
)
from vpsie_autoscaler.runtime.metrics import new_registry
from vpsie_autoscaler.runtime.workqueue import RateLimiter

# controller-runtime's GracefulShutdownTimeout default.
DEFAULT_GRACEFUL_SHUTDOWN_SECONDS = 30.0
# Exit code after a second signal (controller-runtime exits 1 then).
SECOND_SIGNAL_EXIT_CODE = 1
# Even with the graceful period used up, each stop step gets this long (releasing the Lease matters).
MIN_STEP_SECONDS = 0.5
# After a hard cancel, how long we wait for tasks to unwind.
HARD_CANCEL_WAIT_SECONDS = 1.0

log = structlog.get_logger("vpsie_autoscaler.runtime.manager")

Runnable = Callable[[], Coroutine[Any, Any, None]]


class ManagerError(Exception):
    """The manager could not start (caches not synced, a port taken) or a runnable failed."""


@dataclass(frozen=True)
class ManagerOptions:
    component: str = "vpsie-autoscaler"
    namespace: str = "kube-system"
    leader_elect: bool = True
    leader_election_id: str = "vpsie-autoscaler"
    lease_duration: float = DEFAULT_LEASE_DURATION_SECONDS
    renew_deadline: float = DEFAULT_RENEW_DEADLINE_SECONDS
    retry_period: float = DEFAULT_RETRY_PERIOD_SECONDS
    identity: str = field(default_factory=default_identity)
    metrics_bind_address: str = ":8080"
    health_probe_bind_address: str = ":8081"
    graceful_shutdown_timeout: float = DEFAULT_GRACEFUL_SHUTDOWN_SECONDS
    cache_sync_timeout: float = DEFAULT_CACHE_SYNC_TIMEOUT_SECONDS


@dataclass
class _Runnable:
    name: str
    fn: Runnable
    needs_leader: bool
    task: asyncio.Task[None] | None = None


class Manager:
    """Owns the client, informer factory, event recorder, metrics registry, HTTP servers and the
    leader elector; runs controllers and runnables (see the module docstring for the order)."""

    def __init__(
        self,
        client: KubeClient,
        options: ManagerOptions | None = None,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.options = options or ManagerOptions()
        self.client = client
        self.clock = clock or RealClock()
        if registry is None:
            registry = new_registry()
        self.registry = registry
        self.informers = InformerFactory(client, clock=self.clock, registry=registry)
        self.recorder = EventRecorder(client, self.options.component, clock=self.clock, registry=registry)
        self.elector: LeaderElector | None = None
        if self.options.leader_elect:
            self.elector = LeaderElector(
                client,
                LeaderElectionConfig(
                    name=self.options.leader_election_id,
                    namespace=self.options.namespace,
                    identity=self.options.identity,
                    lease_duration=self.options.lease_duration,
                    renew_deadline=self.options.renew_deadline,
                    retry_period=self.options.retry_period,
                ),
                clock=self.clock,
                registry=registry,
            )
        # What cloud mutations check right before acting (see the module docstring).
        self.fence: Fence = self.elector.fence if self.elector is not None else AlwaysLeader(self.clock)
        self._controllers: list[Controller] = []
        self._runnables: list[_Runnable] = []
        self._healthz: dict[str, Check] = {"ping": lambda: True, "loops": self._loops_alive}
        self._readyz: dict[str, Check] = {"caches": self._caches_ready}
        if self.elector is not None:
            elector = self.elector
            self._healthz["leader-election"] = elector.healthy
        self.metrics_server = HttpServer("metrics", self.options.metrics_bind_address, metrics_app(registry))
        self.probe_server = HttpServer(
            "health probe", self.options.health_probe_bind_address, probes_app(self._healthz, self._readyz)
        )
        self._stop = asyncio.Event()
        self.elected = asyncio.Event()
        self._caches_started = False
        self._signals = 0
        self._log = log.bind(identity=self.options.identity)

    # -- registration -----------------------------------------------------------------------------

    def add_controller(self, controller: Controller) -> None:
        """Run ``controller`` (after the caches synced; only while leader unless it says otherwise)."""
        self._controllers.append(controller)
        self._healthz.setdefault("controllers", self._controllers_alive)

    def new_controller(
        self,
        name: str,
        reconciler: Reconciler,
        *,
        workers: int = DEFAULT_WORKERS,
        reconcile_timeout: float | None = None,
        rate_limiter: RateLimiter[Request] | None = None,
        needs_leader: bool = True,
    ) -> Controller:
        """Create a controller wired to this manager's clock and metrics registry, and add it."""
        controller = Controller(
            name,
            reconciler,
            workers=workers,
            reconcile_timeout=reconcile_timeout,
            clock=self.clock,
            registry=self.registry,
            rate_limiter=rate_limiter,
            cache_sync_timeout=self.options.cache_sync_timeout,
            needs_leader=needs_leader,
        )
        self.add_controller(controller)
        return controller

    def add_runnable(self, fn: Runnable, needs_leader: bool = True, *, name: str | None = None) -> None:
        """Run ``fn()`` (until cancelled) after the caches synced, only while leader if ``needs_leader``."""
        self._runnables.append(_Runnable(name or str(getattr(fn, "__name__", "runnable")), fn, needs_leader))

    def add_healthz_check(self, name: str, check: Check) -> None:
        self._healthz[name] = check

    def add_readyz_check(self, name: str, check: Check) -> None:
        self._readyz[name] = check

    def is_leader(self) -> bool:
        return self.elected.is_set()

    def request_stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        self._stop.set()

    # -- checks -----------------------------------------------------------------------------------

    def _caches_ready(self) -> bool:
        return self._caches_started and self.informers.has_synced()

    def _loops_alive(self) -> bool:
        return self.informers.alive() and all(
            r.task is None or not r.task.done() or self._stop.is_set() for r in self._runnables
        )

    def _controllers_alive(self) -> bool:
        return all(c.alive() for c in self._controllers)

    # -- lifecycle --------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            self._signals += 1
            if self._signals > 1:
                self._log.error("second signal received, exiting immediately", signal=signum)
                os._exit(SECOND_SIGNAL_EXIT_CODE)
            self._log.info("signal received, shutting down", signal=signal.Signals(signum).name)
            self._stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until a signal (or :meth:`request_stop`), then stop in reverse order.

        Raises :class:`LeaderElectionLost` when leadership is lost, :class:`ManagerError` when start
        fails or a runnable crashes.
        """
        if handle_signals:
            self._install_signal_handlers()
        leading: list[asyncio.Task[None]] = []
        others: list[asyncio.Task[None]] = []
        hold: asyncio.Task[None] | None = None
        lost = False
        try:
            await self.metrics_server.start()
            await self.probe_server.start()
            self._log.info(
                "serving", metrics_port=self.metrics_server.port, probe_port=self.probe_server.port
            )
            self.recorder.start()
            self.informers.start()
            self._caches_started = True
            if not await self._until_stop(
                self.informers.wait_for_cache_sync(self.options.cache_sync_timeout)
            ):
                return
            if not self.informers.has_synced():
                raise ManagerError(f"caches not synced within {self.options.cache_sync_timeout}s")
            self._log.info("caches synced")
            others = [self._start(r) for r in self._runnables if not r.needs_leader]
            others += [self._start_controller(c) for c in self._controllers if not c.needs_leader]
            if self.elector is not None:
                if not await self._until_stop(self.elector.acquire()):
                    return
                hold = asyncio.get_running_loop().create_task(self.elector.hold(), name="leader-renew")
                # However the renew loop ends (lost lease, a bug, shutdown), the fence closes at
                # once — even while a graceful shutdown is still draining reconciles.
                hold.add_done_callback(self._close_fence_when_renewals_end)
            self.elected.set()
            self._log.info("leading; starting controllers")
            leading = [self._start(r) for r in self._runnables if r.needs_leader]
            leading += [self._start_controller(c) for c in self._controllers if c.needs_leader]
            watched = {t for t in [*leading, *others, hold] if t is not None}
            stop_wait = asyncio.ensure_future(self._stop.wait())
            done, _ = await asyncio.wait({stop_wait, *watched}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if hold is not None and hold in done:
                lost = True
                hold.result()  # raises LeaderElectionLost
            for task in done & watched:
                if task.exception() is not None:
                    raise ManagerError(
                        f"{task.get_name()} failed: {task.exception()!r}"
                    ) from task.exception()
                raise ManagerError(f"{task.get_name()} stopped unexpectedly")
        except LeaderElectionLost:
            lost = True
            raise
        finally:
            if lost:
                if self.elector is not None:
                    self.elector.fence.close(FenceReason.LEASE_LOST, "leader election lost")
                self._log.error("leader election lost; exiting without graceful shutdown")
                for task in [*leading, *others]:
                    task.cancel()
            else:
                await self._shutdown(leading, others, hold)
            if handle_signals:
                self._remove_signal_handlers()

    async def _until_stop(self, aw: Awaitable[object]) -> bool:
        """Await ``aw`` unless a stop comes first; False if stopped."""
        task = asyncio.ensure_future(aw)
        stop_wait = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False

    def _close_fence_when_renewals_end(self, task: asyncio.Task[None]) -> None:
        if self.elector is not None:
            self.elector.fence.close(FenceReason.LEASE_LOST, "the lease renew loop ended")

    def _start(self, r: _Runnable) -> asyncio.Task[None]:
        r.task = asyncio.get_running_loop().create_task(r.fn(), name=r.name)
        return r.task

    def _start_controller(self, c: Controller) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(c.run(), name=f"controller-{c.name}")

    async def _shutdown(
        self,
        leading: list[asyncio.Task[None]],
        others: list[asyncio.Task[None]],
        hold: asyncio.Task[None] | None,
    ) -> None:
        self._log.info("stopping", timeout=self.options.graceful_shutdown_timeout)
        deadline = asyncio.get_running_loop().time() + self.options.graceful_shutdown_timeout

        def remaining() -> float:
            return max(0.0, deadline - asyncio.get_running_loop().time())

        await _cancel_and_wait(leading, remaining())
        await _cancel_and_wait(others, remaining())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.informers.stop(), max(remaining(), MIN_STEP_SECONDS))
        if self.elector is not None:
            # Close the fence for good before anything else about the Lease changes: no cloud
            # mutation may start once we begin to give the Lease up.
            self.elector.fence.stop()
        if hold is not None:
            await _cancel_and_wait([hold], remaining())
        if self.elector is not None and self.elector.is_leader():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.elector.release(), max(remaining(), MIN_STEP_SECONDS))
        self.elected.clear()
        with contextlib.suppress(Exception):
            await self.recorder.stop(flush_timeout=min(2.0, remaining()))
        await self.probe_server.stop()
        await self.metrics_server.stop()
        self._log.info("stopped")


async def _cancel_and_wait(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Cancel tasks and give them ``grace`` seconds to finish (controllers drain in that time)."""
    pending = [t for t in tasks if not t.done()]
    for t in pending:
        t.cancel()
    if not pending:
        return
    _, still = await asyncio.wait(pending, timeout=max(grace, MIN_STEP_SECONDS))
    for t in still:
        t.cancel()  # second cancel: the graceful period is over
    if still:
        await asyncio.wait(still, timeout=HARD_CANCEL_WAIT_SECONDS)
    for t in pending:
        if t.done() and not t.cancelled() and t.exception() is not None:
            log.warning("runnable failed while stopping", runnable=t.get_name(), error=repr(t.exception()))
