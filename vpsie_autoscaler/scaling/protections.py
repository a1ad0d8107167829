"""Node protections and time windows for scale-down: who may not be removed, and when nothing may.

Keys VPSie's Go autoscaler honoured, kept so an operator moving from it loses no protection
(docs/reference-labels.md):

- ``autoscaler.vpsie.com/protected=true`` (annotation): never removed (:data:`NODE_PROTECTED`);
- ``autoscaler.vpsie.com/scale-down-disabled=true`` as a *label* (:data:`SCALE_DOWN_DISABLED_LABEL`);
  the annotation of the same key, and cluster-autoscaler's, are the planner's older rule;
- ``autoscaler.vpsie.com/scale-down=disabled`` (annotation): as ``scale-down-disabled``;
- ``autoscaler.vpsie.com/scale-down-allowed-hours="HH:MM-HH:MM"`` (annotation): the node may be removed
  only inside this daily window, in UTC; ``22:00-06:00`` wraps midnight (22:00 to 05:59). The Go system
  read it in the controller's local time and let a bad value through ("fail open"); here a value that
  cannot be read keeps the node (:data:`INVALID_ALLOWED_HOURS`, reported as a Warning) and start equal
  to end is refused as ambiguous (empty or the whole day?).

Per NodeGroup, ``spec.scaleDown.windows`` are disruption windows: a cron schedule and a duration in
UTC, Karpenter's NodePool budgets with a schedule; when any are set, the group's nodes are removed only
while one is open (:data:`OUTSIDE_DISRUPTION_WINDOW`). The schedule semantics live once, in
:mod:`~vpsie_autoscaler.scaling.windows`, which consolidation uses too.

Pure: every function is handed the time, none reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final

from vpsie_autoscaler.api.durations import format_duration
from vpsie_autoscaler.api.labels import (
    PROTECTED_ANNOTATION,
    SCALE_DOWN_ALLOWED_HOURS_ANNOTATION,
    SCALE_DOWN_ANNOTATION,
    SCALE_DOWN_DISABLED_LABEL,
)
from vpsie_autoscaler.scaling.reasons import (
    INVALID_ALLOWED_HOURS,
    NODE_PROTECTED,
    OUTSIDE_ALLOWED_HOURS,
    OUTSIDE_DISRUPTION_WINDOW,
    SCALE_DOWN_DISABLED_ANNOTATION,
    Reason,
)
from vpsie_autoscaler.scaling.reasons import (
    SCALE_DOWN_DISABLED_LABEL as LABEL_REASON,
)
from vpsie_autoscaler.scaling.windows import CronError, DisruptionWindow, window_active

TRUE: Final = "true"
SCALE_DOWN_DISABLED_VALUE: Final = "disabled"
MINUTES_PER_DAY: Final = 24 * 60
MAX_SHOWN: Final = 64
"""Characters of a bad annotation value quoted in a reason (a hostile value must not flood Events)."""
_HOURS: Final = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class AllowedHoursError(ValueError):
    """A ``scale-down-allowed-hours`` value that is not ``HH:MM-HH:MM`` with two different times."""


@dataclass(frozen=True, slots=True)
class AllowedHours:
    """A daily window ``[start, end)`` in minutes after midnight UTC; wraps midnight when start > end."""

    start: int
    end: int

    def contains(self, now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d} UTC"


def parse_allowed_hours(text: str) -> AllowedHours:
    """``"HH:MM-HH:MM"`` (24-hour clock, one- or two-digit hours); raises :class:`AllowedHoursError`."""
    match = _HOURS.match(text.strip())
    if match is None:
        raise AllowedHoursError("expected HH:MM-HH:MM (UTC, 24-hour clock), e.g. 22:00-06:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise AllowedHoursError("hours are 0-23 and minutes 0-59")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise AllowedHoursError("start and end are equal (an empty window or the whole day?)")
    return AllowedHours(start, end)


def node_protection(labels: Mapping[str, str], annotations: Mapping[str, str]) -> Reason | None:
    """The protection the user put on the node, if any (first of: protected, the label, scale-down)."""
    if annotations.get(PROTECTED_ANNOTATION, "").strip().lower() == TRUE:
        return Reason(NODE_PROTECTED, f"node annotation {PROTECTED_ANNOTATION}=true")
    if labels.get(SCALE_DOWN_DISABLED_LABEL, "").strip().lower() == TRUE:
        return Reason(LABEL_REASON, f"node label {SCALE_DOWN_DISABLED_LABEL}=true")
    if annotations.get(SCALE_DOWN_ANNOTATION, "").strip().lower() == SCALE_DOWN_DISABLED_VALUE:
        return Reason(
            SCALE_DOWN_DISABLED_ANNOTATION,
            f"node annotation {SCALE_DOWN_ANNOTATION}={SCALE_DOWN_DISABLED_VALUE}",
        )
    return None


def allowed_hours_problem(annotations: Mapping[str, str]) -> Reason | None:
    """A ``scale-down-allowed-hours`` value that cannot be read: the node stays, whatever the time."""
    value = annotations.get(SCALE_DOWN_ALLOWED_HOURS_ANNOTATION)
    if value is None:
        return None
    try:
        parse_allowed_hours(value)
    except AllowedHoursError as exc:
        shown = value[:MAX_SHOWN] + ("…" if len(value) > MAX_SHOWN else "")
        return Reason(
            INVALID_ALLOWED_HOURS,
            f"node annotation {SCALE_DOWN_ALLOWED_HOURS_ANNOTATION}={shown!r} cannot be read ({exc}); "
            "the node is kept until it is fixed or removed",
        )
    return None


def allowed_hours_blocker(annotations: Mapping[str, str], now: datetime) -> Reason | None:
    """The node's daily window is closed at ``now`` (an unreadable value blocks: never fail open)."""
    value = annotations.get(SCALE_DOWN_ALLOWED_HOURS_ANNOTATION)
    if value is None:
        return None
    try:
        hours = parse_allowed_hours(value)
    except AllowedHoursError:
        return allowed_hours_problem(annotations)
    if hours.contains(now):
        return None
    return Reason(OUTSIDE_ALLOWED_HOURS, f"scale-down of this node is allowed only {hours}")


def disruption_window_blocker(
    group: str, windows: Sequence[DisruptionWindow], now: datetime
) -> Reason | None:
    """The group has disruption windows and none is open at ``now``; a schedule that is not cron (the
    CRD's pattern admits ``99 * * * *``) keeps the group's nodes, as it keeps consolidation off."""
    if not windows:
        return None
    open_now, error = _windows_open(tuple(windows), now)
    if error:
        return Reason(
            OUTSIDE_DISRUPTION_WINDOW, f"invalid disruption window schedule of NodeGroup {group}: {error}"
        )
    if open_now:
        return None
    shown = ", ".join(f"{w.schedule!r} for {format_duration(w.duration)}" for w in windows[:3])
    more = f" and {len(windows) - 3} more" if len(windows) > 3 else ""
    return Reason(
        OUTSIDE_DISRUPTION_WINDOW,
        f"outside the disruption windows of NodeGroup {group} ({shown}{more}, UTC)",
    )


@lru_cache(maxsize=256)
def _windows_open(windows: tuple[DisruptionWindow, ...], now: datetime) -> tuple[bool, str]:
    """Once per group and pass, not per node: a week-long window is a week of minutes to look back
    over (:meth:`DisruptionWindow.active`), and every node of the group asks at the same ``now``."""
    try:
        return window_active(windows, now), ""
    except CronError as exc:
        return False, str(exc)
