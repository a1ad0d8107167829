"""The settings in effect: each field of ``AutoscalerSettings`` that is set, else its flag (pure).

The flags (environment variables, chart values) are what the process started with; the object named
``default`` overrides them field by field while it exists. A field removed from the object, or the
object deleted, returns that setting to its flag: the flags stay the defaults (the issue the Go
system's one-time read had: a change needed a restart).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from vpsie_autoscaler.api.settings import AutoscalerSettingsSpec
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.flexible import headroom_requests
from vpsie_autoscaler.scaling import ClusterLimits
from vpsie_autoscaler.scaling.resources import EMPTY, Resources, format_units

Source = Literal["flag", "settings"]
FROM_FLAG: Final = "flag"
FROM_SETTINGS: Final = "settings"


@dataclass(frozen=True)
class Effective:
    """What the controllers run with, and where each value came from."""

    expander: str
    limits: ClusterLimits
    scan_interval: float
    dry_run: bool
    headroom: Resources = EMPTY
    """Cluster-wide headroom (``spec.headroom``; no flag: none unless the object sets it)."""
    scale_down_defaults: dict[str, Any] = field(default_factory=dict)
    """NodeGroup ``scaleDown`` defaults by Python field name (no flag: empty keeps the built-in ones)."""
    sources: dict[str, Source] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        """One line for the ``Applied`` condition and the logs."""
        limits = self.limits

        def src(name: str) -> str:
            return self.sources.get(name, FROM_FLAG)

        return (
            f"expander {self.expander} ({src('expander')}); limits nodes {limits.max_nodes or 'none'}, "
            f"cores {limits.max_cores or 'none'}, memory {limits.max_memory_gib or 'none'} GiB "
            f"({src('limits')}); scan interval {self.scan_interval:g}s ({src('scanInterval')}); "
            f"dry-run {'on' if self.dry_run else 'off'} ({src('dryRun')})"
            + (f"; headroom {_words(self.headroom)} (settings)" if self.headroom else "")
            + (
                f"; scale-down defaults {_pairs(self.scale_down_defaults)} (settings)"
                if self.scale_down_defaults
                else ""
            )
        )


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(values.items()))


def _words(requests: Resources) -> str:
    return ", ".join(f"{format_units(k, v)} {k}" for k, v in sorted(requests.items()))


def memory_gib(value: float) -> int:
    """The planner counts whole GiB; rounded up so a fractional limit never becomes 0 ("no limit")."""
    return math.ceil(value)


def from_flags(flags: Settings) -> Effective:
    return effective(flags, None)


def effective(flags: Settings, spec: AutoscalerSettingsSpec | None) -> Effective:
    """The flags, overridden by every field ``spec`` sets."""
    sources: dict[str, Source] = {}
    spec = spec or AutoscalerSettingsSpec()
    expander = flags.expander
    if spec.expander is not None:
        expander, sources["expander"] = ",".join(spec.expander), FROM_SETTINGS
    nodes, cores, memory = flags.max_nodes_total, flags.max_cores_total, flags.max_memory_total_gib
    if spec.limits is not None:
        set_any = False
        if spec.limits.max_nodes_total is not None:
            nodes, set_any = spec.limits.max_nodes_total, True
        if spec.limits.max_cores_total is not None:
            cores, set_any = spec.limits.max_cores_total, True
        if spec.limits.max_memory_total_gib is not None:
            memory, set_any = spec.limits.max_memory_total_gib, True
        if set_any:
            sources["limits"] = FROM_SETTINGS
    scan = flags.scan_interval
    if spec.scan_interval_seconds is not None:
        scan, sources["scanInterval"] = spec.scan_interval_seconds, FROM_SETTINGS
    dry_run = flags.dry_run
    if spec.dry_run is not None:
        dry_run, sources["dryRun"] = spec.dry_run, FROM_SETTINGS
    headroom = headroom_requests(spec.headroom)
    if headroom:
        sources["headroom"] = FROM_SETTINGS
    scale_down: dict[str, Any] = {}
    if spec.scale_down_defaults is not None:
        scale_down = spec.scale_down_defaults.model_dump(exclude_none=True)
        if scale_down:
            sources["scaleDownDefaults"] = FROM_SETTINGS
    return Effective(
        headroom=headroom,
        scale_down_defaults=scale_down,
        expander=expander,
        limits=ClusterLimits(max_nodes=nodes, max_cores=cores, max_memory_gib=memory_gib(memory)),
        scan_interval=scan,
        dry_run=dry_run,
        sources=sources,
    )
