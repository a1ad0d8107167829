"""Disruption windows: five-field cron in UTC plus a duration (Karpenter's NodePool budgets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vpsie_autoscaler.scaling.windows import CronError, DisruptionWindow, parse_cron, window_active

MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "at", "fires"),
    [
        ("* * * * *", MONDAY_NOON, True),
        ("0 12 * * *", MONDAY_NOON, True),
        ("0 12 * * *", MONDAY_NOON + timedelta(minutes=1), False),
        ("*/15 9-17 * * 1-5", MONDAY_NOON + timedelta(minutes=45), True),
        ("*/15 9-17 * * 1-5", MONDAY_NOON + timedelta(days=5), False),  # Saturday
        ("0 12 * * 7", MONDAY_NOON - timedelta(days=1), True),  # 7 is Sunday too
        ("0 12 1 * 1", MONDAY_NOON, True),  # day of month OR day of week (Vixie cron)
        ("0 12 1 * 2", MONDAY_NOON, False),
        ("@daily", MONDAY_NOON.replace(hour=0), True),
        ("@hourly", MONDAY_NOON, True),
        ("0,30 12 30 11 *", MONDAY_NOON + timedelta(minutes=30), True),
    ],
)
def test_cron_matches(schedule: str, at: datetime, fires: bool) -> None:
    assert parse_cron(schedule).matches(at) is fires


@pytest.mark.parametrize("bad", ["", "* * * *", "60 * * * *", "a * * * *", "*/0 * * * *", "5-1 * * * *"])
def test_bad_schedules_are_refused(bad: str) -> None:
    with pytest.raises(CronError):
        parse_cron(bad)


def test_a_window_is_open_for_its_duration_after_each_firing_and_wraps_midnight() -> None:
    night = DisruptionWindow("0 22 * * *", timedelta(hours=8))
    assert night.active(MONDAY_NOON.replace(hour=22))
    assert night.active(MONDAY_NOON.replace(hour=5, minute=59))
    assert not night.active(MONDAY_NOON.replace(hour=6))
    assert not night.active(MONDAY_NOON.replace(hour=21, minute=59))
    assert window_active((), MONDAY_NOON)
    assert window_active((night, DisruptionWindow("@hourly", timedelta(minutes=10))), MONDAY_NOON)
