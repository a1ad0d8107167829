"""``AutoscalerSettings``: the cluster-wide settings, changed at run time (one object, named ``default``).

VPSie's Go autoscaler read its ``AutoscalerConfig`` once at start (later changes were ignored). Here the
object named ``default`` is watched and applied on every change, without a restart: the expander chain,
the cluster-wide limits, the scan interval and dry-run. Every field is optional: a field that is not set
keeps the value of the flag (or environment variable, or chart value) the process started with, so the
flags stay the defaults and removing a field (or the object) returns to them.

The schema refuses bad values (the API server answers with the field and the rule), as for NodeGroups;
whether the controller applied the object is the ``Applied`` condition of its status.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, field_validator

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.types import (
    CONDITIONS_FIELD_EXTRA,
    Condition,
    DurationBounds,
    KubeModel,
    ObjectMeta,
    Quantity,
)

SINGLETON_NAME: Final = "default"
RULE_SINGLETON: Final = f"self.metadata.name == '{SINGLETON_NAME}'"
MSG_SINGLETON: Final = (
    f"AutoscalerSettings is a singleton: name it '{SINGLETON_NAME}' (other names would never be read)"
)
EXPANDER_NAMES: Final = ("priority", "least-waste", "least-cost", "most-pods", "random")
"""The expanders of :mod:`vpsie_autoscaler.scaling.expanders` (a test keeps the two lists equal)."""
CONDITION_APPLIED: Final = "Applied"
MAX_NODES_TOTAL_LIMIT: Final = 100_000
MAX_CORES_TOTAL_LIMIT: Final = 10_000_000
MAX_MEMORY_TOTAL_GIB_LIMIT: Final = 100_000_000.0
MAX_HEADROOM_PODS: Final = 1_000_000

ExpanderName = Literal["priority", "least-waste", "least-cost", "most-pods", "random"]


class ClusterLimitsSpec(KubeModel):
    """Cluster-wide limits over every NodeGroup; 0 means no limit. Unset fields keep the flags."""

    max_nodes_total: int | None = Field(
        default=None, ge=0, le=MAX_NODES_TOTAL_LIMIT, description="Nodes of all NodeGroups (0: none)."
    )
    max_cores_total: int | None = Field(
        default=None, ge=0, le=MAX_CORES_TOTAL_LIMIT, description="CPU cores of all NodeGroups (0: none)."
    )
    max_memory_total_gib: float | None = Field(
        default=None,
        ge=0,
        le=MAX_MEMORY_TOTAL_GIB_LIMIT,
        description="Memory of all NodeGroups in GiB (0: none).",
    )


class ClusterHeadroomSpec(KubeModel):
    """Spare capacity kept free across all NodeGroups together (docs/flexible-plans.md)."""

    cpu: Quantity | None = Field(
        default=None, description="Cores kept free on the NodeGroups' nodes (a quantity such as 2 or 500m)."
    )
    memory: Quantity | None = Field(default=None, description="Memory kept free (a quantity such as 4Gi).")
    pods: int | None = Field(
        default=None, ge=1, le=MAX_HEADROOM_PODS, description="Pod slots kept free on the NodeGroups' nodes."
    )


class ScaleDownDefaultsSpec(KubeModel):
    """Scale-down policy for NodeGroups whose ``spec.scaleDown`` leaves these fields out (a NodeGroup's
    own value always wins; unset here: the built-in default)."""

    utilization_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Default of scaleDown.utilizationThreshold (built-in 0.5)."
    )
    unneeded_time: Annotated[str, DurationBounds("0s", "168h")] | None = Field(
        default=None, description="Default of scaleDown.unneededTime (built-in 10m)."
    )
    delay_after_scale_up: Annotated[str, DurationBounds("0s", "24h")] | None = Field(
        default=None, description="Default of scaleDown.delayAfterScaleUp (built-in 10m)."
    )


class AutoscalerSettingsSpec(KubeModel):
    """Settings applied live; each unset field keeps its flag value (``vpsie-autoscaler run --help``)."""

    expander: list[ExpanderName] | None = Field(
        default=None,
        min_length=1,
        max_length=len(EXPANDER_NAMES),
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="The expander chain, in order (flag --expander): each narrows the candidate groups "
        "to its best and passes ties on.",
    )
    limits: ClusterLimitsSpec | None = Field(
        default=None, description="Cluster-wide limits (flags --max-nodes-total, --max-cores-total, ...)."
    )
    scan_interval: Annotated[str, DurationBounds("1s", "10m")] | None = Field(
        default=None,
        description="Between periodic scale-up, scale-down and cloud passes (a Go duration such as 10s; "
        "flag --scan-interval).",
    )
    headroom: ClusterHeadroomSpec | None = Field(
        default=None,
        description="Cluster-wide headroom: spare capacity kept free on the nodes of all NodeGroups "
        "together, as virtual pods any group may hold (no flag: unset keeps none). Each NodeGroup's own "
        "spec.headroom is kept as well.",
    )
    scale_down_defaults: ScaleDownDefaultsSpec | None = Field(
        default=None,
        description="Scale-down policy of the NodeGroups that leave these scaleDown fields out.",
    )
    dry_run: bool | None = Field(
        default=None,
        description="Compute and report every decision, change nothing (flag --dry-run). Takes effect at "
        "the next decision.",
    )

    @field_validator("expander")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("Duplicate value: each expander at most once")
        return value

    @property
    def scan_interval_seconds(self) -> float | None:
        return None if self.scan_interval is None else parse_duration(self.scan_interval).total_seconds()


class AutoscalerSettingsStatus(KubeModel):
    """Whether the controller applied the object, and what is in effect."""

    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=4,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description="Applied: True once the controller runs with these settings (the message lists what "
        "is in effect and where each value comes from); False with the reason when it cannot.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the Applied condition is about."
    )


class AutoscalerSettings(KubeModel):
    """The cluster-wide settings (cluster-scoped singleton named ``default``)."""

    api_version: Literal["autoscaler.vpsie.com/v1alpha1"] = "autoscaler.vpsie.com/v1alpha1"
    kind: Literal["AutoscalerSettings"] = "AutoscalerSettings"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AutoscalerSettingsSpec = Field(default_factory=AutoscalerSettingsSpec)
    status: AutoscalerSettingsStatus = Field(default_factory=AutoscalerSettingsStatus)
