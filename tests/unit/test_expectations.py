"""Expectations: a write counts as done until the cache shows it or its deadline (on the injected
clock) passes."""

from __future__ import annotations

from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.expectations import Expectations


async def test_a_write_is_pending_until_observed() -> None:
    exp: Expectations[str, int] = Expectations(FakeClock(), timeout=60.0)
    exp.expect("a", 1)
    exp.expect("b", 2)
    assert exp.pending() == {"a": 1, "b": 2}
    assert exp.pending(lambda key, _v: key == "a") == {"b": 2}
    assert exp.get("a") is None
    exp.observe("b")
    assert len(exp) == 0


async def test_an_unseen_write_is_given_up_after_its_timeout_on_the_injected_clock() -> None:
    clock = FakeClock()
    exp: Expectations[str, str] = Expectations(clock, timeout=60.0)
    exp.expect("a", "x")
    await clock.advance(60.0)
    assert exp.pending() == {"a": "x"}
    await clock.advance(0.5)
    assert exp.pending() == {}


async def test_without_timeout_a_write_waits_until_observed_or_forgotten() -> None:
    clock = FakeClock()
    exp: Expectations[str, str] = Expectations(clock, timeout=None)
    exp.expect("k", "record")
    await clock.advance(3600.0)
    assert dict(exp.items()) == {"k": "record"}
    exp.forget("k")
    assert exp.pending() == {}
