"""Go-style duration strings (``"10m"``, ``"30s"``, ``"1h30m"``), as Kubernetes users write them.

The CRD keeps durations as strings in the same syntax as Go's ``time.ParseDuration`` (the syntax
``kubectl`` users know from Karpenter's ``consolidateAfter`` and every controller flag). The schema
validates them with :data:`DURATION_PATTERN` and CEL ``duration()`` bounds; code parses them with
:func:`parse_duration`, which accepts exactly what the pattern accepts, and says durations back to
people with :func:`format_duration` (Go's ``Duration.String`` without its zero units: ``10m``, not
``10m0s`` nor Python's ``0:10:00``), whose output :func:`parse_duration` reads back unchanged.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Final

DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
"""Unsigned Go durations with at least one unit. ``µs`` is left out: it is not ASCII, and nothing we
configure is that short. Negative durations are refused: none of our settings means "in the past"."""

DURATION_MAX_LENGTH: Final = 32
"""Bounds the string so the API server can estimate the cost of the CEL rules over it."""

_UNIT_NANOSECONDS: Final = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_EXACT: Final = Context(prec=80, rounding=ROUND_HALF_EVEN)
"""Wide enough that no number the pattern and the length admit is ever rounded while it is summed."""
_MICROSECOND: Final = timedelta(microseconds=1)
_FULL: Final = re.compile(DURATION_PATTERN)
_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|ms|s|m|h)")


def parse_duration(value: str) -> timedelta:
    """Parse a Go-style duration; raise ``ValueError`` naming the bad value otherwise.

    Summed exactly in nanoseconds, as Go does, then rounded half-even to the microsecond a
    ``timedelta`` holds, so ``"1.1s"`` is 1.1 seconds and not the nearest binary fraction of it."""
    if not isinstance(value, str) or len(value) > DURATION_MAX_LENGTH or not _FULL.match(value):
        raise ValueError(
            f"invalid duration {value!r}: expected a Go duration such as '30s', '10m' or '1h30m'"
        )
    nanoseconds = Decimal(0)
    for num, unit in _PART.findall(value):
        nanoseconds = _EXACT.add(nanoseconds, _EXACT.multiply(Decimal(num), _UNIT_NANOSECONDS[unit]))
    micro = _EXACT.quantize(_EXACT.divide(nanoseconds, 1000), Decimal(1))
    try:
        return timedelta(microseconds=int(micro))
    except OverflowError:
        raise ValueError(f"invalid duration {value!r}: longer than any duration can be") from None


def format_duration(value: timedelta | float) -> str:
    """Say a duration (a ``timedelta``, or seconds) the way Go prints one, without zero units.

    ``1h30m``, ``10m``, ``1m30s``, ``2.5s``, ``250ms``, ``40us``: Go's ``time.Duration.String``
    with its ``0m``/``0s`` parts left out and ``us`` for ``µs`` (:data:`DURATION_PATTERN` is ASCII),
    so the text is what a NodeGroup would have said and :func:`parse_duration` reads it back to the
    same ``timedelta``. Nothing is negative here: at most zero, ``0s``. Seconds are first rounded to
    the microsecond, as ``timedelta`` does."""
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    micro = delta // _MICROSECOND
    if micro <= 0:
        return "0s"
    if micro < 1_000:
        return f"{micro}us"
    if micro < 1_000_000:
        return f"{_decimal(micro, 1_000)}ms"
    hours, rest = divmod(micro, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes else ""
    return out + (f"{_decimal(rest, 1_000_000)}s" if rest else "")


def _decimal(amount: int, per_unit: int) -> str:
    """``amount / per_unit`` written exactly, without trailing zeros (``1500, 1000`` → ``1.5``)."""
    whole, frac = divmod(amount, per_unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(per_unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
