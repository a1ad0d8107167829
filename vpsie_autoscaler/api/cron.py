"""Five-field cron schedules, as Karpenter's NodePool disruption budgets use them (UTC).

The schedule is standard cron (minute, hour, day of month, month, day of week; ``*``, ``a-b``, lists
and ``/step``) or a macro (``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``/``@annually``). Day of month and day of week follow Vixie cron: when both are restricted,
either one matching is enough; day of week 0 and 7 are Sunday. Lives in ``api/`` because the
NodeGroup model validates schedules with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS: Final = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute, hour, dom, month, dow (7 = Sunday)
_WILDCARDS: Final = frozenset({"*", "?"})


class CronError(ValueError):
    """A schedule that is not five-field cron or a known macro."""


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed schedule: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    """0-6, Sunday = 0."""
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, t: datetime) -> bool:
        """Whether the schedule fires at the minute of ``t`` (UTC)."""
        if t.minute not in self.minutes or t.hour not in self.hours or t.month not in self.months:
            return False
        day_ok = t.day in self.days
        weekday_ok = (t.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def _field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)  # noqa: PLW2901
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"invalid step {step_text!r}")
            step = int(step_text)
        if part in _WILDCARDS:
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise CronError(f"invalid range {part!r}")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = int(part)
            end = high if step > 1 else start
        else:
            raise CronError(f"invalid value {part!r}")
        if not (low <= start <= end <= high):
            raise CronError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@lru_cache(maxsize=256)
def parse_cron(expr: str) -> CronSchedule:
    """Parse five-field cron or a macro; raises :class:`CronError`."""
    text = MACROS.get(expr.strip().lower(), expr.strip())
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronError(f"a schedule has five fields (minute hour day-of-month month day-of-week): {expr!r}")
    minutes, hours, days, months, weekdays = (
        _field(p, lo, hi) for p, (lo, hi) in zip(parts, _FIELDS, strict=True)
    )
    return CronSchedule(
        minutes,
        hours,
        days,
        months,
        frozenset(d % 7 for d in weekdays),
        days_restricted=parts[2] not in _WILDCARDS,
        weekdays_restricted=parts[4] not in _WILDCARDS,
    )
