"""The scale-up batch window: 1 s without a new pod, or 10 s after the first, on the fake clock."""

from __future__ import annotations

import asyncio

import pytest

from vpsie_autoscaler.controllers.scaleup import IDLE_SECONDS, MAX_SECONDS, Batcher
from vpsie_autoscaler.runtime.clock import FakeClock


async def _parked(clock: FakeClock) -> None:
    for _ in range(50):
        if clock.sleepers:
            return
        await asyncio.sleep(0)
    raise AssertionError("the batcher never waited on the clock")


async def test_a_burst_closes_one_idle_window_after_the_last_pod() -> None:
    clock = FakeClock()
    batcher = Batcher(clock)
    waiter = asyncio.ensure_future(batcher.wait())
    batcher.add()
    await _parked(clock)
    await clock.advance(0.6)
    batcher.add(2)  # the burst goes on: the idle window restarts
    await clock.advance(0.6)
    assert not waiter.done()
    await clock.advance(IDLE_SECONDS)
    assert waiter.done()
    assert waiter.result() == 3
    assert not batcher.open


async def test_a_steady_trickle_cannot_postpone_the_decision_past_the_max_window() -> None:
    clock = FakeClock()
    batcher = Batcher(clock)
    waiter = asyncio.ensure_future(batcher.wait())
    start = clock.monotonic()
    batcher.add()
    await _parked(clock)
    while not waiter.done():
        await clock.advance(0.5)
        batcher.add()
        assert clock.monotonic() - start <= MAX_SECONDS + 0.5
    assert clock.monotonic() - start == pytest.approx(MAX_SECONDS, abs=0.5)


async def test_nothing_is_released_without_arrivals() -> None:
    clock = FakeClock()
    batcher = Batcher(clock)
    waiter = asyncio.ensure_future(batcher.wait())
    await clock.advance(60)
    assert not waiter.done()
    waiter.cancel()


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="batch windows"):
        Batcher(FakeClock(), idle=5, max_wait=1)
    with pytest.raises(ValueError, match="batch windows"):
        Batcher(FakeClock(), idle=0)
