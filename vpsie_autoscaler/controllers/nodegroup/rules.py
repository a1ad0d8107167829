"""What the NodeGroup controller does next, as a chain of pure rules (the shape of
``scaling/scaledown.py``: small named functions, first match wins, reasons as constants).

The reconciler reads the group and its VPSieNodes into a :class:`GroupView`, asks :func:`next_step`,
performs the step's writes (or, in dry-run, only announces them) and writes the status computed by
:func:`settle`. Nothing here does I/O, so each rule is table-tested and the chain is property-tested.

==========================  ======================================  =============================
rule                        when                                    step
==========================  ======================================  =============================
:func:`below_min_in_backoff` ``current < minNodes``, back-off on    :data:`STEP_WAIT_BACKOFF`
:func:`below_min`            ``current < minNodes``                 :data:`STEP_CREATE_MIN` n
:func:`above_max`            ``current > maxNodes``                 :data:`STEP_DRAIN_ABOVE_MAX`
==========================  ======================================  =============================

Above ``maxNodes`` (the user lowered it) this controller is the single owner of convergence: the
scale-down planner leaves it alone, so one requester picks the surplus, not-ready nodes first
(:func:`~vpsie_autoscaler.controllers.nodegroup.status.surplus`, cluster-autoscaler's order).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.nodegroup.status import Backoff, Counts, surplus
from vpsie_autoscaler.controllers.objects import rfc3339
from vpsie_autoscaler.controllers.writes import DRY_RUN_PREFIX
from vpsie_autoscaler.scaling.reasons import REMOVE_ABOVE_MAX

STEP_WAIT_BACKOFF: Final = "WaitingForBackoff"
"""Below ``minNodes`` while the group backs off: nothing is written but the decision."""
STEP_CREATE_MIN: Final = "MinNodes"
"""Create the VPSieNodes missing to ``minNodes`` (also the ``scale_up_total`` reason)."""
STEP_DRAIN_ABOVE_MAX: Final = REMOVE_ABOVE_MAX
"""Request drains of the surplus above ``maxNodes`` (also the ``drain-reason`` annotation and the
``scale_down_total`` reason)."""


@dataclass(frozen=True)
class GroupView:
    """What the rules read: the group's limits, its counted VPSieNodes and its back-off, at ``now``."""

    min_nodes: int
    max_nodes: int
    counts: Counts
    backoff: Backoff
    now: datetime
    members: Sequence[VPSieNode] = ()
    node_ready: Callable[[str], bool] = lambda _name: False


@dataclass(frozen=True)
class Step:
    """One step towards ``[minNodes, maxNodes]``: its reason, how many to create, which to drain."""

    reason: str
    create: int = 0
    drain: tuple[VPSieNode, ...] = ()
    min_nodes: int = 0
    max_nodes: int = 0
    until: datetime | None = None

    def action(self) -> str:
        """What the step's writes do, in words (a dry-run reports ``would`` + this)."""
        if self.reason == STEP_CREATE_MIN:
            return f"create {self.create} node(s) to reach minNodes={self.min_nodes}"
        names = ", ".join(vn.metadata.name for vn in self.drain)
        return f"remove {len(self.drain)} node(s) above maxNodes={self.max_nodes}: {names}"

    def decision(self, *, dry_run: bool, done: int | None = None) -> str:
        """The decision in words (``status.lastDecision``, the Event note). ``done``: how many
        nodes the writes created (a create step); ignored for the other steps."""
        if self.reason == STEP_WAIT_BACKOFF:
            return (
                f"{self.create} node(s) below minNodes={self.min_nodes}; waiting for the back-off to "
                f"end at {rfc3339(self.until) if self.until else 'now'}"
            )
        if dry_run:
            return f"{DRY_RUN_PREFIX}would {self.action()}"
        if self.reason == STEP_CREATE_MIN:
            created = self.create if done is None else done
            return f"created {created} node(s) to reach minNodes={self.min_nodes}"
        names = ", ".join(vn.metadata.name for vn in self.drain)
        return f"requested removal of {len(self.drain)} node(s) above maxNodes={self.max_nodes}: {names}"


Rule = Callable[[GroupView], Step | None]


def below_min_in_backoff(v: GroupView) -> Step | None:
    """Below ``minNodes`` but backing off: wait (cluster-autoscaler's back-off applies to every
    scale-up, ``minNodes`` enforcement included)."""
    if v.counts.current >= v.min_nodes or not v.backoff.active(v.now):
        return None
    need = v.min_nodes - v.counts.current
    return Step(STEP_WAIT_BACKOFF, create=need, min_nodes=v.min_nodes, until=v.backoff.until or v.now)


def below_min(v: GroupView) -> Step | None:
    """Below ``minNodes``: create what is missing (the group's floor, not a reaction to pods)."""
    if v.counts.current >= v.min_nodes:
        return None
    return Step(STEP_CREATE_MIN, create=v.min_nodes - v.counts.current, min_nodes=v.min_nodes)


def above_max(v: GroupView) -> Step | None:
    """Above ``maxNodes``: drain the surplus, not-ready nodes first, newest first."""
    if v.counts.current <= v.max_nodes:
        return None
    chosen = surplus(v.members, v.counts.current - v.max_nodes, v.node_ready)
    return Step(STEP_DRAIN_ABOVE_MAX, drain=tuple(chosen), max_nodes=v.max_nodes)


RULES: Final[tuple[Rule, ...]] = (below_min_in_backoff, below_min, above_max)


def next_step(v: GroupView) -> Step | None:
    """The first rule that has something to do, or None (the group is within its limits)."""
    for rule in RULES:
        step = rule(v)
        if step is not None:
            return step
    return None


def settle(counts: Counts, step: Step | None, done: int) -> Counts:
    """The counts once the step's ``done`` writes show in the cache (the status written now must not
    wait for the watch: created nodes are current and provisioning, drained ones are leaving)."""
    if step is None or done <= 0:
        return counts
    if step.reason == STEP_CREATE_MIN:
        return dataclasses.replace(
            counts, current=counts.current + done, provisioning=counts.provisioning + done
        )
    if step.reason == STEP_DRAIN_ABOVE_MAX:
        return dataclasses.replace(counts, current=counts.current - done, deleting=counts.deleting + done)
    return counts


def desired_nodes(counts: Counts, min_nodes: int, max_nodes: int) -> int:
    """``status.desiredNodes``: the current size clamped to ``[minNodes, maxNodes]``."""
    return min(max(counts.current, min_nodes), max_nodes)
