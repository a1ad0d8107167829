"""Kubernetes times (``metav1.Time``): RFC 3339 in UTC with whole seconds, read leniently.

One reader and one writer for every timestamp the autoscaler handles — object metadata, condition
transitions, its own annotations (``unneeded-since``, ``drain-requested``) — so a value written by
one controller is read back the same way by every other.
"""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(t: datetime) -> str:
    """``2026-11-27T09:00:00Z`` (what Kubernetes writes and ``kubectl`` shows)."""
    return t.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time (``Z`` or an offset), timezone-aware; None for a missing or unparsable value
    (a hand-edited annotation must never stop a controller). A time without offset is taken as UTC."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
