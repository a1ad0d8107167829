"""Disruption windows: a cron schedule and a duration, in UTC (Karpenter's NodePool budgets).

Karpenter (``sigs.k8s.io/karpenter`` ``Budget.schedule`` / ``Budget.duration``) activates a budget
for ``duration`` after each time its schedule fires; the schedule (:mod:`vpsie_autoscaler.api.cron`)
is always evaluated in UTC.

Pure: :func:`window_active` is asked with the time, never reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from vpsie_autoscaler.api.cron import CronError, parse_cron

MAX_WINDOW: Final = timedelta(days=7)
"""Longest window looked back over (a week of minutes is a bounded scan)."""

__all__ = ["MAX_WINDOW", "CronError", "DisruptionWindow", "parse_cron", "window_active"]


@dataclass(frozen=True, slots=True)
class DisruptionWindow:
    """Disruption is allowed for ``duration`` after each time ``schedule`` fires (UTC)."""

    schedule: str
    duration: timedelta

    def active(self, now: datetime) -> bool:
        """Whether ``now`` falls in ``[fire, fire + duration)`` for some firing time of the schedule."""
        cron = parse_cron(self.schedule)
        span = min(self.duration, MAX_WINDOW)
        minute = now.replace(second=0, microsecond=0)
        earliest = now - span
        while minute > earliest:
            if cron.matches(minute):
                return True
            minute -= timedelta(minutes=1)
        return False


def window_active(windows: Sequence[DisruptionWindow], now: datetime) -> bool:
    """No windows: always allowed. Otherwise allowed while any window is active."""
    return not windows or any(w.active(now) for w in windows)
