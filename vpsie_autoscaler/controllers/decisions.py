"""Scaling decisions handed to the NodeGroup controller, the single writer of NodeGroup status.

Scale-up and scale-down decide about a group, but they do not write its status: two writers of
``status.lastDecision`` (and of ``desiredNodes``) would overwrite each other from different cache
states, and ``kubectl get ng`` would show whichever wrote last. Instead each decision is

- an Event on the NodeGroup (``ScaledUp``, ``ScaledDown``), written by the controller that decided,
  which ``kubectl describe ng`` lists in order, and
- a :class:`Decision` recorded here; the NodeGroup controller folds the latest one into
  ``status.lastDecision`` on its next reconcile (recording asks for that reconcile at once).

Scale-up also hands over two facts for the status (:class:`GroupFacts`): the headroom and whether it
is held now, and the plans of the last scale-up of a group with several plans.

The log is in memory on purpose: it carries the latest words, not state. The Event persists the
decision; a leader that dies before the fold loses only the ``lastDecision`` text, never a count or a
timer (those are derived from VPSieNodes by the NodeGroup controller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Decision:
    """One scaling decision about one NodeGroup, in words (already prefixed ``dry-run:`` when so)."""

    group: str
    text: str
    by: str
    """The controller that decided (``scaleup``, ``scaledown``): logs say who, status says what."""
    at: datetime


@dataclass(frozen=True, slots=True)
class GroupFacts:
    """``status.headroom`` and ``status.lastPlanChoice`` as scale-up last saw them."""

    headroom: str | None = None
    last_plan_choice: str | None = None


class DecisionLog:
    """The latest recorded :class:`Decision` per NodeGroup, and who to tell when one arrives."""

    def __init__(self) -> None:
        self._latest: dict[str, Decision] = {}
        self._facts: dict[str, GroupFacts] = {}
        self._listeners: list[Callable[[str], None]] = []

    def on_record(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(group)`` after each :meth:`record` (the NodeGroup controller enqueues)."""
        self._listeners.append(listener)

    def record(self, group: str, text: str, *, by: str, at: datetime) -> Decision:
        decision = Decision(group, text, by, at)
        self._latest[group] = decision
        for listener in self._listeners:
            listener(group)
        return decision

    def latest(self, group: str) -> Decision | None:
        return self._latest.get(group)

    def note_facts(self, group: str, facts: GroupFacts) -> None:
        """Keep ``facts`` for the group's status; the NodeGroup controller is told only on a change."""
        if self._facts.get(group) == facts:
            return
        self._facts[group] = facts
        for listener in self._listeners:
            listener(group)

    def facts(self, group: str) -> GroupFacts | None:
        return self._facts.get(group)

    def forget(self, group: str) -> None:
        """The group is gone: drop its decision (bounded memory)."""
        self._latest.pop(group, None)
        self._facts.pop(group, None)
