"""A circuit breaker that stops hammering VPSie while it is failing.

States follow the classic pattern (and ``sony/gobreaker``, which VPSie's Go client imitates):

- *closed*: calls go through; ``failure_threshold`` consecutive failures open the circuit;
- *open*: calls are refused at once with :class:`~vpsie_autoscaler.vpsie.errors.CircuitOpen` for
  ``open_seconds``;
- *half-open*: one probe call is let through; success closes the circuit, failure re-opens it.

Unlike the client of VPSie's Go autoscaler, whose breaker only wrapped the transport (so HTTP 5xx
never opened it), the client reports every 5xx, timeout, transport error and non-JSON answer as a
failure. 4xx answers and business-rule errors are successes from the breaker's point of view: the
server is healthy.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.vpsie.errors import CircuitOpen

DEFAULT_FAILURE_THRESHOLD = 5  # consecutive failures; VPSie's Go client uses the same number
DEFAULT_OPEN_SECONDS = 30.0  # long enough for a rolling restart of an API backend


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        clock: Clock,
        *,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        open_seconds: float = DEFAULT_OPEN_SECONDS,
        on_transition: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        """``on_transition(old, new)`` is told every change of state (metrics); the move from open
        to half-open is seen when the first call after ``open_seconds`` arrives."""
        if failure_threshold < 1:
            raise ValueError(f"breaker failure threshold must be at least 1, got {failure_threshold}")
        self._clock = clock
        self._threshold = failure_threshold
        self._open_seconds = open_seconds
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._on_transition = on_transition

    def _set(self, state: BreakerState) -> None:
        old, self._state = self._state, state
        if old is not state and self._on_transition is not None:
            self._on_transition(old, state)

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._remaining() <= 0:
            return BreakerState.HALF_OPEN
        return self._state

    def _remaining(self) -> float:
        return self._opened_at + self._open_seconds - self._clock.monotonic()

    def before_call(self, operation: str) -> None:
        """Raise :class:`CircuitOpen` if the call must not go out now; otherwise admit it."""
        if self._state is BreakerState.OPEN:
            remaining = self._remaining()
            if remaining > 0:
                raise CircuitOpen(
                    f"VPSie API circuit open after {self._failures} consecutive failures",
                    retry_after=remaining,
                    operation=operation,
                )
            self._set(BreakerState.HALF_OPEN)
        if self._state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                raise CircuitOpen(
                    "VPSie API circuit half-open: a probe call is in flight",
                    retry_after=0.0,
                    operation=operation,
                )
            self._probe_in_flight = True

    def record_success(self) -> None:
        self._set(BreakerState.CLOSED)
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._set(BreakerState.OPEN)
            self._opened_at = self._clock.monotonic()
        self._probe_in_flight = False

    def record_neutral(self) -> None:
        """A call ended without saying anything about the server's health (e.g. cancelled)."""
        self._probe_in_flight = False
