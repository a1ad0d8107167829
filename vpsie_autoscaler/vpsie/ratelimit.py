"""Client-side rate limit: an adaptive token bucket on the injectable clock.

**The configured rate is a ceiling, not a pace.** VPSie documents no rate limit (the 100 requests/min
default is VPSie's own autoscaler's guess), so the client does not slow itself down on a guess: a full
bucket lets ``burst`` calls out back to back, and only VPSie's own signals lower the pace.

The bucket has the shape of ``golang.org/x/time/rate.Limiter.Wait`` (which VPSie's own autoscaler and
client-go's ``flowcontrol`` use): tokens refill continuously at the current rate up to the burst; a
caller takes one token or waits until one is due. Waiters are served in arrival order (one lock), so a
burst of reconciles cannot starve an earlier caller.

The current rate follows **AIMD** (additive increase, multiplicative decrease), the rule TCP congestion
control uses to find an unknown capacity (Chiu & Jain 1989, "Analysis of the Increase and Decrease
Algorithms for Congestion Avoidance in Computer Networks"; RFC 5681 §3.1):

- *multiplicative decrease* (:meth:`TokenBucket.throttle`): a 429, or any answer with ``Retry-After``,
  multiplies the current rate by ``decrease_factor`` (½), never below ``floor_per_minute``; the saved
  tokens are dropped and the burst allowance shrinks in proportion, so the next burst does not trip the
  limit again; and no token is handed out until the Retry-After has passed. Like TCP, which halves its
  window once per loss event rather than once per lost segment, only the first throttle answer of
  requests admitted at the current rate decreases it: the other requests of the same burst, already in
  flight, tell nothing new (their Retry-After still applies);
- *additive increase* (:meth:`TokenBucket.relax`): every successful answer adds ``increase_per_minute``
  back, up to the configured ceiling.

Everything runs on the injectable :class:`~vpsie_autoscaler.runtime.clock.Clock`, so tests are exact.
"""

from __future__ import annotations

import asyncio

from vpsie_autoscaler.runtime.clock import Clock

SECONDS_PER_MINUTE = 60.0
DEFAULT_DECREASE_FACTOR = 0.5  # TCP's halving (RFC 5681 §3.1)
DEFAULT_FLOOR_PER_MINUTE = 6.0  # one call every 10 s: a reconcile still moves while VPSie throttles
DEFAULT_INCREASE_FRACTION = 0.01  # per successful answer: 100 answers climb from the floor to the ceiling
MAX_BLOCK_SECONDS = 900.0  # a Retry-After further out than 15 min is a broken header, not a request
_EPSILON = 1e-9  # float slack: a token "due" at t must count as there at t


class TokenBucket:
    """At most ``per_minute`` requests per minute on average, at most ``burst`` back to back.

    ``per_minute`` is the ceiling; the current rate (:attr:`rate_per_minute`) drops below it after
    VPSie throttles the client and climbs back with each successful answer.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        clock: Clock,
        *,
        floor_per_minute: float = DEFAULT_FLOOR_PER_MINUTE,
        decrease_factor: float = DEFAULT_DECREASE_FACTOR,
        increase_per_minute: float | None = None,
    ) -> None:
        if per_minute <= 0:
            raise ValueError(f"rate limit must be positive, got {per_minute} requests/min")
        if burst < 1:
            raise ValueError(f"rate-limit burst must be at least 1, got {burst}")
        if floor_per_minute <= 0 or not 0 < decrease_factor < 1:
            raise ValueError(
                f"invalid rate-limit adaptation: floor {floor_per_minute}/min, factor {decrease_factor}"
            )
        self._ceiling = float(per_minute)
        self._floor = min(float(floor_per_minute), self._ceiling)
        self._factor = decrease_factor
        if increase_per_minute is None:
            increase_per_minute = self._ceiling * DEFAULT_INCREASE_FRACTION
        self._increase = increase_per_minute
        if self._increase <= 0:
            raise ValueError(f"rate-limit increase must be positive, got {self._increase} requests/min")
        self._per_minute = self._ceiling
        self._max_burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()
        self._blocked_until = self._last
        self._epoch = 0  # bumped by every decrease: which rate a request was admitted under
        self._lock = asyncio.Lock()

    # --- state ---------------------------------------------------------------------------------------

    @property
    def ceiling_per_minute(self) -> float:
        """The configured rate: the most the client ever sends."""
        return self._ceiling

    @property
    def rate_per_minute(self) -> float:
        """The current (effective) rate in requests per minute."""
        return self._per_minute

    @property
    def burst(self) -> float:
        """The current burst allowance: the configured burst scaled by rate / ceiling (at least 1)."""
        return max(1.0, self._max_burst * self._per_minute / self._ceiling)

    @property
    def epoch(self) -> int:
        """Changes with every decrease; give it back to :meth:`throttle` and :meth:`relax`."""
        return self._epoch

    @property
    def blocked_for(self) -> float:
        """Seconds until a token may be handed out again after a Retry-After (0 when not blocked)."""
        return max(0.0, self._blocked_until - self._clock.monotonic())

    @property
    def available(self) -> float:
        """Tokens available right now (for metrics and tests)."""
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock.monotonic()
        start = max(self._last, self._blocked_until)  # nothing accrues while VPSie asked us to wait
        if now > start:
            rate = self._per_minute / SECONDS_PER_MINUTE
            self._tokens = min(self.burst, self._tokens + (now - start) * rate)
        self._last = max(self._last, now)

    # --- callers -------------------------------------------------------------------------------------

    async def acquire(self) -> float:
        """Take one token, waiting for it if needed; returns how long the caller waited (seconds)."""
        started = self._clock.monotonic()
        async with self._lock:  # waiting behind earlier callers is waiting for the limiter too
            self._refill()
            while self._tokens < 1.0 - _EPSILON or self.blocked_for > 0:
                rate = self._per_minute / SECONDS_PER_MINUTE
                delay = self.blocked_for + max(0.0, 1.0 - self._tokens) / rate
                await self._clock.sleep(delay)
                self._refill()
            self._tokens -= 1.0
            return self._clock.monotonic() - started

    # --- feedback from VPSie -------------------------------------------------------------------------

    def throttle(self, retry_after: float | None = None, *, epoch: int | None = None) -> bool:
        """VPSie answered 429 or sent ``Retry-After``: slow down. Returns True if the rate was decreased.

        ``epoch`` is :attr:`epoch` as it was when the request was admitted; an answer to a request
        admitted before the last decrease does not decrease again. ``retry_after`` always applies.
        """
        self._refill()
        now = self._clock.monotonic()
        if retry_after is not None and retry_after > 0:
            self._blocked_until = max(self._blocked_until, now + min(retry_after, MAX_BLOCK_SECONDS))
        if epoch is not None and epoch != self._epoch:
            return False
        self._per_minute = max(self._floor, self._per_minute * self._factor)
        self._tokens = min(self._tokens, 0.0)
        self._epoch += 1
        return True

    def relax(self, *, epoch: int | None = None) -> None:
        """VPSie answered without throttling: add the increase back, up to the ceiling."""
        if epoch is not None and epoch != self._epoch:
            return
        self._refill()
        self._per_minute = min(self._ceiling, self._per_minute + self._increase)
