"""Work queues with client-go's semantics (``k8s.io/client-go/util/workqueue``).

The invariants, reproduced exactly (``queue.go``):

- an item is *dirty* when it needs processing and *processing* between :meth:`Queue.get` and
  :meth:`Queue.done`; ``add`` of a dirty item is a no-op (dedup);
- ``add`` of an item that is being processed only marks it dirty; ``done`` puts it back in the FIFO.
  This is what guarantees **one key is never reconciled twice at once**, whatever the worker count;
- after ``shutdown`` adds are ignored, ``get`` still hands out what is queued and raises
  :class:`ShutDown` once the queue is empty; ``shutdown_with_drain`` also waits for in-flight items.

``add_after`` (``delaying_queue.go``) keeps the **earliest** ready time of an item that is already
waiting. ``add_rate_limited`` asks a :class:`RateLimiter` (``default_rate_limiters.go``) for the delay.

asyncio differences: no locks (single thread); ``add``/``done``/``forget`` are plain methods so event
handlers can call them; only :meth:`Queue.get` awaits. Time comes from the injectable clock.

Since controller-runtime v0.23 controllers default to a per-item exponential limiter only (no global
token bucket); :func:`default_controller_rate_limiter` follows that and makes the bucket optional.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry

from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.metrics import workqueue_metrics

T = TypeVar("T", bound=Hashable)

# Per-item exponential back-off of controller-runtime's default limiter: 5 ms, 10 ms, 20 ms ...
# capped at 1000 s (reached after ~18 consecutive failures).
DEFAULT_BASE_DELAY_SECONDS = 0.005
DEFAULT_MAX_DELAY_SECONDS = 1000.0
# client-go's overall token bucket (DefaultControllerRateLimiter): 10 qps with a burst of 100.
DEFAULT_BUCKET_QPS = 10.0
DEFAULT_BUCKET_BURST = 100
# The delaying queue's waiting loop wakes at least this often even with nothing due (client-go's
# heartbeat: insurance against a missed wake-up).
MAX_WAIT_SECONDS = 10.0
# 2**exp overflows floats long before this; any exponent above it is at the cap anyway.
MAX_BACKOFF_EXPONENT = 62


class ShutDown(Exception):
    """Raised by :meth:`Queue.get` once the queue is shut down and empty."""


class RateLimiter(Protocol[T]):  # type: ignore[misc]
    """How long to wait before retrying an item (client-go ``RateLimiter``)."""

    def when(self, item: T) -> float:
        """The delay before ``item`` may be retried; records one more failure."""

    def forget(self, item: T) -> None:
        """Forget ``item``'s failures (it succeeded)."""

    def num_requeues(self, item: T) -> int:
        """How many failures are recorded for ``item``."""


class ItemExponentialFailureRateLimiter(Generic[T]):
    """``base * 2**failures``, capped at ``max_delay``; one counter per item."""

    def __init__(
        self, base_delay: float = DEFAULT_BASE_DELAY_SECONDS, max_delay: float = DEFAULT_MAX_DELAY_SECONDS
    ) -> None:
        if base_delay <= 0 or max_delay < base_delay:
            raise ValueError("need 0 < base_delay <= max_delay")
        self._base = base_delay
        self._max = max_delay
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        exp = self._failures.get(item, 0)
        self._failures[item] = exp + 1
        if exp > MAX_BACKOFF_EXPONENT:
            return self._max
        return min(self._base * 2.0**exp, self._max)

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[T]):
    """A token bucket over *all* items (``golang.org/x/time/rate`` reservations).

    ``when`` reserves a token even if it is only available in the future, so delays accumulate under
    a burst: the bucket's token count may go negative. It never counts per item.
    """

    def __init__(
        self,
        qps: float = DEFAULT_BUCKET_QPS,
        burst: int = DEFAULT_BUCKET_BURST,
        *,
        clock: Clock | None = None,
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("need qps > 0 and burst >= 1")
        self._qps = qps
        self._burst = float(burst)
        self._clock = clock or RealClock()
        self._tokens = float(burst)
        self._last = self._clock.monotonic()

    def when(self, item: T) -> float:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._qps)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._qps

    def forget(self, item: T) -> None:
        """Per-item memory does not exist here."""

    def num_requeues(self, item: T) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """Asks every limiter (each updates its state) and returns the longest delay."""

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("need at least one limiter")
        self._limiters = limiters

    def when(self, item: T) -> float:
        return max(limiter.when(item) for limiter in self._limiters)

    def forget(self, item: T) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(*, bucket: bool = False, clock: Clock | None = None) -> RateLimiter[T]:
    """controller-runtime's default: per-item 5 ms..1000 s; ``bucket=True`` adds client-go's 10 qps/100."""
    per_item: ItemExponentialFailureRateLimiter[T] = ItemExponentialFailureRateLimiter()
    if not bucket:
        return per_item
    return MaxOfRateLimiter(per_item, BucketRateLimiter(clock=clock))


class Queue(Generic[T]):
    """The basic FIFO with dirty/processing sets (client-go ``Type``)."""

    def __init__(
        self, name: str = "", *, clock: Clock | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        self.name = name
        self._clock = clock or RealClock()
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._shutting_down = False
        self._drain = False
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()
        # metrics bookkeeping (client-go defaultQueueMetrics)
        self._added_at: dict[T, float] = {}
        self._started_at: dict[T, float] = {}
        m = workqueue_metrics(registry if registry is not None else CollectorRegistry())
        self._m_depth = m.depth.labels(name, name)
        self._m_adds = m.adds.labels(name, name)
        self._m_queue_latency = m.queue_duration.labels(name, name)
        self._m_work = m.work_duration.labels(name, name)
        self._m_retries = m.retries.labels(name, name)
        m.unfinished_work.labels(name, name).set_function(self._unfinished_seconds)
        m.longest_running.labels(name, name).set_function(self._longest_running_seconds)

    def add(self, item: T) -> None:
        """Mark ``item`` as needing processing (no-op when dirty already or shutting down)."""
        if self._shutting_down or item in self._dirty:
            return
        self._m_adds.inc()
        self._added_at.setdefault(item, self._clock.monotonic())
        self._dirty.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._m_depth.inc()
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._queue)

    def len(self) -> int:
        """Items waiting in the FIFO (client-go ``Len``)."""
        return len(self._queue)

    async def get(self) -> T:
        """Wait for the next item and mark it processing.

        Raises :class:`ShutDown` once shut down and empty.
        """
        while not self._queue and not self._shutting_down:
            self._wakeup.clear()
            await self._wakeup.wait()
        if not self._queue:
            raise ShutDown(self.name)
        item = self._queue.popleft()
        self._m_depth.dec()
        now = self._clock.monotonic()
        added = self._added_at.pop(item, None)
        if added is not None:
            self._m_queue_latency.observe(now - added)
        self._started_at[item] = now
        self._processing.add(item)
        self._dirty.discard(item)
        if self._queue:
            self._wakeup.set()  # more work: let the next waiter run too
        return item

    def done(self, item: T) -> None:
        """Processing of ``item`` finished; re-queue it if it was added meanwhile."""
        started = self._started_at.pop(item, None)
        if started is not None:
            self._m_work.observe(self._clock.monotonic() - started)
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._m_depth.inc()
            self._wakeup.set()
        elif not self._processing:
            self._drained.set()

    def shutdown(self) -> None:
        """Stop accepting adds and wake every waiter; queued items can still be taken."""
        self._shutting_down = True
        self._wakeup.set()

    async def shutdown_with_drain(self) -> None:
        """Shut down, then wait until every in-flight item is :meth:`done`."""
        self._drain = True
        self.shutdown()
        while self._processing:
            self._drained.clear()
            await self._drained.wait()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def is_processing(self, item: T) -> bool:
        return item in self._processing

    def _unfinished_seconds(self) -> float:
        now = self._clock.monotonic()
        return sum(now - t for t in self._started_at.values())

    def _longest_running_seconds(self) -> float:
        if not self._started_at:
            return 0.0
        return self._clock.monotonic() - min(self._started_at.values())


class DelayingQueue(Queue[T]):
    """A queue with ``add_after``: items wait in a heap until their ready time (``delaying_queue.go``)."""

    def __init__(
        self, name: str = "", *, clock: Clock | None = None, registry: CollectorRegistry | None = None
    ) -> None:
        super().__init__(name, clock=clock, registry=registry)
        self._heap: list[tuple[float, int, T]] = []
        self._ready_at: dict[T, float] = {}
        self._seq = itertools.count()
        self._rearm = asyncio.Event()
        self._waiter: asyncio.Task[None] | None = None

    def add_after(self, item: T, delay: float) -> None:
        """Add ``item`` after ``delay`` seconds; an earlier pending time of the same item wins."""
        if self._shutting_down:
            return
        self._m_retries.inc()
        if delay <= 0:
            self.add(item)
            return
        ready = self._clock.monotonic() + delay
        current = self._ready_at.get(item)
        if current is not None and current <= ready:
            return
        self._ready_at[item] = ready
        heapq.heappush(self._heap, (ready, next(self._seq), item))
        self._ensure_waiter()
        self._rearm.set()

    def waiting(self) -> int:
        """Items parked until a later ready time."""
        return len(self._ready_at)

    def shutdown(self) -> None:
        super().shutdown()
        self._rearm.set()
        if self._waiter is not None:
            self._waiter.cancel()

    def _ensure_waiter(self) -> None:
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.get_running_loop().create_task(
                self._waiting_loop(), name=f"workqueue-{self.name}-waiting"
            )

    def _pop_ready(self) -> float:
        """Move due items into the queue; returns seconds until the next one is due."""
        now = self._clock.monotonic()
        while self._heap:
            ready, _, item = self._heap[0]
            if self._ready_at.get(item) != ready:  # superseded by an earlier add_after
                heapq.heappop(self._heap)
                continue
            if ready > now:
                return min(ready - now, MAX_WAIT_SECONDS)
            heapq.heappop(self._heap)
            del self._ready_at[item]
            self.add(item)
        return MAX_WAIT_SECONDS

    async def _sleep_until(self, deadline: float) -> None:
        # The remaining time is computed when the sleep really starts: time may have moved since
        # the deadline was chosen (the task starts a loop turn later).
        await self._clock.sleep(deadline - self._clock.monotonic())

    async def _waiting_loop(self) -> None:
        while not self._shutting_down:
            deadline = self._clock.monotonic() + self._pop_ready()
            self._rearm.clear()
            sleeper = asyncio.ensure_future(self._sleep_until(deadline))
            rearm = asyncio.ensure_future(self._rearm.wait())
            try:
                await asyncio.wait({sleeper, rearm}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in (sleeper, rearm):
                    fut.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fut


class RateLimitingQueue(DelayingQueue[T]):
    """The controller's queue: ``add_rate_limited`` = ``add_after(item, limiter.when(item))``."""

    def __init__(
        self,
        name: str = "",
        rate_limiter: RateLimiter[T] | None = None,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(name, clock=clock, registry=registry)
        self._limiter: RateLimiter[T] = rate_limiter or ItemExponentialFailureRateLimiter()

    def add_rate_limited(self, item: T) -> None:
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: T) -> None:
        """Reset the limiter's memory of ``item`` (it does not remove ``item`` from the queue)."""
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)
