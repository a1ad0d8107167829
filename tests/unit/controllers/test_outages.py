"""VPSie's silence is not provisioning time, and each kind of VPSie error sets its own wait."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpsie_autoscaler.controllers.vpsienode.outages import (
    AUTH_RETRY_SECONDS,
    MAX_INTERVALS,
    REFUSED_RETRY_SECONDS,
    Outages,
    retry_delay,
)
from vpsie_autoscaler.vpsie import errors as vpsie_errors

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SRC = "managed/c-1/7"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def mins(value: float) -> timedelta:
    return timedelta(minutes=value)


def test_no_outage_no_silence() -> None:
    assert Outages().silent_between(SRC, at(0), at(60)) == timedelta()


def test_past_outages_count_only_inside_the_window() -> None:
    outages = Outages()
    outages.down(SRC, at(5))
    outages.down(SRC, at(7))  # still the same outage: it started at 5
    outages.up(SRC, at(15))
    outages.down(SRC, at(30))
    outages.up(SRC, at(40))
    assert outages.silent_between(SRC, at(0), at(60)) == mins(20)
    assert outages.silent_between(SRC, at(10), at(35)) == mins(10)  # clipped at both ends
    assert outages.silent_between(SRC, at(16), at(29)) == timedelta()
    assert outages.silent_between("vm/web", at(0), at(60)) == timedelta()  # per source


def test_the_current_outage_counts_up_to_now() -> None:
    outages = Outages()
    outages.down(SRC, at(10))
    assert outages.silent_between(SRC, at(0), at(25)) == mins(15)
    assert outages.silent_between(SRC, at(20), at(25)) == mins(5)
    outages.up(SRC, at(30))
    assert outages.silent_between(SRC, at(0), at(60)) == mins(20)


def test_an_answer_without_an_outage_changes_nothing() -> None:
    outages = Outages()
    outages.up(SRC, at(3))
    assert outages.silent_between(SRC, at(0), at(60)) == timedelta()


def test_only_recent_outages_are_kept() -> None:
    outages = Outages()
    for i in range(MAX_INTERVALS + 5):
        outages.down(SRC, at(10 * i))
        outages.up(SRC, at(10 * i + 1))
    recent = (MAX_INTERVALS + 5) * 10
    assert outages.silent_between(SRC, at(0), at(recent)) == mins(MAX_INTERVALS)
    assert outages.silent_between(SRC, at(recent - 100), at(recent)) == mins(10)


@pytest.mark.parametrize(
    ("exc", "poll", "delay"),
    [
        (
            vpsie_errors.RateLimited("slow down", retry_after=45, status=429),
            10.0,
            45.0,
        ),  # Retry-After honoured
        (
            vpsie_errors.RateLimited("slow down", retry_after=2, status=429),
            10.0,
            10.0,
        ),  # never sooner than a poll
        (vpsie_errors.RateLimited("slow down", status=429), 10.0, 20.0),  # no Retry-After: transient
        (vpsie_errors.CircuitOpen("open", retry_after=25), 10.0, 25.0),
        (vpsie_errors.CircuitOpen("open", retry_after=1), 10.0, 10.0),
        (vpsie_errors.ServerError("HTTP 502", status=502), 10.0, 20.0),
        (vpsie_errors.VPSieTimeout("no answer"), 15.0, 30.0),
        (vpsie_errors.ConnectionFailed("refused"), 5.0, 10.0),
        (vpsie_errors.Unauthorized("please authenticate", status=401), 10.0, AUTH_RETRY_SECONDS),
        (vpsie_errors.BusinessRuleError("Invalid group", status=422), 10.0, REFUSED_RETRY_SECONDS),
        (vpsie_errors.NotFound("not found", status=404), 10.0, REFUSED_RETRY_SECONDS),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_retry_delay_per_error_class(exc: vpsie_errors.VPSieError, poll: float, delay: float) -> None:
    assert retry_delay(exc, poll) == delay


def test_the_documented_waits() -> None:
    assert (AUTH_RETRY_SECONDS, REFUSED_RETRY_SECONDS) == (60.0, 30.0)
