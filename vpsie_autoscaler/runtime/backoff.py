"""Exponential back-off with jitter and a reset after a healthy period.

Upstream analogue: client-go ``wait.Backoff`` driven by ``exponentialBackoffManagerImpl``: each
``next()`` returns ``d + rand * jitter * d`` and doubles ``d`` up to ``cap``; if no back-off was
needed for ``reset_after`` seconds the next one starts from ``initial`` again.
"""

from __future__ import annotations

import random

from vpsie_autoscaler.runtime.clock import Clock


class ExponentialBackoff:
    def __init__(
        self,
        *,
        initial: float,
        cap: float,
        clock: Clock,
        factor: float = 2.0,
        jitter: float = 1.0,
        reset_after: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or cap < initial or factor < 1 or jitter < 0:
            raise ValueError("need 0 < initial <= cap, factor >= 1, jitter >= 0")
        self._initial = initial
        self._cap = cap
        self._factor = factor
        self._jitter = jitter
        self._reset_after = reset_after
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._current = initial
        self._last: float | None = None

    def next(self) -> float:
        """The next delay (and advance the schedule)."""
        now = self._clock.monotonic()
        if self._reset_after is not None and self._last is not None and now - self._last > self._reset_after:
            self._current = self._initial
        self._last = now
        base = self._current
        self._current = min(self._current * self._factor, self._cap)
        return base + self._rng.random() * self._jitter * base

    def reset(self) -> None:
        self._current = self._initial
        self._last = None
