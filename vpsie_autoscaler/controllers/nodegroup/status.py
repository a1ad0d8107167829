"""Pure computations of a NodeGroup's status: counts, back-off, conditions, surplus choice.

Kept free of I/O so each rule is tested directly and the reconciler stays a thin shell around them.

**Counting** (deleting nodes must never be counted twice). A VPSieNode is *leaving* when it is
being drained or deleted, has failed, or carries a drain request: leaving nodes never count as
``current``; they show as ``deleting`` (Failed ones only in neither, as they hold no capacity and
their instance is being deleted). ``ready`` is the non-leaving records whose Node is Ready.

**Back-off** (cluster-autoscaler ``backoff.ExponentialBackoff``, keyed by error class as Karpenter's
unavailable-offerings cache is). It is derived, never stored as a timer: the Failed VPSieNodes with an
``ERROR_CLASS_ANNOTATION`` since the group's last successful node (latest ``Ready`` time) are the
consecutive failures; the back-off runs from the latest failure for ``initial * 2^(n-1)`` capped at
``max``, or straight ``max`` for error classes that repeating will not fix soon (quota, plan
unavailable, invalid request). A restart or a new leader derives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.nodegroup import BackoffSpec
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.vpsienode_keys import ERROR_CLASS_ANNOTATION
from vpsie_autoscaler.scaling import membership
from vpsie_autoscaler.vpsie.errors import ErrorClass

LONG_BACKOFF_CLASSES: Final = frozenset({ErrorClass.QUOTA, ErrorClass.PLAN_UNAVAILABLE, ErrorClass.INVALID})
"""Failures that another attempt in a minute will not fix: back off for ``max`` at once."""

# Ready reasons shown in ``kubectl get ng`` STATUS, most important first.
STATE_ERROR: Final = "Error"
STATE_BACKOFF: Final = "Backoff"
STATE_SCALING_UP: Final = "ScalingUp"
STATE_SCALING_DOWN: Final = "ScalingDown"
STATE_AT_MAX: Final = "AtMax"
STATE_AT_MIN: Final = "AtMin"
STATE_ACTIVE: Final = "Active"


def is_leaving(vn: VPSieNode) -> bool:
    """:func:`~vpsie_autoscaler.scaling.membership.leaving` (one rule for every count)."""
    return membership.leaving(vn)


@dataclass(frozen=True)
class Counts:
    current: int = 0
    ready: int = 0
    provisioning: int = 0
    deleting: int = 0
    failed: int = 0


def count(vns: Sequence[VPSieNode], node_ready: Callable[[str], bool]) -> Counts:
    """Counts of a group's VPSieNodes; ``node_ready(name)`` says whether that Node is Ready."""
    current = ready = provisioning = deleting = failed = 0
    for vn in vns:
        if vn.status.phase == "Failed" and vn.metadata.deletion_timestamp is None:
            failed += 1
            continue
        if is_leaving(vn):
            deleting += 1
            continue
        current += 1
        if membership.in_flight(vn):
            provisioning += 1
        elif vn.status.phase == "Ready" and vn.status.node_name and node_ready(vn.status.node_name):
            ready += 1
    return Counts(current, ready, provisioning, deleting, failed)


@dataclass(frozen=True)
class Backoff:
    until: datetime | None = None
    failures: int = 0
    error_class: str | None = None
    last_error: str | None = None

    def active(self, now: datetime) -> bool:
        return self.until is not None and now < self.until


def _failed_at(vn: VPSieNode) -> datetime | None:
    return vn.status.phase_timestamps.get("Failed")


def backoff(vns: Sequence[VPSieNode], spec: BackoffSpec) -> Backoff:
    """The group's back-off derived from its Failed VPSieNodes (see the module docstring)."""
    successes = [t for vn in vns if (t := vn.status.phase_timestamps.get("Ready")) is not None]
    last_success = max(successes) if successes else None
    failures = [
        (t, vn)
        for vn in vns
        if vn.status.phase == "Failed"
        and ERROR_CLASS_ANNOTATION in vn.metadata.annotations
        and (t := _failed_at(vn)) is not None
        and (last_success is None or t > last_success)
    ]
    if not failures:
        return Backoff()
    latest, vn = max(failures, key=lambda pair: pair[0])
    n = len(failures)
    raw = vn.metadata.annotations[ERROR_CLASS_ANNOTATION]
    initial, cap = parse_duration(spec.initial), parse_duration(spec.max)
    try:
        long = ErrorClass(raw) in LONG_BACKOFF_CLASSES
    except ValueError:
        long = False
    duration = cap if long else min(cap, initial * (2 ** min(n - 1, 30)))
    return Backoff(until=latest + duration, failures=n, error_class=raw, last_error=vn.status.last_error)


def surplus(vns: Sequence[VPSieNode], how_many: int, node_ready: Callable[[str], bool]) -> list[VPSieNode]:
    """The ``how_many`` non-leaving VPSieNodes to remove above ``maxNodes``: not-ready ones first
    (in flight, then Ready records whose Node is not Ready), newest first within each kind
    (cluster-autoscaler removes unregistered and not-ready nodes before healthy ones)."""
    candidates = [vn for vn in vns if not is_leaving(vn) and vn.status.phase != "Failed"]

    def rank(vn: VPSieNode) -> tuple[int, float]:
        created = vn.metadata.creation_timestamp
        age_key = -(created.timestamp() if created is not None else 0.0)
        if membership.in_flight(vn):
            return (0, age_key)
        if not (vn.status.node_name and node_ready(vn.status.node_name)):
            return (1, age_key)
        return (2, age_key)

    return sorted(candidates, key=rank)[: max(how_many, 0)]


def last_scale_up(previous: datetime | None, vns: Sequence[VPSieNode]) -> datetime | None:
    """When nodes were last added to the group: the newest creation of a VPSieNode made to add
    capacity (by scale-up or for ``minNodes``; adopted records are not a scale-up), never earlier
    than ``previous`` (the records of a scale-up may be gone already). Derived, not stamped by each
    creator, so the NodeGroup controller is its single writer and a restart derives the same."""
    created = [t for vn in vns if vn.spec.adopt is None and (t := vn.metadata.creation_timestamp) is not None]
    newest = max(created, default=None)
    if previous is None or (newest is not None and newest > previous):
        return newest
    return previous


def ready_state(
    *, cloud_error: bool, in_backoff: bool, counts: Counts, min_nodes: int, max_nodes: int
) -> tuple[bool, str]:
    """``(Ready status, one-word reason)`` for the ``Ready`` condition (the STATUS column)."""
    if cloud_error:
        return False, STATE_ERROR
    if in_backoff:
        return True, STATE_BACKOFF
    if counts.provisioning or counts.current < min_nodes:
        return True, STATE_SCALING_UP
    if counts.deleting:
        return True, STATE_SCALING_DOWN
    if counts.current >= max_nodes:
        return True, STATE_AT_MAX
    return True, STATE_ACTIVE


def backoff_duration_text(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
