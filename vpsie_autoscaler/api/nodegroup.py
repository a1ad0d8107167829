"""``NodeGroup``: a pool of identical VPSie nodes with its limits and scaling policy (SPEC §3).

Defaults live in the schema (the API server applies them), never in code that writes the object:
the original autoscaler re-defaulted ``enabled: false`` back to ``true`` on every full update because
its Go struct dropped explicit ``false`` values (seed system §1.5). Here the Python defaults mirror the
schema defaults so an object read back parses to the same values, and :meth:`KubeModel.to_k8s` always
writes explicit booleans.

Every CEL rule (``x-kubernetes-validations``) is mirrored by a Python validator with the same message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.types import (
    CONDITIONS_FIELD_EXTRA,
    Condition,
    DurationBounds,
    IntOrPercent,
    KubeModel,
    LabelValue,
    ObjectMeta,
    Quantity,
    Taint,
)

VERSION: Final = "v1alpha1"
API_VERSION: Final = "autoscaler.vpsie.com/v1alpha1"  # f"{GROUP}/{VERSION}", literal for the type checker

MAX_NODES_LIMIT: Final = 1000
"""Upper bound of ``maxNodes``: far above any VPSie account quota, low enough to catch typos."""
MAX_LABELS: Final = 64
MAX_TAINTS: Final = 32
MAX_TAGS: Final = 32
MAX_RESOURCES: Final = 32
IDENTIFIER_MAX_LENGTH: Final = 253
DECISION_MAX_LENGTH: Final = 1024
HOURS_PER_MONTH: Final = 730.0
"""VPSie publishes monthly plan prices; 730 h is the usual month (365 * 24 / 12) for hourly cost."""

# Defaults (SPEC §3; cluster-autoscaler's defaults where the SPEC names them).
DEFAULT_UTILIZATION_THRESHOLD: Final = 0.5
DEFAULT_UNNEEDED_TIME: Final = "10m"
DEFAULT_DELAY_AFTER_SCALE_UP: Final = "10m"
DEFAULT_MAX_CONCURRENT_DRAINS: Final = 1  # cluster-autoscaler --max-drain-parallelism
DEFAULT_DISRUPTION_BUDGET: Final = (
    "10%"  # Karpenter's default budget (rounded up: never 0 for a non-empty group)
)
DEFAULT_MAX_GRACEFUL_TERMINATION: Final = "600s"
DEFAULT_MAX_PROVISION_TIME: Final = "15m"
DEFAULT_BACKOFF_INITIAL: Final = "1m"  # fast fallback (Karpenter caches failed offerings 3 min; CA 5 min)
DEFAULT_BACKOFF_MAX: Final = "15m"

# Condition types on NodeGroup status.
CONDITION_READY: Final = "Ready"
CONDITION_SCALING_UP: Final = "ScalingUp"
CONDITION_SCALING_DOWN: Final = "ScalingDown"
CONDITION_BACKOFF: Final = "Backoff"
CONDITION_AT_MIN_CAPACITY: Final = "AtMinCapacity"
CONDITION_AT_MAX_CAPACITY: Final = "AtMaxCapacity"
CONDITION_CLOUD_ERROR: Final = "CloudError"
NODEGROUP_CONDITION_TYPES: Final = (
    CONDITION_READY,
    CONDITION_SCALING_UP,
    CONDITION_SCALING_DOWN,
    CONDITION_BACKOFF,
    CONDITION_AT_MIN_CAPACITY,
    CONDITION_AT_MAX_CAPACITY,
    CONDITION_CLOUD_ERROR,
)

RULE_MIN_LE_MAX: Final = "self.minNodes <= self.maxNodes"
MSG_MIN_LE_MAX: Final = "minNodes must be less than or equal to maxNodes"
RULE_ONE_SOURCE: Final = "has(self.managed) != has(self.vm)"
MSG_ONE_SOURCE: Final = "exactly one node source must be set: managed or vm"
RULE_ONE_VPSIE_GROUP: Final = "has(self.nodeGroupName) != has(self.nodeGroupId)"
MSG_ONE_VPSIE_GROUP: Final = "exactly one of nodeGroupName or nodeGroupId must be set"
NAME_MAX_LENGTH: Final = 63
RULE_NAME_LENGTH: Final = f"self.metadata.name.size() <= {NAME_MAX_LENGTH}"
MSG_NAME_LENGTH: Final = (
    f"NodeGroup names are at most {NAME_MAX_LENGTH} characters: they are the value of the "
    "autoscaler.vpsie.com/nodegroup label on nodes"
)
RULE_BACKOFF_ORDER: Final = "duration(self.initial) <= duration(self.max)"
MSG_BACKOFF_ORDER: Final = "backoff initial must not exceed backoff max"

Identifier = Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH)]


def _default_of(model: type[KubeModel]) -> dict[str, Any]:
    """Schema default for a nested object: the model's defaults in full, not ``{}``.

    The API server validates a default as written, before nested defaults apply, so ``{}`` would
    fail the object's own CEL rules (``duration(self.initial)`` has no ``initial``).
    """
    return {"default": model().to_k8s()}


class ManagedSource(KubeModel):
    """Nodes come from a VPSie managed Kubernetes cluster: added to one of its VPSie node groups."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": RULE_ONE_VPSIE_GROUP, "message": MSG_ONE_VPSIE_GROUP}]
        }
    )

    cluster_identifier: Identifier = Field(description="VPSie Kubernetes cluster identifier (UUID).")
    node_group_name: Identifier | None = Field(default=None, description="VPSie node group, by name.")
    node_group_id: int | None = Field(default=None, ge=1, description="VPSie node group, by numeric id.")
    size_id: int = Field(ge=1, description="VPSie Kubernetes size (KubeSizeID) of the nodes.")
    datacenter_identifier: Identifier | None = Field(default=None, description="VPSie datacenter identifier.")

    @model_validator(mode="after")
    def _one_vpsie_group(self) -> ManagedSource:
        if (self.node_group_name is None) == (self.node_group_id is None):
            raise ValueError(MSG_ONE_VPSIE_GROUP)
        return self


class VMSource(KubeModel):
    """Nodes are plain VPSie VMs that join the cluster with a boot script (self-managed clusters)."""

    resource_identifier: Identifier = Field(description="VPSie plan identifier (the VM size).")
    os_identifier: Identifier = Field(description="VPSie OS image identifier.")
    dc_identifier: Identifier = Field(description="VPSie datacenter identifier.")
    project_id: Identifier = Field(description="VPSie project identifier (a string, not the numeric id).")
    ssh_key_identifier: Identifier | None = Field(default=None, description="SSH key to install.")
    script_identifier: Identifier | None = Field(
        default=None, description="Startup script that joins the VM to the cluster."
    )
    tags: list[Annotated[str, Field(max_length=IDENTIFIER_MAX_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_TAGS, description="VPSie tags added to every VM."
    )


class NodeTemplate(KubeModel):
    """What a node of this group looks like before it exists, so pending pods can be fitted to it."""

    labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="Labels every node of the group gets (and that pending pods are matched against).",
    )
    taints: list[Taint] = Field(
        default_factory=list, max_length=MAX_TAINTS, description="Taints every node of the group gets."
    )
    resources: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_RESOURCES,
        description="Node capacity (cpu, memory, ephemeral-storage, pods, extended resources such as "
        "nvidia.com/gpu). Omitted entries are filled from the VPSie plan.",
    )
    reserved: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_RESOURCES,
        description="kube-reserved plus system-reserved: subtracted from capacity to get allocatable.",
    )
    instance_type: str | None = Field(
        default=None, max_length=IDENTIFIER_MAX_LENGTH, description="Informational."
    )
    hourly_price: float | None = Field(default=None, ge=0, description="Price per node-hour, for least-cost.")
    monthly_price: float | None = Field(
        default=None, ge=0, description="Price per node-month (VPSie plan price); hourly = monthly / 730."
    )

    def effective_hourly_price(self) -> float | None:
        """``hourlyPrice`` if set, else ``monthlyPrice / 730``, else unknown."""
        if self.hourly_price is not None:
            return self.hourly_price
        if self.monthly_price is not None:
            return self.monthly_price / HOURS_PER_MONTH
        return None


class ScaleUpSpec(KubeModel):
    """Scale-up policy of the group."""

    enabled: bool = Field(default=True, description="Whether pending pods may grow this group.")
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher wins in the priority expander.")


class ScaleDownSpec(KubeModel):
    """Scale-down policy of the group (cluster-autoscaler's defaults)."""

    enabled: bool = Field(default=True, description="Whether nodes of this group may be removed.")
    utilization_threshold: float = Field(
        default=DEFAULT_UTILIZATION_THRESHOLD,
        ge=0,
        le=1,
        description="A node is underutilized when both its requested cpu and memory are below this "
        "fraction of allocatable.",
    )
    unneeded_time: Annotated[str, DurationBounds("0s", "168h")] = Field(
        default=DEFAULT_UNNEEDED_TIME, description="How long a node must be unneeded before removal."
    )
    delay_after_scale_up: Annotated[str, DurationBounds("0s", "24h")] = Field(
        default=DEFAULT_DELAY_AFTER_SCALE_UP, description="No scale-down this long after a scale-up."
    )
    max_concurrent_drains: int = Field(
        default=DEFAULT_MAX_CONCURRENT_DRAINS,
        ge=0,
        le=MAX_NODES_LIMIT,
        description="Non-empty nodes drained at once; 0 removes only empty nodes.",
    )
    disruption_budget: IntOrPercent = Field(
        default=DEFAULT_DISRUPTION_BUDGET,
        description="Nodes of the group drained at once: a count or a percentage of the group "
        "(rounded up). Empty nodes are not paced by it (they go in bulk); 0 freezes the group's scale-down.",
    )
    max_graceful_termination: Annotated[str, DurationBounds("0s", "24h")] = Field(
        default=DEFAULT_MAX_GRACEFUL_TERMINATION, description="How long a drain waits for pods to terminate."
    )
    force_termination_after_grace: bool = Field(
        default=False,
        description="When a node is deleted (NodeGroup or VPSieNode deleted) and its drain has not finished "
        "within maxGracefulTermination, delete it anyway, breaking PodDisruptionBudgets. Off by default: "
        "the deletion waits and says which pod and PDB block it.",
    )

    @property
    def unneeded(self) -> timedelta:
        return parse_duration(self.unneeded_time)

    @property
    def delay_after_up(self) -> timedelta:
        return parse_duration(self.delay_after_scale_up)

    @property
    def graceful_termination(self) -> timedelta:
        return parse_duration(self.max_graceful_termination)


class BackoffSpec(KubeModel):
    """Exponential back-off after failed provisioning: initial, doubled per failure, capped at max."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": RULE_BACKOFF_ORDER, "message": MSG_BACKOFF_ORDER}]
        }
    )

    initial: Annotated[str, DurationBounds("1s", "24h")] = Field(default=DEFAULT_BACKOFF_INITIAL)
    max: Annotated[str, DurationBounds("1s", "24h")] = Field(default=DEFAULT_BACKOFF_MAX)

    @model_validator(mode="after")
    def _ordered(self) -> BackoffSpec:
        if parse_duration(self.initial) > parse_duration(self.max):
            raise ValueError(MSG_BACKOFF_ORDER)
        return self


class ProvisioningSpec(KubeModel):
    """How long a node may take to become Ready, and the back-off after failures."""

    max_provision_time: Annotated[str, DurationBounds("1m", "24h")] = Field(
        default=DEFAULT_MAX_PROVISION_TIME,
        description="A node not Ready this long after creation is deleted and the group backs off.",
    )
    backoff: BackoffSpec = Field(default_factory=BackoffSpec, json_schema_extra=_default_of(BackoffSpec))

    @property
    def provision_timeout(self) -> timedelta:
        return parse_duration(self.max_provision_time)


class NodeGroupSpec(KubeModel):
    """Desired shape and policy of a NodeGroup."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": RULE_MIN_LE_MAX, "message": MSG_MIN_LE_MAX},
                {"rule": RULE_ONE_SOURCE, "message": MSG_ONE_SOURCE},
            ]
        }
    )

    min_nodes: int = Field(ge=0, le=MAX_NODES_LIMIT, description="The group never shrinks below this.")
    max_nodes: int = Field(ge=0, le=MAX_NODES_LIMIT, description="The group never grows above this.")
    managed: ManagedSource | None = Field(default=None, description="Nodes from VPSie managed Kubernetes.")
    vm: VMSource | None = Field(default=None, description="Nodes from plain VPSie VMs.")
    template: NodeTemplate = Field(default_factory=NodeTemplate, json_schema_extra=_default_of(NodeTemplate))
    scale_up: ScaleUpSpec = Field(default_factory=ScaleUpSpec, json_schema_extra=_default_of(ScaleUpSpec))
    scale_down: ScaleDownSpec = Field(
        default_factory=ScaleDownSpec, json_schema_extra=_default_of(ScaleDownSpec)
    )
    provisioning: ProvisioningSpec = Field(
        default_factory=ProvisioningSpec, json_schema_extra=_default_of(ProvisioningSpec)
    )

    @model_validator(mode="after")
    def _rules(self) -> NodeGroupSpec:
        if self.min_nodes > self.max_nodes:
            raise ValueError(MSG_MIN_LE_MAX)
        if (self.managed is None) == (self.vm is None):
            raise ValueError(MSG_ONE_SOURCE)
        return self


class NodeGroupStatus(KubeModel):
    """Observed state of a NodeGroup, written only by the controller (status subresource)."""

    desired_nodes: int = Field(default=0, ge=0, description="Target size.")
    current_nodes: int = Field(
        default=0, ge=0, description="Nodes that exist or are being created, not deleting."
    )
    ready_nodes: int = Field(default=0, ge=0, description="Nodes Ready in Kubernetes.")
    provisioning_nodes: int = Field(default=0, ge=0, description="Nodes being created or joining.")
    deleting_nodes: int = Field(default=0, ge=0, description="Nodes being drained or deleted.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=len(NODEGROUP_CONDITION_TYPES) * 2,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description="Ready, ScalingUp, ScalingDown, Backoff, AtMinCapacity, AtMaxCapacity, CloudError.",
    )
    last_scale_up_time: datetime | None = None
    last_scale_down_time: datetime | None = None
    backoff_until: datetime | None = Field(
        default=None, description="No scale-up of this group before this time."
    )
    consecutive_failures: int = Field(
        default=0, ge=0, description="Provisioning failures since the last success."
    )
    last_decision: str | None = Field(
        default=None, max_length=DECISION_MAX_LENGTH, description="The last scaling decision, in words."
    )
    observed_generation: int | None = Field(default=None, ge=0)

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)


class NodeGroup(KubeModel):
    """A pool of identical VPSie nodes (cluster-scoped, short name ``ng``)."""

    api_version: Literal["autoscaler.vpsie.com/v1alpha1"] = API_VERSION
    kind: Literal["NodeGroup"] = "NodeGroup"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: NodeGroupSpec
    status: NodeGroupStatus = Field(default_factory=NodeGroupStatus)

    @model_validator(mode="after")
    def _name_fits_a_label(self) -> NodeGroup:
        if len(self.metadata.name) > NAME_MAX_LENGTH:
            raise ValueError(MSG_NAME_LENGTH)
        return self

    @classmethod
    def from_k8s(cls, obj: dict[str, Any]) -> NodeGroup:
        """Parse a NodeGroup as read from the API server (raises ``pydantic.ValidationError``)."""
        return cls.model_validate(obj)
