"""Work queue invariants from client-go (runtime-semantics §1.4 and the §3.6 checklist)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    Queue,
    RateLimiter,
    RateLimitingQueue,
    ShutDown,
    default_controller_rate_limiter,
)


async def _drain_ready(q: Queue[str]) -> list[str]:
    out = []
    while len(q):
        out.append(await q.get())
    return out


async def test_duplicate_adds_collapse() -> None:
    q: Queue[str] = Queue("t")
    for item in ["a", "b", "a", "a", "b"]:
        q.add(item)
    assert len(q) == 2
    assert await _drain_ready(q) == ["a", "b"]


async def test_an_add_during_processing_is_requeued_exactly_once_on_done() -> None:
    q: Queue[str] = Queue("t")
    q.add("a")
    item = await q.get()
    q.add("a")
    q.add("a")
    assert len(q) == 0, "an item being processed must not be handed out again"
    q.done(item)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    assert len(q) == 0


async def test_two_workers_never_hold_the_same_key() -> None:
    q: Queue[int] = Queue("t")
    holding: set[int] = set()
    overlaps = 0
    processed = 0

    async def worker() -> None:
        nonlocal overlaps, processed
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in holding:
                overlaps += 1
            holding.add(key)
            await asyncio.sleep(0)
            q.add(key % 3)  # re-add keys while they are held
            await asyncio.sleep(0)
            holding.discard(key)
            processed += 1
            q.done(key)
            if processed > 200:
                q.shutdown()

    for k in range(3):
        q.add(k)
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(4))), timeout=10)
    assert overlaps == 0
    assert processed > 200


async def test_adds_after_shutdown_are_ignored_and_get_raises_when_empty() -> None:
    q: Queue[str] = Queue("t")
    q.add("a")
    q.shutdown()
    q.add("b")
    assert await q.get() == "a", "items queued before shutdown are still handed out"
    with pytest.raises(ShutDown):
        await q.get()


async def test_shutdown_wakes_blocked_getters() -> None:
    q: Queue[str] = Queue("t")
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(getter, timeout=5)


async def test_shutdown_with_drain_waits_for_in_flight_items() -> None:
    q: Queue[str] = Queue("t")
    q.add("a")
    item = await q.get()
    drain = asyncio.create_task(q.shutdown_with_drain())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not drain.done()
    q.done(item)
    await asyncio.wait_for(drain, timeout=5)


async def test_add_after_delivers_when_due_and_keeps_the_earliest_time() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue("t", clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 3)  # earlier wins
    q.add_after("a", 20)  # later is ignored
    await clock.advance(0)
    assert len(q) == 0
    await clock.advance(2.9)
    assert len(q) == 0
    await clock.advance(0.2)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    await clock.advance(30)
    assert len(q) == 0, "superseded later times must not deliver the item again"
    q.shutdown()


async def test_add_after_with_no_delay_is_a_plain_add() -> None:
    q: RateLimitingQueue[str] = RateLimitingQueue("t", clock=FakeClock())
    q.add_after("a", 0)
    assert len(q) == 1


async def test_items_become_ready_in_time_order() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue("t", clock=clock)
    q.add_after("late", 5)
    q.add_after("early", 1)
    await clock.advance(6)
    assert await _drain_ready(q) == ["early", "late"]
    q.shutdown()


def test_exponential_limiter_doubles_from_5ms_and_caps_at_1000s() -> None:
    limiter: ItemExponentialFailureRateLimiter[str] = ItemExponentialFailureRateLimiter()
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert max(delays) == 1000.0
    assert delays[-1] == 1000.0
    assert limiter.num_requeues("a") == 20
    assert limiter.when("b") == 0.005, "items are counted separately"
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005
    for _ in range(200):
        assert limiter.when("c") <= 1000.0


def test_bucket_limiter_delays_the_101st_immediate_retry_by_a_tenth_of_a_second() -> None:
    clock = FakeClock()
    bucket: BucketRateLimiter[int] = BucketRateLimiter(clock=clock)
    assert all(bucket.when(i) == 0 for i in range(100))
    assert bucket.when(100) == pytest.approx(0.1)
    assert bucket.when(101) == pytest.approx(0.2), "reservations accumulate under a burst"


async def test_bucket_refills_with_time() -> None:
    clock = FakeClock()
    bucket: BucketRateLimiter[int] = BucketRateLimiter(qps=10, burst=1, clock=clock)
    assert bucket.when(0) == 0
    assert bucket.when(1) == pytest.approx(0.1)
    await clock.advance(1)
    assert bucket.when(2) == 0


def test_max_of_limiters_takes_the_longest_delay() -> None:
    clock = FakeClock()
    limiter = MaxOfRateLimiter[str](
        ItemExponentialFailureRateLimiter(), BucketRateLimiter(qps=1, burst=1, clock=clock)
    )
    assert limiter.when("a") == 0.005
    assert limiter.when("b") == pytest.approx(1.0)
    assert limiter.num_requeues("a") == 1
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0


def test_default_limiter_is_per_item_only_unless_the_bucket_is_asked_for() -> None:
    plain: RateLimiter[int] = default_controller_rate_limiter()
    assert all(plain.when(i) == 0.005 for i in range(150))
    with_bucket: RateLimiter[int] = default_controller_rate_limiter(bucket=True, clock=FakeClock())
    assert max(with_bucket.when(i) for i in range(150)) > 1.0


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue("t", clock=clock)
    q.add_rate_limited("a")
    q.add_rate_limited("a")  # second failure: 10 ms, but the 5 ms entry is still earlier
    assert q.num_requeues("a") == 2
    await clock.advance(0.006)
    assert await q.get() == "a"
    q.done("a")
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.shutdown()


async def test_metrics_follow_the_queue() -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    q: RateLimitingQueue[str] = RateLimitingQueue("ctl", clock=clock, registry=registry)
    labels = {"name": "ctl", "controller": "ctl"}
    q.add("a")
    q.add("a")
    q.add("b")
    assert registry.get_sample_value("workqueue_depth", labels) == 2
    assert registry.get_sample_value("workqueue_adds_total", labels) == 2
    await clock.advance(2)
    item = await q.get()
    await clock.advance(3)
    assert registry.get_sample_value("workqueue_unfinished_work_seconds", labels) == 3
    assert registry.get_sample_value("workqueue_longest_running_processor_seconds", labels) == 3
    q.done(item)
    assert registry.get_sample_value("workqueue_work_duration_seconds_sum", labels) == 3
    assert registry.get_sample_value("workqueue_queue_duration_seconds_sum", labels) == 2
    q.add_rate_limited("c")
    assert registry.get_sample_value("workqueue_retries_total", labels) == 1
    q.shutdown()
