"""The figures a chaos run reports, each with its goal: a figure off its goal fails the run.

Scenarios add figures to a :class:`Figures` registry (one per pytest session, :data:`REGISTRY`);
``tests/chaos/conftest.py`` prints them last, in one line, with the seed that replays the run.
A new scenario only calls :meth:`Figures.add` (or :meth:`Figures.count` / :meth:`Figures.latency`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

Compare = Callable[[float, float], bool]

AT_MOST: Final[Compare] = operator.le
AT_LEAST: Final[Compare] = operator.ge
EQUAL: Final[Compare] = operator.eq
HEADLINES: Final = frozenset({"kills", "VPSie calls"})  # what a scenario did, shown first
_SYMBOL: Final = {id(AT_MOST): "≤", id(AT_LEAST): "≥", id(EQUAL): "="}


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Figure:
    scenario: str
    name: str
    value: float
    goal: float | None = None  # None: reported, not judged
    compare: Compare = AT_MOST
    unit: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        if self.goal is None:
            return True
        if math.isnan(self.value):
            return False
        return self.compare(self.value, self.goal)

    def shown(self) -> str:
        value = f"{self.value:g}" if self.unit == "" else f"{self.value:.1f} {self.unit}".rstrip()
        if math.isnan(self.value):
            value = "n/a"
        return f"{self.name} {value}"

    def line(self) -> str:
        goal = ""
        if self.goal is not None:
            unit = f" {self.unit}" if self.unit else ""
            goal = f" (goal {_SYMBOL.get(id(self.compare), '?')} {self.goal:g}{unit})"
        verdict = "ok" if self.ok else "OFF GOAL"
        detail = f" — {self.detail}" if self.detail else ""
        return f"[{self.scenario}] {self.shown()}{goal} {verdict}{detail}"


@dataclass
class Figures:
    seed: int | None = None
    items: list[Figure] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.items.append(figure)
        return figure

    def count(self, scenario: str, name: str, value: int, goal: int | None = 0, detail: str = "") -> Figure:
        return self.add(
            Figure(scenario, name, float(value), None if goal is None else float(goal), detail=detail)
        )

    def latency(
        self, scenario: str, name: str, samples: Sequence[float], goal: float | None, detail: str = ""
    ) -> list[Figure]:
        """p50 and p99 of ``samples`` (seconds); both judged against ``goal``."""
        return [
            self.add(Figure(scenario, f"{name} p{p}", percentile(samples, p), goal, unit="s", detail=detail))
            for p in (50, 99)
        ]

    def off_goal(self) -> list[Figure]:
        return [f for f in self.items if not f.ok]

    def of(self, scenario: str) -> list[Figure]:
        return [f for f in self.items if f.scenario == scenario]

    def summary(self) -> str:
        """One line per scenario, the way the issue asks for it: ``kills 100 · duplicates 0 · ...``."""
        scenarios = list(dict.fromkeys(f.scenario for f in self.items))
        lines = []
        for s in scenarios:
            mine = sorted(self.of(s), key=lambda f: f.name not in HEADLINES)  # stable: headline first
            lines.append(f"{s}: " + " · ".join(f.shown() for f in mine))
        return "\n".join(lines)

    def report(self) -> str:
        lines = [f.line() for f in self.items]
        off = self.off_goal()
        lines.append(f"FIGURES OFF GOAL ({len(off)}):" if off else "all figures on goal:")
        lines.append(self.summary())
        if self.seed is not None:
            lines.append(f"seed {self.seed} (replay: CHAOS_SEED={self.seed})")
        return "\n".join(lines)


REGISTRY: Final = Figures()
"""The session's figures (all scenarios of one pytest run)."""
