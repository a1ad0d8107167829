"""``NodeGroup``: a pool of identical VPSie nodes with its limits and scaling policy (docs/scaling.md).

Defaults live in the schema (the API server applies them), never in code that writes the object:
the original autoscaler re-defaulted ``enabled: false`` back to ``true`` on every full update because
its Go struct dropped explicit ``false`` values. Here the Python defaults mirror the
schema defaults so an object read back parses to the same values, and :meth:`KubeModel.to_k8s` always
writes explicit booleans.

Every CEL rule (``x-kubernetes-validations``) is mirrored by a Python validator with the same message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from vpsie_autoscaler.api.durations import parse_duration
from vpsie_autoscaler.api.types import (
    CONDITIONS_FIELD_EXTRA,
    QUALIFIED_NAME_HELP,
    Condition,
    DurationBounds,
    IntOrPercent,
    KeyRule,
    KubeModel,
    LabelValue,
    MapKeys,
    ObjectMeta,
    Quantity,
    Taint,
    cel_rules,
    is_qualified_name,
    quantity_value,
    small_exponent,
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

# Defaults (cluster-autoscaler's defaults where it has the same setting; docs/scaling.md).
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
CONDITION_SOURCE_RESOLVED: Final = "SourceResolved"
"""Managed groups: the VPSie cluster and node group are known (given, configured or discovered)."""
CONDITION_SIZE_MISMATCH: Final = "SizeMismatch"
"""Managed groups: ``spec.managed.sizeId`` differs from the VPSie group's size (the group's size is used)."""
NODEGROUP_CONDITION_TYPES: Final = (
    CONDITION_READY,
    CONDITION_SCALING_UP,
    CONDITION_SCALING_DOWN,
    CONDITION_BACKOFF,
    CONDITION_AT_MIN_CAPACITY,
    CONDITION_AT_MAX_CAPACITY,
    CONDITION_CLOUD_ERROR,
    CONDITION_SOURCE_RESOLVED,
    CONDITION_SIZE_MISMATCH,
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


def _cel_string(value: str) -> str:
    """A CEL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- template labels ----------------------------------------------------------------------------------
# Keys in the kubernetes.io and k8s.io namespaces belong to Kubernetes. The kubelet refuses to start
# with any of them in --node-labels (which is how a node of a VM group gets its template labels,
# vpsie/bootstrap.py) unless the key is in the kubelet.kubernetes.io/ or node.kubernetes.io/ namespace
# or in its fixed set of labels it and the cloud provider set themselves (kubernetes.io/hostname,
# kubernetes.io/os, kubernetes.io/arch, node.kubernetes.io/instance-type, topology.kubernetes.io/region
# and zone, and their beta.kubernetes.io/ and failure-domain.beta.kubernetes.io/ forms):
# k8s.io/kubernetes pkg/kubelet/apis/well_known_labels.go (kubeletLabels, kubeletLabelNamespaces,
# IsKubeletLabel), enforced by cmd/kubelet/app/options ValidateKubeletFlags and, for the kubelet's own
# Node updates, by the NodeRestriction admission plugin (which also reserves node-restriction.kubernetes.io/
# and so node-role.kubernetes.io/ for administrators). That fixed set describes the machine, not the
# group (the hostname is per node; os, arch, instance type and region come from the plan and datacenter),
# so a template must not claim it either: the planners would fit pods to a node that will not match.
OWN_KEY_PATTERN: Final = r"^([^/]*\.)?autoscaler\.vpsie\.com/"
KUBE_KEY_PATTERN: Final = r"^([^/]*\.)?(kubernetes|k8s)\.io/"
KUBELET_ALLOWED_KEY_PATTERN: Final = r"^([^/]*\.)?(kubelet|node)\.kubernetes\.io/"
INSTANCE_TYPE_LABEL: Final = "node.kubernetes.io/instance-type"
_OWN_KEY: Final = re.compile(OWN_KEY_PATTERN)
_KUBE_KEY: Final = re.compile(KUBE_KEY_PATTERN)
_KUBELET_ALLOWED_KEY: Final = re.compile(KUBELET_ALLOWED_KEY_PATTERN)


def is_template_label_key_allowed(key: str) -> bool:
    """Not the autoscaler's own key, nor a Kubernetes key the kubelet sets or refuses."""
    if _OWN_KEY.match(key):
        return False
    return not _KUBE_KEY.match(key) or (
        _KUBELET_ALLOWED_KEY.match(key) is not None and key != INSTANCE_TYPE_LABEL
    )


LABEL_KEY_SYNTAX: Final = KeyRule(
    cel="!format.qualifiedName().validate(k).hasValue()",
    what="label key",
    message=f"label keys are qualified names: {QUALIFIED_NAME_HELP}",
    check=is_qualified_name,
)
LABEL_KEY_RESERVED: Final = KeyRule(
    cel=f"!k.matches({_cel_string(OWN_KEY_PATTERN)}) && (!k.matches({_cel_string(KUBE_KEY_PATTERN)}) || "
    f"(k.matches({_cel_string(KUBELET_ALLOWED_KEY_PATTERN)}) && k != {_cel_string(INSTANCE_TYPE_LABEL)}))",
    what="reserved label key",
    message="template labels must not use the keys the autoscaler sets (autoscaler.vpsie.com/) nor "
    "kubernetes.io/ or k8s.io/ keys, which the kubelet sets itself (hostname, os, arch, instance-type, "
    "topology) or refuses in --node-labels (node-role.kubernetes.io/ included); of those only the "
    "kubelet.kubernetes.io/ and node.kubernetes.io/ namespaces are allowed",
    check=is_template_label_key_allowed,
)

# --- template taints ----------------------------------------------------------------------------------
# autoscaler.vpsie.com/ taints are the autoscaler's own (to-be-deleted: a node carrying it is being
# removed). node.kubernetes.io/ taints are set and removed by the kubelet and the node lifecycle
# controller (not-ready, unreachable, unschedulable, *-pressure, network-unavailable, out-of-service:
# k8s.io/api core/v1 well_known_taints.go), node.cloudprovider.kubernetes.io/uninitialized by the cloud
# controller. A template carrying one would make every new node look broken or already leaving.
RESERVED_TAINT_PATTERN: Final = (
    r"^(([^/]*\.)?autoscaler\.vpsie\.com|([^/]*\.)?node\.kubernetes\.io|node\.cloudprovider\.kubernetes\.io)/"
)
_RESERVED_TAINT: Final = re.compile(RESERVED_TAINT_PATTERN)
RULE_TAINT_RESERVED: Final = f"self.all(t, !t.key.matches({_cel_string(RESERVED_TAINT_PATTERN)}))"
MSG_TAINT_RESERVED: Final = (
    "template taints must not use autoscaler.vpsie.com/ keys (the autoscaler's own, such as "
    "to-be-deleted) nor node.kubernetes.io/ or node.cloudprovider.kubernetes.io/ keys (set and removed "
    "by the kubelet, the node lifecycle controller and the cloud controller)"
)
RULE_TAINT_UNIQUE: Final = "self.all(t, self.exists_one(u, u.key == t.key && u.effect == t.effect))"
MSG_TAINT_UNIQUE: Final = "taints must be unique by key and effect pair"

# --- template resources -------------------------------------------------------------------------------
STANDARD_RESOURCES: Final = ("cpu", "memory", "ephemeral-storage", "pods")
HUGEPAGES_PREFIX: Final = "hugepages-"


def is_resource_name(name: str) -> bool:
    """Kubernetes' node resource names: a standard one, or a qualified (prefixed) extended resource."""
    if not is_qualified_name(name):
        return False
    return "/" in name or name in STANDARD_RESOURCES or name.startswith(HUGEPAGES_PREFIX)


RESOURCE_NAME: Final = KeyRule(
    cel="!format.qualifiedName().validate(k).hasValue() && (k.contains('/') || "
    f"k in [{', '.join(_cel_string(r) for r in STANDARD_RESOURCES)}] || "
    f"k.startsWith({_cel_string(HUGEPAGES_PREFIX)}))",
    what="resource name",
    message="resource names are cpu, memory, ephemeral-storage, pods, hugepages-<size> or a qualified "
    "extended resource name such as nvidia.com/gpu",
    check=is_resource_name,
)
CPU_MAX: Final = "1000000"
"""One million cores: no machine comes close, and a misplaced unit ("4000000" for 4000m) is caught."""
_CPU_EXP_OK: Final = small_exponent("string(self['cpu'])")
RULE_CPU_MAX: Final = (
    f"!('cpu' in self) || !{_CPU_EXP_OK} || !isQuantity(string(self['cpu'])) || "
    f"quantity(string(self['cpu'])).compareTo(quantity('{CPU_MAX}')) <= 0"
)
MSG_CPU_MAX: Final = f"cpu must be at most {CPU_MAX} (one million cores)"
RULE_RESERVED_LE_RESOURCES: Final = (
    "!has(self.reserved) || !has(self.resources) || self.reserved.all(k, !(k in self.resources) || "
    f"!{small_exponent('string(self.reserved[k])')} || !{small_exponent('string(self.resources[k])')} || "
    "!isQuantity(string(self.reserved[k])) || !isQuantity(string(self.resources[k])) || "
    "quantity(string(self.reserved[k])).compareTo(quantity(string(self.resources[k]))) <= 0)"
)
MSG_RESERVED_LE_RESOURCES: Final = "reserved must not exceed resources: allocatable would be negative"

# --- prices -------------------------------------------------------------------------------------------
MAX_HOURLY_PRICE: Final = 10_000.0
"""Per node-hour: two orders of magnitude above the dearest cloud machines; catches a price in cents."""
MAX_MONTHLY_PRICE: Final = MAX_HOURLY_PRICE * HOURS_PER_MONTH
RULE_ONE_PRICE: Final = "!(has(self.hourlyPrice) && has(self.monthlyPrice))"
MSG_ONE_PRICE: Final = (
    "set at most one of hourlyPrice and monthlyPrice: the hourly price is derived from the monthly one "
    "(monthlyPrice / 730), two could disagree"
)

# --- VM tags ------------------------------------------------------------------------------------------
TAG_MAX_LENGTH: Final = IDENTIFIER_MAX_LENGTH
RULE_TAG_SPACES: Final = "self.trim() == self"
MSG_TAG_SPACES: Final = "VM tags must not begin or end with whitespace"

# --- immutable source ---------------------------------------------------------------------------------
RULE_SOURCE_KIND_IMMUTABLE: Final = "has(self.managed) == has(oldSelf.managed)"
MSG_SOURCE_KIND_IMMUTABLE: Final = (
    "the node source of a NodeGroup cannot change between managed and vm: its nodes come from the "
    "old source; create a new NodeGroup instead"
)
RULE_MANAGED_IMMUTABLE: Final = (
    "has(self.clusterIdentifier) == has(oldSelf.clusterIdentifier) && "
    "(!has(self.clusterIdentifier) || self.clusterIdentifier == oldSelf.clusterIdentifier) && "
    "has(self.nodeGroupName) == has(oldSelf.nodeGroupName) && "
    "(!has(self.nodeGroupName) || self.nodeGroupName == oldSelf.nodeGroupName) && "
    "has(self.nodeGroupId) == has(oldSelf.nodeGroupId) && "
    "(!has(self.nodeGroupId) || self.nodeGroupId == oldSelf.nodeGroupId)"
)
MSG_MANAGED_IMMUTABLE: Final = (
    "managed clusterIdentifier, nodeGroupName and nodeGroupId cannot change: the group's nodes belong "
    "to that VPSie cluster and node group; create a new NodeGroup instead"
)
RULE_PROJECT_IMMUTABLE: Final = "self == oldSelf"
MSG_PROJECT_IMMUTABLE: Final = (
    "vm projectId cannot change: the group's VMs live in that VPSie project; create a new NodeGroup instead"
)

Identifier = Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH)]
GROUP_RETAIN: Final = "Retain"
GROUP_DELETE: Final = "Delete"


def _default_of(model: type[KubeModel]) -> dict[str, Any]:
    """Schema default for a nested object: the model's defaults in full, not ``{}``.

    The API server validates a default as written, before nested defaults apply, so ``{}`` would
    fail the object's own CEL rules (``duration(self.initial)`` has no ``initial``).
    """
    return {"default": model().to_k8s()}


def _tag(value: str) -> str:
    if value.strip() != value:
        raise ValueError(MSG_TAG_SPACES)
    return value


VMTag = Annotated[
    str,
    Field(
        min_length=1,
        max_length=TAG_MAX_LENGTH,
        json_schema_extra=cel_rules((RULE_TAG_SPACES, MSG_TAG_SPACES)),
    ),
    AfterValidator(_tag),
]


class ManagedSource(KubeModel):
    """Nodes come from a VPSie managed Kubernetes cluster: added to one of its VPSie node groups."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (RULE_ONE_VPSIE_GROUP, MSG_ONE_VPSIE_GROUP), (RULE_MANAGED_IMMUTABLE, MSG_MANAGED_IMMUTABLE)
        )
    )

    cluster_identifier: Identifier | None = Field(
        default=None,
        description="VPSie Kubernetes cluster identifier (UUID). Omitted: the --vpsie-cluster-identifier "
        "setting, else the stock vpsie-secret's resourceIdentifier, else the one VPSie cluster whose nodes "
        "are this cluster's Nodes (by hostname or IP); status.managed shows which.",
    )
    node_group_name: Identifier | None = Field(default=None, description="VPSie node group, by name.")
    node_group_id: int | None = Field(default=None, ge=1, description="VPSie node group, by numeric id.")
    size_id: int | None = Field(
        default=None,
        ge=1,
        description="VPSie Kubernetes size (KubeSizeID) of the nodes. Omitted: the VPSie group's size. A "
        "value that differs from the VPSie group's is reported (condition SizeMismatch), never planned with.",
    )
    datacenter_identifier: Identifier | None = Field(
        default=None, description="VPSie datacenter identifier. Omitted: the VPSie group's."
    )
    group_deletion_policy: Literal["Retain", "Delete"] = Field(
        default=GROUP_RETAIN,
        description="What deleting this NodeGroup does to the VPSie node group once its nodes are gone: "
        "Retain (default) keeps it; Delete deletes it if this NodeGroup created it and no node is left "
        "in it (a group with nodes is kept and reported: deleting it would take them down undrained).",
    )

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
    project_id: Identifier = Field(
        description="VPSie project identifier (a string, not the numeric id). Immutable.",
        json_schema_extra=cel_rules((RULE_PROJECT_IMMUTABLE, MSG_PROJECT_IMMUTABLE)),
    )
    ssh_key_identifier: Identifier | None = Field(default=None, description="SSH key to install.")
    script_identifier: Identifier | None = Field(
        default=None, description="Startup script that joins the VM to the cluster."
    )
    tags: list[VMTag] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="VPSie tags added to every VM (distinct, non-empty).",
    )

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, tags: list[str]) -> list[str]:
        seen: set[str] = set()
        for tag in tags:
            if tag in seen:
                raise ValueError(f"Duplicate value: {tag!r}: VM tags must be distinct")
            seen.add(tag)
        return tags


class NodeTemplate(KubeModel):
    """What a node of this group looks like before it exists, so pending pods can be fitted to it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": RULE_RESERVED_LE_RESOURCES, "message": MSG_RESERVED_LE_RESOURCES},
                {"rule": RULE_ONE_PRICE, "message": MSG_ONE_PRICE},
            ]
        }
    )

    labels: Annotated[dict[str, LabelValue], MapKeys((LABEL_KEY_SYNTAX, LABEL_KEY_RESERVED))] = Field(
        default_factory=dict,
        max_length=MAX_LABELS,
        description="Labels every node of the group gets (and that pending pods are matched against). "
        "Not autoscaler.vpsie.com/ keys, nor kubernetes.io/ or k8s.io/ keys outside kubelet.kubernetes.io/ "
        "and node.kubernetes.io/ (the kubelet owns or refuses those).",
    )
    taints: list[Taint] = Field(
        default_factory=list,
        max_length=MAX_TAINTS,
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": RULE_TAINT_UNIQUE, "message": MSG_TAINT_UNIQUE},
                {"rule": RULE_TAINT_RESERVED, "message": MSG_TAINT_RESERVED},
            ]
        },
        description="Taints every node of the group gets (unique by key and effect; not "
        "autoscaler.vpsie.com/, node.kubernetes.io/ or node.cloudprovider.kubernetes.io/ keys).",
    )
    resources: Annotated[dict[str, Quantity], MapKeys((RESOURCE_NAME,), ((RULE_CPU_MAX, MSG_CPU_MAX),))] = (
        Field(
            default_factory=dict,
            max_length=MAX_RESOURCES,
            description="Node capacity (cpu, memory, ephemeral-storage, pods, extended resources such as "
            "nvidia.com/gpu). Omitted entries are filled from the VPSie plan. Quantities from 0 to 1Pi; "
            "cpu at most 1000000.",
        )
    )
    reserved: Annotated[dict[str, Quantity], MapKeys((RESOURCE_NAME,), ((RULE_CPU_MAX, MSG_CPU_MAX),))] = (
        Field(
            default_factory=dict,
            max_length=MAX_RESOURCES,
            description="kube-reserved plus system-reserved: subtracted from capacity to get allocatable. "
            "Never more than resources.",
        )
    )
    instance_type: str | None = Field(
        default=None,
        max_length=IDENTIFIER_MAX_LENGTH,
        description="The plan's name, for people: copied to each VPSieNode (the PLAN column of kubectl get "
        "vn); it changes nothing else.",
    )
    hourly_price: float | None = Field(
        default=None,
        ge=0,
        le=MAX_HOURLY_PRICE,
        description="Price per node-hour, for least-cost. At most one of hourlyPrice and monthlyPrice.",
    )
    monthly_price: float | None = Field(
        default=None,
        ge=0,
        le=MAX_MONTHLY_PRICE,
        description="Price per node-month (VPSie plan price); hourly = monthly / 730.",
    )

    @model_validator(mode="after")
    def _rules(self) -> NodeTemplate:
        for name in ("resources", "reserved"):
            cpu = getattr(self, name).get("cpu")
            if cpu is not None and quantity_value(cpu) > Decimal(CPU_MAX):  # type: ignore[operator]
                raise ValueError(f"{name}: {MSG_CPU_MAX}")
        over = [
            k
            for k, v in self.reserved.items()
            if k in self.resources and quantity_value(v) > quantity_value(self.resources[k])  # type: ignore[operator]
        ]
        if over:
            raise ValueError(
                "reserved exceeds resources for '"
                + "', '".join(sorted(over))
                + f"': {MSG_RESERVED_LE_RESOURCES}"
            )
        if self.hourly_price is not None and self.monthly_price is not None:
            raise ValueError(MSG_ONE_PRICE)
        bad = sorted({t.key for t in self.taints if _RESERVED_TAINT.match(t.key)})
        if bad:
            raise ValueError("reserved taint key '" + "', '".join(bad) + f"': {MSG_TAINT_RESERVED}")
        pairs = [(t.key, t.effect) for t in self.taints]
        if len(set(pairs)) != len(pairs):
            raise ValueError(MSG_TAINT_UNIQUE)
        return self

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


MAX_WINDOWS: Final = 16
SCHEDULE_MAX_LENGTH: Final = 128
SCHEDULE_PATTERN: Final = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9*?,/-]+( +[0-9*?,/-]+){4})$"
)


class DisruptionWindowSpec(KubeModel):
    """Consolidation or scale-down may act from each firing of the schedule, for the duration (UTC)."""

    # As Karpenter's NodePool disruption budgets with a schedule. A schedule that matches the pattern
    # but not cron's ranges (minute 99) keeps consolidation and scale-down off and is reported on the
    # nodes: never "fails open".

    schedule: str = Field(
        min_length=1,
        max_length=SCHEDULE_MAX_LENGTH,
        pattern=SCHEDULE_PATTERN,
        description='Five-field cron in UTC (minute hour day-of-month month day-of-week, e.g. "0 22 * * *") '
        "or @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually.",
    )
    duration: Annotated[str, DurationBounds("1m", "168h")] = Field(
        description="How long the window stays open after each firing (a Go duration such as 8h)."
    )


SETTINGS_DEFAULTED: Final = ("utilization_threshold", "unneeded_time", "delay_after_scale_up")
"""ScaleDownSpec fields whose default is cluster-wide (AutoscalerSettings ``scaleDownDefaults``, else the
built-in one): the schema has no default for them, so an omitted one stays omitted in the stored object
and :meth:`NodeGroup.with_scale_down_defaults` can tell it from a value that was written."""
_SETTINGS_DEFAULTED_KEYS: Final = ("utilizationThreshold", "unneededTime", "delayAfterScaleUp")


def _no_schema_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ScaleDownSpec(KubeModel):
    """Scale-down policy of the group (cluster-autoscaler's defaults)."""

    enabled: bool = Field(default=True, description="Whether nodes of this group may be removed.")
    utilization_threshold: float = Field(
        default=DEFAULT_UTILIZATION_THRESHOLD,
        ge=0,
        le=1,
        json_schema_extra=_no_schema_default,
        description="A node is underutilized when both its requested cpu and memory are below this "
        "fraction of allocatable. Unset: AutoscalerSettings scaleDownDefaults, else 0.5.",
    )
    unneeded_time: Annotated[str, DurationBounds("0s", "168h")] = Field(
        default=DEFAULT_UNNEEDED_TIME,
        json_schema_extra=_no_schema_default,
        description="How long a node must be unneeded before removal. Unset: AutoscalerSettings "
        "scaleDownDefaults, else 10m.",
    )
    delay_after_scale_up: Annotated[str, DurationBounds("0s", "24h")] = Field(
        default=DEFAULT_DELAY_AFTER_SCALE_UP,
        json_schema_extra=_no_schema_default,
        description="No scale-down this long after a scale-up. Unset: AutoscalerSettings scaleDownDefaults, "
        "else 10m.",
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
    windows: list[DisruptionWindowSpec] = Field(
        default_factory=list,
        max_length=MAX_WINDOWS,
        description="When set, nodes of this group are removed by scale-down only inside one of these "
        "windows (a cron schedule and a duration, UTC, as Karpenter's NodePool budgets); empty: any time. "
        "Consolidation has its own spec.consolidation.windows.",
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


DEFAULT_CONSOLIDATE_AFTER: Final = "15m"
DEFAULT_MIN_SAVINGS_PERCENT: Final = 20


class ConsolidationSpec(KubeModel):
    """Consolidation: replace this group's underused nodes with fewer or cheaper ones (opt-in)."""

    enabled: bool = Field(
        default=False,
        description="Whether nodes of this group may be removed or replaced to save money: their pods fit "
        "on the remaining nodes (of any group) plus at most one new node of a cheaper group.",
    )
    consolidate_after: Annotated[str, DurationBounds("0s", "168h")] = Field(
        default=DEFAULT_CONSOLIDATE_AFTER,
        description="A node is a candidate only this long after its pods last changed (a Go duration).",
    )
    min_savings_percent: int = Field(
        default=DEFAULT_MIN_SAVINGS_PERCENT,
        ge=0,
        le=100,
        description="Act only when the hourly saving exceeds this percentage of the removed nodes' price: "
        "small savings are not worth the evictions.",
    )
    windows: list[DisruptionWindowSpec] = Field(
        default_factory=list,
        max_length=MAX_WINDOWS,
        description="When set, consolidation acts only inside one of these windows (UTC); empty: any time.",
    )

    @property
    def consolidate_after_delta(self) -> timedelta:
        return parse_duration(self.consolidate_after)


class BackoffSpec(KubeModel):
    """Exponential back-off after failed provisioning: initial, doubled per failure, capped at max."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": RULE_BACKOFF_ORDER, "message": MSG_BACKOFF_ORDER}]
        }
    )

    initial: Annotated[str, DurationBounds("1s", "24h")] = Field(
        default=DEFAULT_BACKOFF_INITIAL,
        description="Back-off after the first failed provisioning (a Go duration such as 1m), doubled for "
        "each further failure since the last node that became Ready. Quota, plan-unavailable and "
        "invalid-request errors back off for max at once.",
    )
    max: Annotated[str, DurationBounds("1s", "24h")] = Field(
        default=DEFAULT_BACKOFF_MAX,
        description="The longest back-off (a Go duration such as 15m); at least initial.",
    )

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
    backoff: BackoffSpec = Field(
        default_factory=BackoffSpec,
        json_schema_extra=_default_of(BackoffSpec),
        description="Exponential back-off of scale-up after failed provisioning; scale-up falls back to the "
        "next eligible group meanwhile.",
    )

    @property
    def provision_timeout(self) -> timedelta:
        return parse_duration(self.max_provision_time)


# --- flexible plans -----------------------------------------------------------------------------------
MAX_PLANS: Final = 32
MAX_CATEGORIES: Final = 8
MAX_PLAN_CPU: Final = 1024
"""Cores of the largest plan a range may name: above any VPSie plan, low enough to catch a millicore typo."""
RULE_ONE_PLAN_FORM: Final = "has(self.sizes) != has(self.requirements)"
MSG_ONE_PLAN_FORM: Final = (
    "plans: set exactly one of sizes (a list) or requirements (ranges resolved in the catalogue)"
)
RULE_CPU_RANGE: Final = "!has(self.min) || !has(self.max) || self.min <= self.max"
MSG_CPU_RANGE: Final = "cpu min must be less than or equal to cpu max"
RULE_MEMORY_RANGE: Final = (
    "!has(self.min) || !has(self.max) || "
    f"!{small_exponent('string(self.min)')} || !{small_exponent('string(self.max)')} || "
    "!isQuantity(string(self.min)) || !isQuantity(string(self.max)) || "
    "quantity(string(self.min)).compareTo(quantity(string(self.max))) <= 0"
)
MSG_MEMORY_RANGE: Final = "memory min must be less than or equal to memory max"
RULE_MANAGED_SIZES: Final = (
    "!has(self.plans) || !has(self.plans.sizes) || !has(self.managed) || "
    "self.plans.sizes.all(s, s.matches('^[1-9][0-9]{0,9}$'))"
)
MSG_MANAGED_SIZES: Final = (
    "plans.sizes of a managed group are VPSie Kubernetes size ids (numbers such as '3'): VPSie keeps "
    "one node group per size"
)
_SIZE_ID: Final = re.compile(r"^[1-9][0-9]{0,9}$")

# --- headroom -------------------------------------------------------------------------------------------
RULE_HEADROOM_FORM: Final = "has(self.nodes) != (has(self.cpu) || has(self.memory) || has(self.pods))"
MSG_HEADROOM_FORM: Final = (
    "headroom is either resources (cpu, memory, pods) or a number of spare nodes: set one form"
)
RULE_HEADROOM_NODES_LE_MAX: Final = (
    "!has(self.headroom) || !has(self.headroom.nodes) || self.headroom.nodes <= self.maxNodes"
)
MSG_HEADROOM_NODES_LE_MAX: Final = (
    "headroom.nodes must not exceed maxNodes: spare nodes are nodes of the group"
)


class CPURange(KubeModel):
    """Inclusive range of a plan's cores."""

    model_config = ConfigDict(json_schema_extra=cel_rules((RULE_CPU_RANGE, MSG_CPU_RANGE)))

    min: int | None = Field(default=None, ge=1, le=MAX_PLAN_CPU, description="Fewest cores.")
    max: int | None = Field(default=None, ge=1, le=MAX_PLAN_CPU, description="Most cores.")

    @model_validator(mode="after")
    def _ordered(self) -> CPURange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(MSG_CPU_RANGE)
        return self


class MemoryRange(KubeModel):
    """Inclusive range of a plan's memory."""

    model_config = ConfigDict(json_schema_extra=cel_rules((RULE_MEMORY_RANGE, MSG_MEMORY_RANGE)))

    min: Quantity | None = Field(default=None, description="Least memory (a quantity such as 4Gi).")
    max: Quantity | None = Field(default=None, description="Most memory (a quantity such as 16Gi).")

    @model_validator(mode="after")
    def _ordered(self) -> MemoryRange:
        low, high = self.min, self.max
        if low is not None and high is not None and quantity_value(low) > quantity_value(high):  # type: ignore[operator]
            raise ValueError(MSG_MEMORY_RANGE)
        return self


class PlanRequirementsSpec(KubeModel):
    """Plans of the VPSie catalogue (in the group's datacenter) that a new node may use."""

    cpu: CPURange | None = Field(default=None, description="Cores of the plan, inclusive.")
    memory: MemoryRange | None = Field(default=None, description="Memory of the plan, inclusive.")
    categories: list[Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH)]] = Field(
        default_factory=list,
        max_length=MAX_CATEGORIES,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="VPSie plan categories (such as 'Shared CPU'); empty: any.",
    )


class PlansSpec(KubeModel):
    """Several plans instead of one: the planner picks, per pending workload, the cheapest that fits."""

    model_config = ConfigDict(json_schema_extra=cel_rules((RULE_ONE_PLAN_FORM, MSG_ONE_PLAN_FORM)))

    sizes: list[Identifier] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_PLANS,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="The plans allowed: VM plan identifiers (resourceIdentifier), or for a managed group "
        "VPSie Kubernetes size ids ('3'); VPSie node groups for the other sizes are created on demand.",
    )
    requirements: PlanRequirementsSpec | None = Field(
        default=None, description="Ranges that select the allowed plans from the VPSie catalogue."
    )

    @model_validator(mode="after")
    def _one_form(self) -> PlansSpec:
        if (self.sizes is None) == (self.requirements is None):
            raise ValueError(MSG_ONE_PLAN_FORM)
        if self.sizes is not None and len(set(self.sizes)) != len(self.sizes):
            raise ValueError("Duplicate value: plans.sizes must be distinct")
        return self


class HeadroomSpec(KubeModel):
    """Spare capacity the group keeps free at all times (as virtual pods in the planners)."""

    model_config = ConfigDict(json_schema_extra=cel_rules((RULE_HEADROOM_FORM, MSG_HEADROOM_FORM)))

    cpu: Quantity | None = Field(
        default=None, description="Cores kept free on the group's nodes (a quantity such as 2 or 500m)."
    )
    memory: Quantity | None = Field(default=None, description="Memory kept free (a quantity such as 4Gi).")
    pods: int | None = Field(default=None, ge=1, le=MAX_NODES_LIMIT * 110, description="Pod slots kept free.")
    nodes: int | None = Field(
        default=None,
        ge=1,
        le=MAX_NODES_LIMIT,
        description="Instead of resources: this many nodes that run no pod that would have to move.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> HeadroomSpec:
        resources = self.cpu is not None or self.memory is not None or self.pods is not None
        if (self.nodes is not None) == resources:
            raise ValueError(MSG_HEADROOM_FORM)
        return self


class NodeGroupSpec(KubeModel):
    """Desired shape and policy of a NodeGroup."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": RULE_MIN_LE_MAX, "message": MSG_MIN_LE_MAX},
                {"rule": RULE_ONE_SOURCE, "message": MSG_ONE_SOURCE},
                {"rule": RULE_SOURCE_KIND_IMMUTABLE, "message": MSG_SOURCE_KIND_IMMUTABLE},
                {"rule": RULE_MANAGED_SIZES, "message": MSG_MANAGED_SIZES},
                {"rule": RULE_HEADROOM_NODES_LE_MAX, "message": MSG_HEADROOM_NODES_LE_MAX},
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
        default_factory=ScaleDownSpec,
        json_schema_extra={
            "default": {
                k: v for k, v in ScaleDownSpec().to_k8s().items() if k not in _SETTINGS_DEFAULTED_KEYS
            }
        },
    )
    provisioning: ProvisioningSpec = Field(
        default_factory=ProvisioningSpec, json_schema_extra=_default_of(ProvisioningSpec)
    )
    consolidation: ConsolidationSpec = Field(
        default_factory=ConsolidationSpec,
        json_schema_extra=_default_of(ConsolidationSpec),
        description="Consolidation (fewer or cheaper nodes); off unless enabled.",
    )
    plans: PlansSpec | None = Field(
        default=None,
        description="Several plans instead of the source's one: new nodes get the cheapest allowed plan "
        "that fits the pending pods (or the cheaper mix). The source's plan still makes the minNodes nodes.",
    )
    headroom: HeadroomSpec | None = Field(
        default=None,
        description="Spare capacity kept free at all times: scale-up adds nodes when pods take it, "
        "scale-down never removes it. Resources (cpu, memory, pods) or a number of spare nodes.",
    )

    @model_validator(mode="after")
    def _rules(self) -> NodeGroupSpec:
        if self.min_nodes > self.max_nodes:
            raise ValueError(MSG_MIN_LE_MAX)
        if (self.managed is None) == (self.vm is None):
            raise ValueError(MSG_ONE_SOURCE)
        sizes = self.plans.sizes if self.plans is not None else None
        if self.managed is not None and sizes is not None and not all(_SIZE_ID.match(s) for s in sizes):
            raise ValueError(MSG_MANAGED_SIZES)
        if (
            self.headroom is not None
            and self.headroom.nodes is not None
            and self.headroom.nodes > self.max_nodes
        ):
            raise ValueError(MSG_HEADROOM_NODES_LE_MAX)
        return self


def update_violations(old: NodeGroupSpec, new: NodeGroupSpec) -> list[str]:
    """The transition rules (``oldSelf``) an update from ``old`` to ``new`` breaks, by message.

    The Python side of the API server's immutability rules: the source of an existing group is fixed.
    """
    out = []
    if (old.managed is None) != (new.managed is None):
        out.append(MSG_SOURCE_KIND_IMMUTABLE)
    if old.managed is not None and new.managed is not None:
        before, after = old.managed, new.managed
        if (before.cluster_identifier, before.node_group_name, before.node_group_id) != (
            after.cluster_identifier,
            after.node_group_name,
            after.node_group_id,
        ):
            out.append(MSG_MANAGED_IMMUTABLE)
    if old.vm is not None and new.vm is not None and old.vm.project_id != new.vm.project_id:
        out.append(MSG_PROJECT_IMMUTABLE)
    return out


ClusterFrom = Literal["spec", "setting", "secret", "nodes"]


class ResolvedManagedSource(KubeModel):
    """Where a managed group's nodes come from, as the controller resolved it (status.managed)."""

    cluster_identifier: Identifier = Field(description="The VPSie cluster the group's nodes belong to.")
    cluster_name: str | None = Field(default=None, max_length=IDENTIFIER_MAX_LENGTH, description="Its name.")
    cluster_from: ClusterFrom = Field(
        description="How the cluster was found: spec (clusterIdentifier), setting "
        "(--vpsie-cluster-identifier), "
        "secret (the stock vpsie-secret's resourceIdentifier) or nodes (the one VPSie cluster whose nodes "
        "are this cluster's Nodes)."
    )
    node_group_id: int | None = Field(default=None, ge=1, description="The VPSie node group's numeric id.")
    node_group_name: str | None = Field(
        default=None, max_length=IDENTIFIER_MAX_LENGTH, description="The VPSie node group's name."
    )
    size_id: int | None = Field(
        default=None, ge=1, description="The VPSie group's size (KubeSizeID): what new nodes get."
    )
    datacenter_identifier: str | None = Field(
        default=None, max_length=IDENTIFIER_MAX_LENGTH, description="The VPSie group's datacenter."
    )
    created: bool = Field(
        default=False, description="True when this NodeGroup's controller created the VPSie node group."
    )


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
    last_scale_up_time: datetime | None = Field(
        default=None,
        description="When nodes were last added to the group; scale-down waits delayAfterScaleUp after it.",
    )
    last_scale_down_time: datetime | None = Field(
        default=None, description="When the removal of nodes above maxNodes was last requested."
    )
    backoff_until: datetime | None = Field(
        default=None, description="No scale-up of this group before this time."
    )
    consecutive_failures: int = Field(
        default=0, ge=0, description="Provisioning failures since the last success."
    )
    last_decision: str | None = Field(
        default=None, max_length=DECISION_MAX_LENGTH, description="The last scaling decision, in words."
    )
    headroom: str | None = Field(
        default=None,
        max_length=DECISION_MAX_LENGTH,
        description="The headroom kept free and whether the group's nodes hold it now "
        "(e.g. '2 cpu: held', '1 spare node: 1 node on the way').",
    )
    last_plan_choice: str | None = Field(
        default=None,
        max_length=DECISION_MAX_LENGTH,
        description="The plans of the last scale-up of a group with several plans, and why "
        "(e.g. '1 x 8cpu + 2 x 2cpu at 0.1100/h (cheapest mix of plans)').",
    )
    managed: ResolvedManagedSource | None = Field(
        default=None,
        description="Managed groups: the VPSie cluster, node group, size and datacenter in use, and how the "
        "cluster was found.",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation of the spec this status was computed from: older than the "
        "object's generation means the controller has not yet acted on the latest change.",
    )

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

    def with_scale_down_defaults(self, defaults: Mapping[str, Any]) -> NodeGroup:
        """This group with the scale-down fields its object leaves out (:data:`SETTINGS_DEFAULTED`)
        taken from ``defaults`` (AutoscalerSettings ``scaleDownDefaults``, by Python field name); a
        field the object sets always wins."""
        given = self.spec.scale_down.model_fields_set
        update = {
            k: v for k, v in defaults.items() if k in SETTINGS_DEFAULTED and k not in given and v is not None
        }
        if not update:
            return self
        scale_down = self.spec.scale_down.model_copy(update=update)
        return self.model_copy(update={"spec": self.spec.model_copy(update={"scale_down": scale_down})})

    def with_resolved_source(self) -> NodeGroup:
        """This group with the managed source completed from ``status.managed``: what new nodes are
        made from and what the planners plan with.

        The cluster and datacenter fill what the spec omits. The size is always the VPSie group's once
        known: VPSie gives a new node its group's size whatever ``sizeId`` says, so a disagreeing
        ``sizeId`` is reported (condition SizeMismatch) and never planned with. The VPSie group stays
        named as the spec names it (records of the group are keyed by that name).
        """
        src, found = self.spec.managed, self.status.managed
        if src is None or found is None:
            return self
        if src.cluster_identifier is not None and src.cluster_identifier != found.cluster_identifier:
            return self  # resolved for an older spec: wait for the controller
        resolved = src.model_copy(
            update={
                "cluster_identifier": found.cluster_identifier,
                "size_id": found.size_id or src.size_id,
                "datacenter_identifier": src.datacenter_identifier or found.datacenter_identifier,
            }
        )
        return self.model_copy(update={"spec": self.spec.model_copy(update={"managed": resolved})})
