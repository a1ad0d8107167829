"""The leadership fence in front of cloud mutations (exact, on the fake clock)."""

from __future__ import annotations

import math

import pytest

from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.fence import AlwaysLeader, Fence, FenceReason, LeaseFence, NotLeader

LEASE = 15.0
RENEW = 10.0


def fence(clock: FakeClock) -> LeaseFence:
    return LeaseFence(LEASE, RENEW, clock)


def refused(f: Fence, operation: str = "add_node") -> NotLeader:
    with pytest.raises(NotLeader) as info:
        f.check(operation)
    return info.value


def test_a_fence_that_never_led_refuses() -> None:
    f = fence(FakeClock())
    err = refused(f, "delete_node")
    assert err.reason is FenceReason.NEVER_LED
    assert err.operation == "delete_node"
    assert str(err) == "refusing delete_node: not leader (never led)"
    assert (f.held_for(), f.valid_for()) == (0.0, 0.0)
    assert not f.is_open()


async def test_open_from_the_send_time_until_renew_deadline_then_margin_too_small() -> None:
    clock = FakeClock()
    f = fence(clock)
    sent = clock.monotonic()
    await clock.advance(3)  # the acquire request took 3 s: validity still counts from the send
    f.renewed(sent, acquired=True)
    f.check("add_node")
    assert f.valid_for() == LEASE - 3
    assert f.held_for() == 3
    await clock.advance(RENEW - 3)  # exactly lease - renew (the margin) left: still allowed
    f.check("add_node")
    assert f.valid_for() == LEASE - RENEW == f.margin
    await clock.advance(0.001)
    err = refused(f)
    assert err.reason is FenceReason.MARGIN_TOO_SMALL
    assert "lease validity margin too small" in str(err)
    assert "last renewal sent 10.001s ago" in str(err)
    assert not f.is_open()
    assert f.valid_for() == pytest.approx(LEASE - RENEW - 0.001)
    await clock.advance(LEASE)
    assert (f.held_for(), f.valid_for()) == (0.0, 0.0)


async def test_renewals_keep_it_open_and_held_for_counts_from_the_acquire() -> None:
    clock = FakeClock()
    f = fence(clock)
    f.renewed(clock.monotonic(), acquired=True)
    for _ in range(30):
        await clock.advance(2)
        f.renewed(clock.monotonic())
        f.check("add_node")
    assert f.held_for() == 60
    assert f.valid_for() == LEASE
    f.renewed(clock.monotonic() - 5)  # a late answer to an older request never shortens validity
    assert f.valid_for() == LEASE


async def test_close_refuses_at_once_keeps_the_first_reason_and_a_renewal_reopens() -> None:
    clock = FakeClock()
    f = fence(clock)
    f.renewed(clock.monotonic(), acquired=True)
    await clock.advance(1)
    f.close(FenceReason.LEASE_LOST, "lease renewal failed")
    err = refused(f)
    assert err.reason is FenceReason.LEASE_LOST
    assert str(err) == "refusing add_node: not leader (lease lost): lease renewal failed"
    assert f.valid_for() == 0.0
    f.close(FenceReason.LEASE_LOST, "later")
    assert refused(f).detail == "lease renewal failed"
    await clock.advance(1)
    f.renewed(clock.monotonic())  # same term: the next renewal succeeded
    f.check("add_node")
    assert f.held_for() == 2


def test_stop_is_final() -> None:
    clock = FakeClock()
    f = fence(clock)
    f.renewed(clock.monotonic(), acquired=True)
    f.stop()
    assert refused(f).reason is FenceReason.STOPPING
    f.renewed(clock.monotonic(), acquired=True)  # a renewal answer arriving late changes nothing
    err = refused(f)
    assert err.reason is FenceReason.STOPPING
    assert "(stopping)" in str(err)


def test_lease_must_outlast_the_renew_deadline() -> None:
    with pytest.raises(ValueError, match="greater than the renew deadline"):
        LeaseFence(10, 10, FakeClock())


async def test_always_leader_never_refuses() -> None:
    clock = FakeClock()
    f = AlwaysLeader(clock)
    assert isinstance(f, Fence)
    assert isinstance(fence(clock), Fence)
    await clock.advance(100)
    f.check("add_node")
    assert f.held_for() == 100
    assert f.valid_for() == math.inf
