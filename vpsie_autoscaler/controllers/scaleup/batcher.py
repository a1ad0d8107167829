"""Batching of unschedulable-pod notifications: wait until the burst is over, but not forever.

A Deployment scaled to 30 replicas produces 30 Unschedulable pods within a few hundred
milliseconds; planning after the first one would grow for 1 pod, then for 29 more (and a second
group could be chosen for the rest). Karpenter's provisioner batches the same way (``BATCH_IDLE_DURATION``
1 s, ``BATCH_MAX_DURATION`` 10 s): a batch closes when no new pod arrived for :data:`IDLE_SECONDS`,
or :data:`MAX_SECONDS` after its first pod, whichever comes first, so a steady trickle of pods cannot
postpone the decision indefinitely. All waiting is on the injectable clock (tests use ``FakeClock``).
"""

from __future__ import annotations

import asyncio
from typing import Final

from vpsie_autoscaler.runtime.clock import Clock

IDLE_SECONDS: Final = 1.0
"""Close the batch after this long without a new unschedulable pod (Karpenter's batch idle duration)."""
MAX_SECONDS: Final = 10.0
"""Close the batch at the latest this long after its first pod (Karpenter's batch max duration)."""


class Batcher:
    """Collects arrivals (:meth:`add`, synchronous, safe from informer handlers) and releases one
    :meth:`wait` per batch."""

    def __init__(self, clock: Clock, *, idle: float = IDLE_SECONDS, max_wait: float = MAX_SECONDS) -> None:
        if idle <= 0 or max_wait < idle:
            raise ValueError(f"batch windows must satisfy 0 < idle ({idle}) <= max ({max_wait})")
        self._clock = clock
        self.idle = idle
        self.max_wait = max_wait
        self._first: float | None = None
        self._last: float | None = None
        self._arrivals = 0
        self._event = asyncio.Event()

    @property
    def open(self) -> bool:
        """A batch has started and not been released yet."""
        return self._first is not None

    def add(self, count: int = 1) -> None:
        """Note an arrival: opens a batch or extends its idle window."""
        now = self._clock.monotonic()
        if self._first is None:
            self._first = now
        self._last = now
        self._arrivals += count
        self._event.set()

    def due(self) -> float | None:
        """Monotonic time at which the open batch closes (None when no batch is open)."""
        if self._first is None or self._last is None:
            return None
        return min(self._last + self.idle, self._first + self.max_wait)

    async def wait(self) -> int:
        """Wait for a batch to open and close; return how many arrivals it held."""
        while True:
            await self._event.wait()
            due = self.due()
            if due is None:  # pragma: no cover - the event is only set together with _first
                self._event.clear()
                continue
            now = self._clock.monotonic()
            if now >= due:
                arrivals = self._arrivals
                self._first = self._last = None
                self._arrivals = 0
                self._event.clear()
                return arrivals
            await self._clock.sleep(due - now)
