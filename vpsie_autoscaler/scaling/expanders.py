"""Expanders: choose which NodeGroup grows when several could hold the pending pods.

Upstream: cluster-autoscaler's ``expander`` package and its chaining (``--expander=priority,least-waste``):
each expander *narrows* the candidate set to its best options; ties go to the next expander. A tie
left at the end goes, in this order, to the lower price per pod, then to the option with fewer nodes,
and only then to the seeded random generator (or by name when none is given, so plans are
reproducible). cluster-autoscaler breaks the last tie at random; here an exact tie in waste between
plans of the same shape (one 8-cpu node or two 4-cpu nodes for the same pods) is common, and at
random a burst's nodes change size from run to run. The cheaper, then fewer, nodes are what a user
would pick: fewer launches against VPSie's rate limit, fewer nodes to boot, and less room split into
pieces the scheduler cannot use when it spreads the pods differently from the plan (Karpenter packs
the same way). Names: ``priority``, ``least-waste``, ``least-cost``, ``most-pods``, ``random``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from vpsie_autoscaler.scaling.resources import CPU, MEMORY, Resources

SCORE_TOLERANCE: Final = 1e-9
"""Scores within this of the best count as ties (float noise must not pick a winner)."""


@dataclass(frozen=True, slots=True)
class Option:
    """One way to scale up: grow ``group`` by ``nodes`` to schedule ``pods`` pending pods."""

    group: str
    nodes: int
    pods: int
    requested: Resources
    """Sum of the requests of the pods this option schedules."""
    node_allocatable: Resources
    priority: int = 0
    hourly_price: float | None = None

    def waste(self) -> float:
        """cluster-autoscaler's least-waste score: unused fraction of cpu plus of memory."""
        score = 0.0
        for name in (CPU, MEMORY):
            total = self.node_allocatable[name] * self.nodes
            if total > 0:
                score += (total - self.requested[name]) / total
        return score

    def cost_per_pod(self) -> float:
        """Hourly price of the new nodes per pod they schedule (unknown price: infinite)."""
        if self.hourly_price is None or self.pods == 0:
            return math.inf
        return self.hourly_price * self.nodes / self.pods


Expander = Callable[[Sequence[Option], random.Random | None], list[Option]]


def _best(options: Sequence[Option], score: Callable[[Option], float]) -> list[Option]:
    """The options with the lowest score (within :data:`SCORE_TOLERANCE`)."""
    scores = [score(o) for o in options]
    low = min(scores)
    if math.isinf(low):
        return list(options)
    return [o for o, s in zip(options, scores, strict=True) if s - low <= SCORE_TOLERANCE]


def priority(options: Sequence[Option], _: random.Random | None) -> list[Option]:
    """Highest ``scaleUp.priority`` wins."""
    return _best(options, lambda o: -o.priority)


def least_waste(options: Sequence[Option], _: random.Random | None) -> list[Option]:
    """Least unused cpu + memory on the new nodes."""
    return _best(options, Option.waste)


def least_cost(options: Sequence[Option], _: random.Random | None) -> list[Option]:
    """Lowest hourly price per scheduled pod; groups without a known price lose to priced ones."""
    return _best(options, Option.cost_per_pod)


def most_pods(options: Sequence[Option], _: random.Random | None) -> list[Option]:
    """Schedules the most pending pods."""
    return _best(options, lambda o: -o.pods)


def fewest_nodes(options: Sequence[Option], _: random.Random | None) -> list[Option]:
    """The fewest new nodes (a tie-break, not a chain name)."""
    return _best(options, lambda o: o.nodes)


TIE_BREAKS: Final[tuple[tuple[str, Expander], ...]] = (
    ("least-cost", least_cost),
    ("fewest-nodes", fewest_nodes),
)
"""Applied, in order, to a tie the chain leaves, before the random choice."""


def random_choice(options: Sequence[Option], rng: random.Random | None) -> list[Option]:
    """One option at random (by name order when no generator is given: reproducible)."""
    ordered = sorted(options, key=lambda o: o.group)
    if rng is None:
        return ordered[:1]
    return [rng.choice(ordered)]


EXPANDERS: Final[dict[str, Expander]] = {
    "priority": priority,
    "least-waste": least_waste,
    "least-cost": least_cost,
    "most-pods": most_pods,
    "random": random_choice,
}
DEFAULT_EXPANDERS: Final = "priority,least-waste"


@dataclass(frozen=True, slots=True)
class ExpanderChain:
    """A parsed ``--expander`` value."""

    names: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str = DEFAULT_EXPANDERS) -> ExpanderChain:
        """``"priority,least-waste"`` → chain; unknown names are a clear error."""
        names = tuple(n.strip() for n in spec.split(",") if n.strip())
        if not names:
            raise ValueError("expander chain is empty: use e.g. 'priority,least-waste'")
        unknown = [n for n in names if n not in EXPANDERS]
        if unknown:
            raise ValueError(f"unknown expander(s) {', '.join(unknown)}: choose from {', '.join(EXPANDERS)}")
        return cls(names)

    def choose(
        self, options: Sequence[Option], rng: random.Random | None = None
    ) -> tuple[Option, tuple[str, ...]]:
        """The winning option and the trail (``"least-waste: a, b -> a"``) explaining the choice."""
        if not options:
            raise ValueError("no options to choose from")
        current = list(options)
        trail: list[str] = []
        for name in self.names:
            if len(current) == 1:
                break
            narrowed = EXPANDERS[name](current, rng)
            trail.append(f"{name}: {_names(current)} -> {_names(narrowed)}")
            current = narrowed
        for name, tie_break in TIE_BREAKS:
            if len(current) == 1:
                break
            narrowed = tie_break(current, rng)
            if len(narrowed) < len(current):
                trail.append(f"tie-break {name}: {_names(current)} -> {_names(narrowed)}")
            current = narrowed
        if len(current) > 1:
            narrowed = random_choice(current, rng)
            trail.append(f"tie-break: {_names(current)} -> {_names(narrowed)}")
            current = narrowed
        return current[0], tuple(trail)


def _names(options: Sequence[Option]) -> str:
    return ", ".join(o.group for o in options)
