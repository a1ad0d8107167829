"""Fencing: refuse a cloud mutation unless this process still safely holds the leader Lease.

Leader election alone does not guarantee that only one process acts as leader at a time (client-go's
``leaderelection`` package says so itself): a leader whose event loop stalls, or whose renewals
fail, keeps running its reconcilers until its renew loop notices — after a standby may already have
taken over. Kleppmann's fencing argument ("How to do distributed locking") is that a lease holder
must not trust the lease it *had*: it must check right before acting on the shared resource. The
VPSie API offers no fencing token, so the check is local and conservative instead:

- validity is measured on our monotonic clock from the moment the last successful acquire/renew
  write was **sent** (a standby times our lease from when it *observed* that write, which is later,
  so our view of the expiry is never later than theirs);
- a mutation is allowed only while at least ``lease_duration - renew_deadline`` (5 s by default) of
  that validity is left, i.e. at most ``renew_deadline`` after the last renewal was sent. That margin
  covers the time between :meth:`Fence.check` and the cloud call actually reaching VPSie;
- a failed renewal, a lost lease and the start of the release on shutdown close the fence at once.

Callers run :meth:`Fence.check` *immediately* before each cloud create/delete, never earlier (not at
the start of a reconcile), and treat :class:`NotLeader` as "do nothing, this process is not allowed
to act"; the new leader will reconcile the same object.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Protocol, runtime_checkable

from vpsie_autoscaler.runtime.clock import Clock, RealClock


class FenceReason(StrEnum):
    """Why a fence is closed."""

    NEVER_LED = "never led"
    LEASE_LOST = "lease lost"
    MARGIN_TOO_SMALL = "lease validity margin too small"
    STOPPING = "stopping"


class NotLeader(Exception):
    """A cloud mutation was refused because this process does not (safely) hold the leader Lease."""

    def __init__(self, operation: str, reason: FenceReason, detail: str = "") -> None:
        self.operation = operation
        self.reason = reason
        self.detail = detail
        message = f"refusing {operation}: not leader ({reason.value})"
        if detail:
            message += f": {detail}"
        super().__init__(message)


@runtime_checkable
class Fence(Protocol):
    """What a cloud-mutating caller needs: one check right before the mutation."""

    def check(self, operation: str) -> None:
        """Return if ``operation`` may run now; raise :class:`NotLeader` otherwise."""

    def is_open(self) -> bool:
        """Whether :meth:`check` would pass now (for logs and probes; mutations call ``check``)."""

    def held_for(self) -> float:
        """Seconds since this leadership term's acquire was sent (0.0 if the lease is not held)."""

    def valid_for(self) -> float:
        """Seconds until our lease expires on our clock, counted from the last renewal's send time
        (0.0 if not held; ``inf`` without election). :meth:`check` needs at least the margin."""


class AlwaysLeader:
    """The fence of a process without leader election (a single replica, tests): always open."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or RealClock()
        self._since = self._clock.monotonic()

    def check(self, operation: str) -> None:
        return None

    def is_open(self) -> bool:
        return True

    def held_for(self) -> float:
        return max(0.0, self._clock.monotonic() - self._since)

    def valid_for(self) -> float:
        return math.inf


class LeaseFence:
    """The fence of a Lease holder; driven by :class:`~vpsie_autoscaler.runtime.leaderelection.LeaderElector`.

    Open only between a successful acquire/renew (:meth:`renewed`, given the monotonic time the
    write was *sent*) and the first of: :meth:`close` (failed renewal, lease lost, release),
    :meth:`stop` (shutdown; final), or ``renew_deadline`` seconds after that send without another
    successful renewal.
    """

    def __init__(self, lease_duration: float, renew_deadline: float, clock: Clock | None = None) -> None:
        if lease_duration <= renew_deadline:
            raise ValueError("lease duration must be greater than the renew deadline")
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self._clock = clock or RealClock()
        self._open = False
        self._stopped = False
        self._reason = FenceReason.NEVER_LED
        self._detail = ""
        self._acquired_sent: float | None = None  # send time of the acquire that started this term
        self._renewed_sent = 0.0  # send time of the last successful acquire/renew

    @property
    def margin(self) -> float:
        """The validity a mutation needs left: ``lease_duration - renew_deadline``."""
        return self.lease_duration - self.renew_deadline

    # -- driven by the elector ----------------------------------------------------------------------

    def renewed(self, sent: float, *, acquired: bool = False) -> None:
        """A write that acquired (``acquired``: a new leadership term) or renewed the Lease, sent
        at monotonic time ``sent``, succeeded: open the fence (unless stopped) from ``sent``."""
        if self._stopped:
            return
        if acquired or self._acquired_sent is None:
            self._acquired_sent = sent
            self._renewed_sent = sent
        else:
            self._renewed_sent = max(self._renewed_sent, sent)
        self._open = True

    def close(self, reason: FenceReason, detail: str = "") -> None:
        """Close at once. The first reason is kept until the fence opens again."""
        if self._open:
            self._open = False
            self._reason, self._detail = reason, detail

    def stop(self) -> None:
        """Close for good (the process is stopping and will release the Lease)."""
        self._open = False
        self._stopped = True
        self._reason, self._detail = FenceReason.STOPPING, ""

    # -- read side ----------------------------------------------------------------------------------

    def is_open(self) -> bool:
        return self._open and self._since_renewal() <= self.renew_deadline

    def check(self, operation: str) -> None:
        if not self._open:
            raise NotLeader(operation, self._reason, self._detail)
        since = self._since_renewal()
        if since > self.renew_deadline:
            raise NotLeader(
                operation,
                FenceReason.MARGIN_TOO_SMALL,
                f"last renewal sent {since:.3f}s ago, {self.lease_duration - since:.3f}s of validity "
                f"left, {self.margin:.3f}s required",
            )

    def held_for(self) -> float:
        if self._acquired_sent is None or self.valid_for() <= 0.0:
            return 0.0
        return max(0.0, self._clock.monotonic() - self._acquired_sent)

    def valid_for(self) -> float:
        if not self._open:
            return 0.0
        return max(0.0, self.lease_duration - self._since_renewal())

    def _since_renewal(self) -> float:
        return self._clock.monotonic() - self._renewed_sent
