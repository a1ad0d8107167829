"""Rate limiter, circuit breaker and back-off schedule on the fake clock."""

from __future__ import annotations

import asyncio
import random

import pytest

from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.breaker import BreakerState, CircuitBreaker
from vpsie_autoscaler.vpsie.errors import CircuitOpen, RateLimited, ServerError, Unauthorized, VPSieTimeout
from vpsie_autoscaler.vpsie.ratelimit import TokenBucket
from vpsie_autoscaler.vpsie.retry import RetryPolicy, is_retryable


async def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=3, clock=clock)
    for _ in range(3):
        assert await bucket.acquire() == 0.0
    waiter = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)  # let the waiter find the bucket empty
    await clock.advance(0.5)
    assert not waiter.done()
    await clock.advance(0.5)
    assert waiter.done()
    assert waiter.result() == pytest.approx(1.0)


async def test_bucket_serves_waiters_in_arrival_order() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=1, clock=clock)
    await bucket.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    tasks = [asyncio.ensure_future(take(i)) for i in range(3)]
    for _ in range(3):
        await clock.advance(1.0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


def test_bucket_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(per_minute=0, burst=1, clock=FakeClock())
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(per_minute=10, burst=0, clock=FakeClock())


def test_breaker_opens_after_consecutive_failures_and_refuses_calls() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock, failure_threshold=3, open_seconds=30)
    for _ in range(3):
        breaker.before_call("op")
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as exc:
        breaker.before_call("op")
    assert exc.value.retry_after == pytest.approx(30)


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(FakeClock(), failure_threshold=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


async def test_half_open_admits_one_probe_and_closes_on_success() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock, failure_threshold=1, open_seconds=10)
    breaker.record_failure()
    await clock.advance(10)
    assert breaker.state.value == BreakerState.HALF_OPEN.value
    breaker.before_call("probe")
    with pytest.raises(CircuitOpen):
        breaker.before_call("second")
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call("after")


async def test_failed_probe_reopens_the_circuit() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock, failure_threshold=1, open_seconds=10)
    breaker.record_failure()
    await clock.advance(10)
    breaker.before_call("probe")
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_call("again")


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    policy = RetryPolicy(initial=0.5, factor=2, maximum=3, jitter=0.2)
    rng = random.Random(3)
    delays = [policy.delay(n, rng) for n in range(5)]
    for n, d in enumerate(delays):
        base = min(3.0, 0.5 * 2**n)
        assert base * 0.8 <= d <= base * 1.2


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    policy = RetryPolicy()
    assert [policy.delay(n, random.Random(9)) for n in range(3)] == [
        policy.delay(n, random.Random(9)) for n in range(3)
    ]


def test_retry_after_wins_when_longer() -> None:
    assert RetryPolicy(initial=0.1, jitter=0).delay(0, random.Random(1), retry_after=7) == 7


def test_only_transient_failures_are_retryable() -> None:
    assert is_retryable(ServerError("x"))
    assert is_retryable(VPSieTimeout("x"))
    assert is_retryable(RateLimited("x"))
    assert not is_retryable(Unauthorized("x"))


def test_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(factor=0.5)
