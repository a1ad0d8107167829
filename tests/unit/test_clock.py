"""The fake clock is what every timing test stands on, so its own behaviour is pinned here."""

import asyncio

from vpsie_autoscaler.runtime.clock import FakeClock, RealClock


async def test_sleepers_wake_in_deadline_order_when_time_passes() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("late", 5)), asyncio.create_task(sleeper("early", 1))]
    await asyncio.sleep(0)
    await clock.advance(0.5)
    assert woke == []
    await clock.advance(4.5)
    assert woke == ["early", "late"]
    await asyncio.gather(*tasks)


async def test_wall_and_monotonic_move_together() -> None:
    clock = FakeClock()
    m0, w0 = clock.monotonic(), clock.now()
    await clock.advance(90)
    assert clock.monotonic() - m0 == 90
    assert (clock.now() - w0).total_seconds() == 90
    assert clock.now().tzinfo is not None


async def test_real_clock_is_timezone_aware_and_monotonic() -> None:
    clock = RealClock()
    a = clock.monotonic()
    await clock.sleep(0)
    assert clock.monotonic() >= a
    assert clock.now().utcoffset() is not None
