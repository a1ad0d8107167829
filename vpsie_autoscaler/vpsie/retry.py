"""Exponential back-off with jitter for idempotent VPSie calls.

The schedule is client-go's ``wait.Backoff`` (initial, factor, cap, jitter): attempt *n* waits
``min(cap, initial * factor**n)`` scaled by a random factor in ``[1 - jitter, 1 + jitter]``. A server
``Retry-After`` wins when it asks for longer. The random source is injected so tests are exact.

Which calls may be retried is decided by the client: reads and targeted deletes are idempotent; a
create or "add a node" is never blindly repeated (VPSie has no idempotency key, so a retry after a
timeout could create a second instance; the caller reconciles by hostname instead).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from vpsie_autoscaler.vpsie.errors import (
    RateLimited,
    ServerError,
    VPSieError,
    VPSieTimeout,
)

DEFAULT_MAX_RETRIES = 3  # four attempts in all: rides out a backend restart without stalling a reconcile
DEFAULT_INITIAL_SECONDS = 0.5
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_SECONDS = 30.0
DEFAULT_JITTER = 0.2
# A Retry-After longer than this is not waited for inside one call: the caller gets RateLimited and its
# own (much longer) back-off takes over.
DEFAULT_MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = DEFAULT_MAX_RETRIES
    initial: float = DEFAULT_INITIAL_SECONDS
    factor: float = DEFAULT_FACTOR
    maximum: float = DEFAULT_MAX_SECONDS
    jitter: float = DEFAULT_JITTER
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER_SECONDS

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.initial < 0 or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor**retry)
        jittered = base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))
        if retry_after is not None:
            return max(jittered, retry_after)
        return jittered


def is_retryable(exc: VPSieError) -> bool:
    """5xx, HTML error pages, broken connections, timeouts and 429 may succeed when repeated."""
    return isinstance(exc, ServerError | VPSieTimeout | RateLimited)
