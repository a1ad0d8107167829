"""Rate limiter (a ceiling that adapts to VPSie, AIMD), circuit breaker and back-off on the fake clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.support.vpsie import drive
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.breaker import BreakerState, CircuitBreaker
from vpsie_autoscaler.vpsie.client import (
    DEFAULT_RATE_LIMIT_BURST,
    DEFAULT_RATE_LIMIT_PER_MINUTE,
    VPSieClient,
    VPSieClientConfig,
)
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


# --- the rate limit is a ceiling, not a pace (AIMD) ------------------------------------------------


def default_bucket(clock: FakeClock) -> TokenBucket:
    return TokenBucket(DEFAULT_RATE_LIMIT_PER_MINUTE, DEFAULT_RATE_LIMIT_BURST, clock)


async def test_defaults_let_a_50_node_scale_up_and_its_reads_out_within_5_seconds() -> None:
    clock = FakeClock()
    bucket = default_bucket(clock)
    started = clock.monotonic()
    calls = [asyncio.ensure_future(bucket.acquire()) for _ in range(50 + 8)]  # 50 add-node + 8 reads
    await asyncio.sleep(0)
    await clock.advance(5.0)
    assert all(c.done() for c in calls)
    assert max(c.result() for c in calls) == 0.0  # none even waited
    assert clock.monotonic() - started == 5.0
    # And within 5 s the refill lets ~8 more through: 60 + 100/min x 5 s.
    more = [asyncio.ensure_future(bucket.acquire()) for _ in range(10)]
    await asyncio.sleep(0)
    await clock.advance(5.0)
    assert sum(c.done() for c in more) == 10


async def test_a_429_halves_the_rate_drops_saved_tokens_and_shrinks_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=100, burst=60, clock=clock)
    assert bucket.throttle(epoch=bucket.epoch)
    assert bucket.rate_per_minute == 50
    assert bucket.burst == 30
    assert bucket.available == 0
    await clock.advance(600)  # idle for long: the bucket refills to the shrunken burst only
    assert bucket.available == pytest.approx(30)


async def test_retry_after_hands_out_no_token_until_it_has_passed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=10, clock=clock)
    bucket.throttle(retry_after=5, epoch=bucket.epoch)  # now 30/min: one token per 2 s
    waiter = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    await clock.advance(6.9)
    assert not waiter.done()  # 5 s blocked, then 2 s for the first token
    await clock.advance(0.1)
    assert waiter.done()
    assert waiter.result() == pytest.approx(7.0)


async def test_one_decrease_per_burst_of_throttled_answers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=100, burst=60, clock=clock)
    admitted = bucket.epoch  # ten requests admitted together, all answered 429
    assert bucket.throttle(retry_after=1, epoch=admitted)
    for _ in range(9):
        assert not bucket.throttle(retry_after=3, epoch=admitted)
    assert bucket.rate_per_minute == 50
    assert bucket.blocked_for == 3  # every Retry-After still counts
    assert bucket.throttle(epoch=bucket.epoch)  # a request admitted after the decrease: again
    assert bucket.rate_per_minute == 25


def test_repeated_throttles_stop_at_the_floor() -> None:
    bucket = TokenBucket(per_minute=100, burst=60, clock=FakeClock(), floor_per_minute=6)
    for _ in range(20):
        bucket.throttle()
    assert bucket.rate_per_minute == 6
    assert TokenBucket(per_minute=2, burst=1, clock=FakeClock()).ceiling_per_minute == 2  # floor <= ceiling
    low = TokenBucket(per_minute=2, burst=1, clock=FakeClock())
    low.throttle()
    assert low.rate_per_minute == 2


def test_successes_climb_back_additively_to_the_ceiling_only() -> None:
    bucket = TokenBucket(per_minute=100, burst=60, clock=FakeClock())
    bucket.throttle()
    stale = bucket.epoch - 1
    bucket.relax(epoch=stale)  # answers to requests admitted before the decrease say nothing
    assert bucket.rate_per_minute == 50
    for n in range(1, 11):
        bucket.relax(epoch=bucket.epoch)
        assert bucket.rate_per_minute == pytest.approx(50 + n)  # +1 % of the ceiling per answer
    for _ in range(100):
        bucket.relax()
    assert bucket.rate_per_minute == 100


def test_nonsense_adaptation_is_refused() -> None:
    with pytest.raises(ValueError, match="adaptation"):
        TokenBucket(per_minute=10, burst=1, clock=FakeClock(), decrease_factor=1.0)
    with pytest.raises(ValueError, match="increase"):
        TokenBucket(per_minute=10, burst=1, clock=FakeClock(), increase_per_minute=0)


async def test_a_cancelled_waiter_takes_no_token_and_others_go_on() -> None:
    clock = FakeClock()
    bucket = TokenBucket(per_minute=60, burst=1, clock=clock)
    await bucket.acquire()
    first = asyncio.ensure_future(bucket.acquire())
    second = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    first.cancel()
    await clock.advance(1.0)
    assert second.done()


# --- the client feeds the limiter ------------------------------------------------------------------


class Answers:
    """A local VPSie stand-in: answers each request with the next (status, headers), then 200s."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.seen: list[float] = []
        self.clock: FakeClock | None = None

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        assert self.clock is not None
        self.seen.append(self.clock.monotonic())
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = b'{"error": false, "data": []}' if status < 400 else b'{"error": true, "message": "x"}'
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)


@pytest.fixture
async def answers() -> AsyncIterator[tuple[Answers, str]]:
    fake = Answers()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def client_for(url: str, clock: FakeClock, **overrides: Any) -> VPSieClient:
    settings: dict[str, Any] = {"base_url": url, "api_token": "t0ken", **overrides}
    return VPSieClient(
        VPSieClientConfig(**settings), clock=clock, rng=random.Random(1), registry=CollectorRegistry()
    )


def gauge(client: VPSieClient) -> float:
    return float(client.metrics.rate_limit._value.get())


async def test_client_defaults_send_50_add_nodes_and_reads_without_waiting(
    answers: tuple[Answers, str],
) -> None:
    fake, url = answers
    clock = FakeClock()
    fake.clock = clock
    async with client_for(url, clock) as client:
        assert (client.config.rate_limit_per_minute, client.config.rate_limit_burst) == (100, 60)
        reads = [client.list_datacenters() for _ in range(5)]
        adds = [client.add_node("c-1", 7) for _ in range(50)]
        await asyncio.gather(*reads, *adds)
        assert len(fake.seen) == 55
        assert set(fake.seen) == {clock.monotonic()}  # the client clock never moved: nothing waited
        assert client.metrics.rate_limited_wait._value.get() == 0
        assert gauge(client) == 100


async def test_a_429_with_retry_after_slows_the_client_and_successes_speed_it_up(
    answers: tuple[Answers, str],
) -> None:
    fake, url = answers
    fake.answers = [(429, {"Retry-After": "5"})]
    clock = FakeClock()
    fake.clock = clock
    async with client_for(url, clock) as client:
        with pytest.raises(RateLimited):
            await client.add_node("c-1", 7)  # not idempotent: handed to the caller, not retried
        assert gauge(client) == 50
        assert client.rate_limiter.blocked_for == 5
        throttled_at = clock.monotonic()
        await drive(clock, client.add_node("c-1", 7), step=0.1)
        # 5 s of Retry-After, then 1.2 s for one token at 50/min.
        assert fake.seen[-1] - throttled_at == pytest.approx(6.2, abs=0.1)
        assert gauge(client) == 51
        for _ in range(60):
            await drive(clock, client.list_datacenters(), step=0.1)
        assert gauge(client) == 100  # back at the ceiling, never above


async def test_any_retry_after_slows_the_client_and_a_5xx_does_not_speed_it_up(
    answers: tuple[Answers, str],
) -> None:
    fake, url = answers
    fake.answers = [(503, {"Retry-After": "2"}), (502, {})]
    clock = FakeClock()
    fake.clock = clock
    async with client_for(url, clock) as client:
        assert await drive(clock, client.list_datacenters(), step=0.1) == []  # retried: 503, 502, 200
        assert len(fake.seen) == 3
        assert gauge(client) == 51  # halved by the 503's Retry-After, +1 for the 200 only
