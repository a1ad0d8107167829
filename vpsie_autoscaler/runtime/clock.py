"""An injectable clock, so every timer in the product can be tested without waiting.

Upstream analogue: ``k8s.io/utils/clock`` (``Clock``/``PassiveClock`` with a ``FakeClock`` for
tests). Code asks the clock for ``monotonic()`` when it measures durations (leases, back-off, rate
limits: immune to wall-clock jumps, as client-go's leader election insists) and for ``now()`` when it
writes a timestamp a human or another process will read (status, Events, annotations).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the runtime and the controllers need to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""

    def now(self) -> datetime:
        """The current wall-clock time, timezone-aware UTC."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` of this clock's time."""


class RealClock:
    """The system clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when a test calls :meth:`advance`.

    Sleepers wake in deadline order when the clock passes their deadline, and get a chance to run
    before ``advance`` returns, so a test can assert on the effects right after advancing.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0  # arbitrary, non-zero: code must never assume monotonic() starts at 0
        self._wall = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    @property
    def sleepers(self) -> int:
        """How many tasks are sleeping on this clock (lets a test wait until a loop is parked)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline has passed, in order."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._set(deadline)
            if not fut.done():
                fut.set_result(None)
            await _let_others_run()
        self._set(target)
        await _let_others_run()

    def _set(self, mono: float) -> None:
        self._wall += timedelta(seconds=mono - self._mono)
        self._mono = mono


async def _let_others_run() -> None:
    # A few loop turns so woken tasks reach their next await (they may chain a couple of awaits).
    for _ in range(5):
        await asyncio.sleep(0)
