"""The pure half of the side-by-side benchmark (``benchmarks/compare.py``): what both controllers are
given, how a run's observations become figures, and the comparison table.

Kept free of processes and I/O so it is unit-tested (``tests/unit/test_compare_report.py``) while the
full comparison, which needs the local control plane and minutes, is not part of ``make test``.

- :func:`kwok_instance_types` turns the simulator's plans into Karpenter's kwok instance-type file
  (``INSTANCE_TYPES_FILE_PATH``, the format of ``kwok/cloudprovider/instance_types.json``), so both
  choose among the same shapes at the same hourly price.
- :func:`parse_rss_bytes` / :func:`parse_cpu_seconds` read ``/proc/<pid>/status`` and
  ``/proc/<pid>/stat`` as procfs(5) documents them (VmRSS; utime + stime in clock ticks).
- :func:`burst_figures` turns first-seen times of decisions, Nodes and Running pods into the burst's
  figures; :func:`render_table` prints ours against Karpenter's with the ratio ours / theirs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

HOURS_PER_MONTH: Final = 730.0  # VPSie bills monthly prices by the hour over 730 hours
KWOK_ZONE: Final = "test-zone-a"
MAX_PODS: Final = 110  # the kubelet default; the simulator's Nodes and Karpenter's types both get it


@dataclass(frozen=True)
class Plan:
    """A VPSie size as both controllers see it: the simulator's plan and a kwok instance type."""

    name: str  # the plan nickname: node.kubernetes.io/instance-type on both sides
    cpu: int
    memory_mib: int
    disk_gib: int
    monthly_price: float

    @property
    def hourly_price(self) -> float:
        return self.monthly_price / HOURS_PER_MONTH


def kwok_instance_types(plans: Iterable[Plan]) -> list[dict[str, Any]]:
    """Karpenter's kwok instance types for ``plans``: one on-demand offering each, in one zone.

    Karpenter's kwok provider reads this list instead of its built-in catalogue; the instance-type
    name becomes the Node's ``node.kubernetes.io/instance-type``, as the simulator labels its Nodes
    with the plan name, so the cost of a Node is looked up the same way on both sides.
    """
    return [
        {
            "name": p.name,
            "architecture": "amd64",
            "operatingSystems": ["linux"],
            "resources": {
                "cpu": str(p.cpu),
                "memory": f"{p.memory_mib}Mi",
                "pods": str(MAX_PODS),
                "ephemeral-storage": f"{p.disk_gib}Gi",
            },
            "offerings": [
                {
                    "Price": p.hourly_price,
                    "Available": True,
                    "Requirements": [
                        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [KWOK_ZONE]},
                    ],
                }
            ],
        }
        for p in plans
    ]


def parse_rss_bytes(status_text: str) -> int:
    """Resident set size from ``/proc/<pid>/status`` (the ``VmRSS:  N kB`` line)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value) * 1024
    raise ValueError("no VmRSS line (the process is a zombie or gone)")


def parse_cpu_seconds(stat_text: str, ticks_per_second: int) -> float:
    """User + system CPU time from ``/proc/<pid>/stat`` (fields 14 and 15, after the ``(comm)``)."""
    after_comm = stat_text[stat_text.rindex(")") + 2 :].split()
    utime, stime = int(after_comm[11]), int(after_comm[12])  # fields 14, 15; field 3 is after_comm[0]
    return (utime + stime) / ticks_per_second


@dataclass(frozen=True)
class Usage:
    """A controller's resource use over a window: peak RSS and mean CPU (1.0 = one core)."""

    peak_rss_mib: float
    cpu_cores: float


def usage(samples: Sequence[tuple[float, int, float]]) -> Usage:
    """From ``(monotonic time, rss bytes, cpu seconds)`` samples of one process over a window."""
    if len(samples) < 2:
        raise ValueError("a window needs at least two samples")
    (t0, _, c0), (t1, _, c1) = samples[0], samples[-1]
    return Usage(
        peak_rss_mib=max(rss for _, rss, _ in samples) / 2**20,
        cpu_cores=(c1 - c0) / (t1 - t0) if t1 > t0 else 0.0,
    )


@dataclass(frozen=True)
class BurstFigures:
    """One burst on one side. Times are seconds from the first pod's creation."""

    pods: int
    decision_first_s: float
    decision_last_s: float
    nodes_last_s: float
    running_s: float
    nodes: int
    hourly_cost: float
    types: Mapping[str, int] = field(default_factory=dict)
    nodes_first_s: float | None = None
    nodes_ready_first_s: float | None = None
    nodes_ready_last_s: float | None = None
    bound_first_s: float | None = None
    bound_last_s: float | None = None


def burst_figures(
    *,
    start: float,
    pods: int,
    decisions: Mapping[str, float],
    nodes: Mapping[str, float],
    node_types: Mapping[str, str],
    running_at: float,
    prices: Mapping[str, float],
    nodes_ready: Mapping[str, float] | None = None,
    bound: Mapping[str, float] | None = None,
) -> BurstFigures:
    """A burst's figures from first-seen times (monotonic) of its decisions and Nodes.

    ``decisions`` are the NodeClaims / VPSieNodes created for the burst and ``nodes`` the Node objects
    for it, by name; ``node_types`` maps each Node to its instance type, priced by ``prices``
    (hourly). A Node type missing from ``prices`` is an error: a cost must never be silently zero.
    ``nodes_ready`` (a Node first seen Ready) and ``bound`` (a pod first seen with a node) say where the
    time between the last Node and the last pod Running goes.
    """
    if not decisions or not nodes:
        raise ValueError("a burst without decisions or Nodes has no figures")
    types: dict[str, int] = {}
    for name in nodes:
        kind = node_types[name]
        types[kind] = types.get(kind, 0) + 1
    return BurstFigures(
        pods=pods,
        decision_first_s=min(decisions.values()) - start,
        decision_last_s=max(decisions.values()) - start,
        nodes_last_s=max(nodes.values()) - start,
        running_s=running_at - start,
        nodes=len(nodes),
        hourly_cost=sum(prices[k] * n for k, n in types.items()),
        types=dict(sorted(types.items())),
        nodes_first_s=min(nodes.values()) - start,
        nodes_ready_first_s=min(nodes_ready.values()) - start if nodes_ready else None,
        nodes_ready_last_s=max(nodes_ready.values()) - start if nodes_ready else None,
        bound_first_s=min(bound.values()) - start if bound else None,
        bound_last_s=max(bound.values()) - start if bound else None,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with few samples p99 is the maximum)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs`` for the table (``—`` when either is missing, ``∞`` over a zero)."""
    if ours is None or theirs is None:
        return "—"
    if theirs == 0:
        return "1.00" if ours == 0 else "∞"
    return f"{ours / theirs:.2f}"


@dataclass(frozen=True)
class Row:
    what: str
    ours: float | None
    theirs: float | None
    unit: str
    lower_is_better: bool = True


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "$/h":
        return f"${value:.3f}/h"
    if unit == "nodes":
        return f"{value:.0f}"
    return f"{value:.2f} {unit}" if unit in ("s", "cores") else f"{value:.0f} {unit}"


def render_table(rows: Iterable[Row]) -> str:
    """The Markdown comparison table: ours, Karpenter's, the ratio and whether ours is on target."""
    lines = [
        "| what | vpsie-autoscaler | Karpenter (kwok) | ours / Karpenter | ≤ Karpenter? |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = "—"
        if row.ours is not None and row.theirs is not None:
            better = row.ours <= row.theirs if row.lower_is_better else row.ours >= row.theirs
            verdict = "yes" if better else "**no**"
        lines.append(
            f"| {row.what} | {_fmt(row.ours, row.unit)} | {_fmt(row.theirs, row.unit)} | "
            f"{ratio(row.ours, row.theirs)} | {verdict} |"
        )
    return "\n".join(lines)


def burst_rows(label: str, ours: BurstFigures | None, theirs: BurstFigures | None) -> list[Row]:
    """The rows of one burst size."""

    def get(fig: BurstFigures | None, attr: str) -> float | None:
        return None if fig is None else float(getattr(fig, attr))

    return [
        Row(
            f"{label}: pod → first decision",
            get(ours, "decision_first_s"),
            get(theirs, "decision_first_s"),
            "s",
        ),
        Row(
            f"{label}: pod → last decision", get(ours, "decision_last_s"), get(theirs, "decision_last_s"), "s"
        ),
        Row(f"{label}: pod → last Node object", get(ours, "nodes_last_s"), get(theirs, "nodes_last_s"), "s"),
        Row(f"{label}: pod → all pods Running", get(ours, "running_s"), get(theirs, "running_s"), "s"),
        Row(f"{label}: nodes chosen", get(ours, "nodes"), get(theirs, "nodes"), "nodes"),
        Row(f"{label}: hourly cost chosen", get(ours, "hourly_cost"), get(theirs, "hourly_cost"), "$/h"),
    ]


def mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan
