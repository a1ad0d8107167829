"""Client-side rate limit: a token bucket on the injectable clock.

Same shape as ``golang.org/x/time/rate.Limiter.Wait`` (which VPSie's own autoscaler and client-go's
``flowcontrol`` use): tokens refill continuously at ``rate`` per second up to ``burst``; a caller takes
one token or waits until one is due. Waiters are served in arrival order (one lock), so a burst of
reconciles cannot starve an earlier caller.
"""

from __future__ import annotations

import asyncio

from vpsie_autoscaler.runtime.clock import Clock

SECONDS_PER_MINUTE = 60.0


class TokenBucket:
    """``per_minute`` requests per minute on average, at most ``burst`` back to back."""

    def __init__(self, per_minute: float, burst: int, clock: Clock) -> None:
        if per_minute <= 0:
            raise ValueError(f"rate limit must be positive, got {per_minute} requests/min")
        if burst < 1:
            raise ValueError(f"rate-limit burst must be at least 1, got {burst}")
        self._rate = per_minute / SECONDS_PER_MINUTE
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now

    @property
    def available(self) -> float:
        """Tokens available right now (for metrics and tests)."""
        self._refill()
        return self._tokens

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns how long the caller waited (seconds)."""
        async with self._lock:
            waited = 0.0
            self._refill()
            while self._tokens < 1.0:
                delay = (1.0 - self._tokens) / self._rate
                await self._clock.sleep(delay)
                waited += delay
                self._refill()
            self._tokens -= 1.0
            return waited
