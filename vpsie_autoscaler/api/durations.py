"""Go-style duration strings (``"10m"``, ``"30s"``, ``"1h30m"``), as Kubernetes users write them.

The CRD keeps durations as strings in the same syntax as Go's ``time.ParseDuration`` (the syntax
``kubectl`` users know from Karpenter's ``consolidateAfter`` and every controller flag). The schema
validates them with :data:`DURATION_PATTERN` and CEL ``duration()`` bounds; code parses them with
:func:`parse_duration`, which accepts exactly what the pattern accepts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
"""Unsigned Go durations with at least one unit. ``µs`` is left out: it is not ASCII, and nothing we
configure is that short. Negative durations are refused: none of our settings means "in the past"."""

DURATION_MAX_LENGTH: Final = 32
"""Bounds the string so the API server can estimate the cost of the CEL rules over it."""

_UNIT_SECONDS: Final = {
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_FULL: Final = re.compile(DURATION_PATTERN)
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")


def parse_duration(value: str) -> timedelta:
    """Parse a Go-style duration; raise ``ValueError`` naming the bad value otherwise."""
    if not isinstance(value, str) or len(value) > DURATION_MAX_LENGTH or not _FULL.match(value):
        raise ValueError(
            f"invalid duration {value!r}: expected a Go duration such as '30s', '10m' or '1h30m'"
        )
    seconds = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(value))
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Render a timedelta the way Go prints durations (``1h30m0s`` → here ``1h30m``), whole seconds."""
    total = int(value.total_seconds())
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = ""
    if hours:
        out += f"{hours}h"
    if minutes:
        out += f"{minutes}m"
    if seconds:
        out += f"{seconds}s"
    return out
