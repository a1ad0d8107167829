"""Leader election on a ``coordination.k8s.io/v1`` Lease.

Upstream analogue: client-go ``tools/leaderelection/leaderelection.go`` with the ``LeaseLock``
(``resourcelock/leaselock.go``) and controller-runtime's defaults (15 s lease, 10 s renew deadline,
2 s retry period; validation lease > renew > 1.2 x retry).

- **Acquire**: try every ``retry_period`` (+ up to 120 % jitter). A Lease held by someone else is
  respected while ``observed_time + leaseDurationSeconds`` is in the future, where
  ``observed_time`` is *our* monotonic clock reading when we last saw the record change — never the
  holder's ``renewTime`` (immune to clock skew between machines).
- **Renew**: every ``retry_period``; if no renewal succeeds within ``renew_deadline`` leadership is
  lost. The manager treats that as fatal (controller-runtime does): the process exits and Kubernetes
  restarts it, rather than risk two leaders acting at once.
- **Release** on shutdown (``ReleaseOnCancel``): write ``holderIdentity=""`` and
  ``leaseDurationSeconds=1`` so a standby can take over at once instead of after 15 s.
- Every write is guarded by the Lease's resourceVersion, so two candidates racing for an expired
  Lease cannot both win (the loser gets 409).

**Fence** (:attr:`LeaderElector.fence`, a :class:`~vpsie_autoscaler.runtime.fence.LeaseFence`):
every successful acquire/renew records the monotonic time its write was *sent*; the fence is open
while no more than ``renew_deadline`` has passed since then (so at least ``lease_duration -
renew_deadline`` of validity is left). Any failed renewal attempt, losing the Lease and the start of
:meth:`LeaderElector.release` close it at once; the next successful renewal reopens it (release
aside). Cloud mutations call ``fence.check(...)`` right before acting.

One deliberate addition: a standby watches the Lease while waiting. A release wakes it at once
instead of at its next poll (client-go polls only: up to 4.4 s with the default 2 s period), and
each renewal it sees restarts its local expiry timer, so after a leader dies the standby tries right
when the lease runs out (~15 s after the last renewal) rather than up to two polls later.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import uuid
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import LEASES
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.fence import FenceReason, LeaseFence
from vpsie_autoscaler.runtime.metrics import leader_metrics

# controller-runtime pkg/manager/internal.go defaults.
DEFAULT_LEASE_DURATION_SECONDS = 15.0
DEFAULT_RENEW_DEADLINE_SECONDS = 10.0
DEFAULT_RETRY_PERIOD_SECONDS = 2.0
# wait.JitterUntil factor used by the acquire loop.
JITTER_FACTOR = 1.2
# What a released Lease says: expired one second after release.
RELEASED_LEASE_DURATION_SECONDS = 1
# How long the standby's Lease watch lasts before it is re-opened (short: it is one small object).
LEASE_WATCH_TIMEOUT_SECONDS = 60
# Try this long after the observed lease should have expired (so the attempt sees it expired).
EXPIRY_MARGIN_SECONDS = 0.05
# healthz: fail liveness only if we lead and our lease ran out this long ago (client-go's
# HealthzAdaptor: a deadlocked renew loop should restart the process).
DEFAULT_HEALTH_TIMEOUT_SECONDS = 20.0

log = structlog.get_logger("vpsie_autoscaler.runtime.leaderelection")


class LeaderElectionLost(Exception):
    """The lease could not be renewed within the renew deadline."""


@dataclass(frozen=True)
class LeaderElectionConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = DEFAULT_LEASE_DURATION_SECONDS
    renew_deadline: float = DEFAULT_RENEW_DEADLINE_SECONDS
    retry_period: float = DEFAULT_RETRY_PERIOD_SECONDS

    def __post_init__(self) -> None:
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("lease duration must be greater than the renew deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(f"renew deadline must be greater than {JITTER_FACTOR} x the retry period")
        if self.retry_period <= 0:
            raise ValueError("retry period must be positive")
        if not self.name or not self.namespace or not self.identity:
            raise ValueError("lease name, namespace and identity are required")


def default_identity() -> str:
    """``hostname_uuid`` (controller-runtime): unique even for two processes on one host."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def _micro_time(t: datetime) -> str:
    """A MicroTime: RFC 3339 with exactly six fractional digits, UTC."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: Mapping[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec") or {}
    return {
        k: spec.get(k)
        for k in ("holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions")
    }


class LeaderElector:
    """Acquire, hold and release one Lease."""

    def __init__(
        self,
        client: KubeClient,
        config: LeaderElectionConfig,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.config = config
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        m = leader_metrics(registry if registry is not None else CollectorRegistry())
        self._m_status = m.master_status.labels(config.name)
        self._m_status.set(0)
        self._m_slowpath = m.slowpath.labels(config.name)
        self._lease: dict[str, Any] | None = None  # last Lease object read or written
        self._observed: dict[str, Any] | None = None  # its record
        self._observed_time = 0.0  # our monotonic clock when the record last changed
        self._is_leader = False
        self._fence = LeaseFence(config.lease_duration, config.renew_deadline, self._clock)
        self._changed = asyncio.Event()
        self._log = log.bind(lease=f"{config.namespace}/{config.name}", identity=config.identity)

    # -- public API -------------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self.config.identity

    def is_leader(self) -> bool:
        return self._is_leader

    @property
    def fence(self) -> LeaseFence:
        """Open only while we hold the Lease with enough validity left (see the module docstring)."""
        return self._fence

    def observed_holder(self) -> str | None:
        return (self._observed or {}).get("holderIdentity") or None

    async def acquire(self) -> None:
        """Block until this candidate holds the Lease (cancellable)."""
        self._log.info("attempting to acquire leader lease")
        watcher = asyncio.get_running_loop().create_task(self._watch_lease(), name="leader-lease-watch")
        try:
            while True:
                if await self._try_bounded():
                    self._log.info("acquired leader lease")
                    return
                wait = self.config.retry_period * (1 + self._rng.random() * JITTER_FACTOR)
                await self._wait_change_or(min(wait, self._until_observed_expiry()))
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def hold(self) -> None:
        """Renew until leadership is lost (raises :class:`LeaderElectionLost`) or cancelled."""
        while True:
            await self._clock.sleep(self.config.retry_period)
            deadline = self._clock.monotonic() + self.config.renew_deadline
            while True:
                if await self._try_bounded(deadline):
                    break
                if self._clock.monotonic() >= deadline:
                    self._set_leader(False, "not renewed within the renew deadline")
                    self._log.error("failed to renew leader lease within the renew deadline")
                    raise LeaderElectionLost(f"lease {self.config.namespace}/{self.config.name} lost")
                await self._clock.sleep(min(self.config.retry_period, deadline - self._clock.monotonic()))

    async def release(self) -> bool:
        """Give the Lease up at once (holder "", duration 1 s); retried on conflict within the renew
        deadline. Returns whether the Lease was released by us.

        The fence closes before the release request is sent: from here on nothing may act."""
        self._fence.close(FenceReason.STOPPING, "releasing the lease")
        if not self._is_leader or self._lease is None:
            return False
        deadline = self._clock.monotonic() + self.config.renew_deadline
        lease = self._lease
        while self._clock.monotonic() < deadline:
            now = _micro_time(self._clock.now())
            body = {
                **lease,
                "spec": {
                    **(lease.get("spec") or {}),
                    "holderIdentity": "",
                    "leaseDurationSeconds": RELEASED_LEASE_DURATION_SECONDS,
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": (self._observed or {}).get("leaseTransitions") or 0,
                },
            }
            try:
                self._store(await self._replace(body, deadline))
                self._set_leader(False)
                self._log.info("released leader lease")
                return True
            except errors.Conflict:
                try:
                    lease = await self._client.get(
                        LEASES,
                        self.config.name,
                        self.config.namespace,
                        request_timeout=self._request_timeout(),
                    )
                except errors.KubeError as exc:
                    self._log.warning("could not re-read the lease to release it", error=str(exc))
                    break
                if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                    break  # someone else holds it now: nothing to release
            except errors.KubeError as exc:
                self._log.warning("could not release the lease", error=str(exc))
                await self._clock.sleep(
                    min(self.config.retry_period, max(0.0, deadline - self._clock.monotonic()))
                )
        self._set_leader(False)
        return False

    def healthy(self, max_tolerable_expiration: float = DEFAULT_HEALTH_TIMEOUT_SECONDS) -> bool:
        """False only if we are leader and our lease expired more than the tolerance ago."""
        if not self._is_leader:
            return True
        expires = self._observed_time + self.config.lease_duration
        return self._clock.monotonic() <= expires + max_tolerable_expiration

    # -- the algorithm ----------------------------------------------------------------------------

    def _request_timeout(self, deadline: float | None = None) -> float:
        budget = self.config.retry_period
        if deadline is not None:
            budget = min(budget, deadline - self._clock.monotonic())
        return max(budget, 0.1)

    async def _try_bounded(self, deadline: float | None = None) -> bool:
        try:
            return await self.try_acquire_or_renew(deadline)
        except errors.KubeError as exc:
            self._log.warning("leader lease request failed", error=str(exc), error_type=type(exc).__name__)
            return False

    async def try_acquire_or_renew(self, deadline: float | None = None) -> bool:
        """One attempt (client-go ``tryAcquireOrRenew``); True when we hold the Lease afterwards.

        Success (re)opens the fence from the send time of the write that acquired or renewed the
        Lease; any other outcome (including an error or cancellation) closes it at once."""
        was_leader = self._is_leader
        try:
            sent = await self._attempt(deadline)
        except BaseException as exc:
            self._fence.close(FenceReason.LEASE_LOST, f"lease renewal failed: {exc!r}")
            raise
        if sent is None:
            self._fence.close(FenceReason.LEASE_LOST, "lease renewal failed")
            return False
        self._fence.renewed(sent, acquired=not was_leader)
        return True

    async def _attempt(self, deadline: float | None) -> float | None:
        """One attempt; the monotonic send time of the successful acquire/renew write, else None."""
        now_wall = _micro_time(self._clock.now())
        cfg = self.config
        # 1. Fast path: we lead and our view of the lease is still valid — update from the cache.
        if self._is_leader and self._lease is not None and self._observed_valid():
            body = self._with_spec(self._lease, renewTime=now_wall, holderIdentity=cfg.identity)
            sent = self._clock.monotonic()
            try:
                self._store(await self._replace(body, deadline))
                return sent
            except errors.KubeError as exc:
                self._log.info("fast-path lease renewal failed, falling back", error=str(exc))
            self._m_slowpath.inc()
        # 2. Read the Lease; create it if missing.
        try:
            lease = await self._client.get(
                LEASES, cfg.name, cfg.namespace, request_timeout=self._request_timeout(deadline)
            )
        except errors.NotFound:
            body = {
                "apiVersion": LEASES.api_version,
                "kind": LEASES.kind,
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {
                    "holderIdentity": cfg.identity,
                    "leaseDurationSeconds": int(cfg.lease_duration),
                    "acquireTime": now_wall,
                    "renewTime": now_wall,
                    "leaseTransitions": 0,
                },
            }
            sent = self._clock.monotonic()
            try:
                created = await self._client.create(
                    LEASES, body, cfg.namespace, request_timeout=self._request_timeout(deadline)
                )
            except errors.AlreadyExists:
                return None
            self._store(created)
            self._set_leader(True)
            return sent
        # 3. Record changes are timed on our own clock.
        self._store(lease)
        record = self._observed or {}
        holder = record.get("holderIdentity") or ""
        # 4. Someone else holds a lease we still consider valid.
        if holder and holder != cfg.identity and self._observed_valid():
            self._set_leader(False, f"the lease is held by {holder}")
            return None
        # 5. Take over or renew, keeping acquireTime/transitions when we already lead.
        if holder == cfg.identity:
            spec = {"renewTime": now_wall, "leaseDurationSeconds": int(cfg.lease_duration)}
        else:
            spec = {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": int(cfg.lease_duration),
                "acquireTime": now_wall,
                "renewTime": now_wall,
                "leaseTransitions": int(record.get("leaseTransitions") or 0) + 1,
            }
        sent = self._clock.monotonic()
        try:
            updated = await self._replace(self._with_spec(lease, **spec), deadline)
        except errors.Conflict:
            return None  # another candidate won the race
        self._store(updated)
        self._set_leader(True)
        return sent

    def _until_observed_expiry(self) -> float:
        """Seconds until the observed holder's lease runs out on our clock (plus a hair)."""
        duration = float((self._observed or {}).get("leaseDurationSeconds") or self.config.lease_duration)
        return max(0.0, self._observed_time + duration - self._clock.monotonic()) + EXPIRY_MARGIN_SECONDS

    def _observed_valid(self) -> bool:
        duration = float((self._observed or {}).get("leaseDurationSeconds") or self.config.lease_duration)
        return self._observed_time + duration > self._clock.monotonic()

    @staticmethod
    def _with_spec(lease: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
        return {**lease, "spec": {**(lease.get("spec") or {}), **spec}}

    async def _replace(self, body: dict[str, Any], deadline: float | None) -> dict[str, Any]:
        return await self._client.replace(
            LEASES,
            self.config.name,
            body,
            self.config.namespace,
            request_timeout=self._request_timeout(deadline),
        )

    def _store(self, lease: dict[str, Any]) -> None:
        record = _record(lease)
        if record != self._observed:
            self._observed = record
            self._observed_time = self._clock.monotonic()
        self._lease = lease

    def _set_leader(self, leading: bool, why: str = "") -> None:
        if not leading:
            self._fence.close(FenceReason.LEASE_LOST, why)
        if leading != self._is_leader:
            self._log.info("leadership changed", leading=leading)
        self._is_leader = leading
        self._m_status.set(1 if leading else 0)

    # -- standby wake-up --------------------------------------------------------------------------

    async def _wait_change_or(self, seconds: float) -> None:
        self._changed.clear()
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeper, changed):
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut

    async def _watch_lease(self) -> None:
        """Wake the acquire loop when the Lease is released (holder emptied) or deleted."""
        while True:
            rv = (self._lease or {}).get("metadata", {}).get("resourceVersion")
            try:
                stream = self._client.watch(
                    LEASES,
                    self.config.namespace,
                    resource_version=rv,
                    timeout_seconds=LEASE_WATCH_TIMEOUT_SECONDS,
                    allow_bookmarks=False,
                    field_selector=f"metadata.name={self.config.name}",
                )
                async with aclosing(stream) as events:
                    async for event in events:
                        obj = event.get("object") or {}
                        if event.get("type") == "DELETED":
                            self._changed.set()
                            continue
                        if event.get("type") not in ("ADDED", "MODIFIED") or self._is_leader:
                            continue
                        # Seeing each renewal as it happens times the holder's expiry from its last
                        # renewal, not from our last poll: a dead leader is replaced ~lease seconds
                        # after its last renewal instead of up to a lease plus two polls later.
                        self._store(obj)
                        if not (obj.get("spec") or {}).get("holderIdentity"):
                            self._changed.set()
            except errors.KubeError as exc:
                self._log.debug("lease watch ended", error=str(exc))
            # Paced: a failing watch must not spin; the acquire loop polls anyway.
            await self._clock.sleep(self.config.retry_period)
