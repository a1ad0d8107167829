"""How long VPSie stayed silent, and how long to wait after one of its errors.

**Provisioning time counts only while VPSie answers.** A record's ``maxProvisionTime`` measures how long
VPSie took to deliver a node, not how long VPSie could not be asked: during an outage nothing can be
learned, and failing records then would delete nodes that are fine (docs/lifecycle.md, "VPSieNode
phases": an outage never deletes a node whose Node is Ready). :class:`Outages` keeps, per source, the
intervals in which listing failed, so the timeout subtracts them. It lives in memory: after a restart
the silence before it is not known, which only matters if VPSie is down across the restart (then the
next answer decides).

**Errors are outcomes.** :func:`retry_delay` turns a VPSie error into the delay before the record is
looked at again: the server's Retry-After when it gave one, a short pause for transient errors, longer
ones for credentials and refusals. The caller bounds it by the group's back-off maximum; the work
queue's exponential per-item back-off (up to 1000 s) never applies to cloud errors.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Final

from vpsie_autoscaler.vpsie.errors import CircuitOpen, ErrorClass, RateLimited, VPSieError, error_class

MAX_INTERVALS: Final = 32
"""Silent intervals kept per source; older ones cannot matter to a record younger than them."""

AUTH_RETRY_SECONDS: Final = 60.0
REFUSED_RETRY_SECONDS: Final = 30.0


class Outages:
    def __init__(self) -> None:
        self._since: dict[str, datetime] = {}  # source → first failure of the current outage
        self._past: dict[str, deque[tuple[datetime, datetime]]] = {}

    def down(self, source: str, now: datetime) -> None:
        self._since.setdefault(source, now)

    def up(self, source: str, now: datetime) -> None:
        started = self._since.pop(source, None)
        if started is not None:
            self._past.setdefault(source, deque(maxlen=MAX_INTERVALS)).append((started, now))

    def silent_between(self, source: str, start: datetime, end: datetime) -> timedelta:
        """How much of ``[start, end]`` VPSie spent not answering listings of ``source``."""
        total = timedelta()
        intervals = list(self._past.get(source, ()))
        current = self._since.get(source)
        if current is not None:
            intervals.append((current, end))
        for a, b in intervals:
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += hi - lo
        return total


def retry_delay(exc: VPSieError, poll_interval: float) -> float:
    """Seconds until the next look after ``exc`` (before the group's back-off maximum bounds it)."""
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return max(exc.retry_after, poll_interval)
    if isinstance(exc, CircuitOpen):
        return max(exc.retry_after, poll_interval)
    klass = error_class(exc)
    if klass is ErrorClass.TRANSIENT:
        return 2 * poll_interval
    if klass is ErrorClass.AUTH:
        return AUTH_RETRY_SECONDS
    return REFUSED_RETRY_SECONDS
