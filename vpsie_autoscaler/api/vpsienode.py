"""``VPSieNode``: one per VPSie instance the autoscaler owns (Karpenter's NodeClaim).

It is created *before* the cloud call, with the hostname chosen up front. The spec is a frozen record of
what to create and how to delete it (a CEL transition rule refuses changes); everything learned later
goes to status, written by the VPSieNode controller alone. The *launch record* (``status.launch``) is
written before VPSie is asked for the instance (a write-ahead log entry): once it exists the request
counts as sent, whatever became of the answer, so a crash at any moment is resumed by waiting for the
evidence (the instance showing up) and never by asking twice (docs/lifecycle.md).
"""

from __future__ import annotations

import random
import re
import secrets
import string
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator

from vpsie_autoscaler.api.nodegroup import (
    API_VERSION,
    MAX_LABELS,
    MAX_TAINTS,
    MSG_ONE_SOURCE,
    RULE_ONE_SOURCE,
    ManagedSource,
    VMSource,
)
from vpsie_autoscaler.api.types import (
    CONDITIONS_FIELD_EXTRA,
    MESSAGE_MAX_LENGTH,
    Condition,
    KubeModel,
    LabelValue,
    ObjectMeta,
    Taint,
)

Phase = Literal["Pending", "Provisioning", "Joining", "Ready", "Draining", "Deleting", "Failed"]
PHASES: Final[tuple[Phase, ...]] = (
    "Pending",
    "Provisioning",
    "Joining",
    "Ready",
    "Draining",
    "Deleting",
    "Failed",
)
"""Pending (object exists, no cloud call yet) → Provisioning (create accepted) → Joining (instance
running, Node not Ready) → Ready → Draining → Deleting; Failed when provisioning timed out or failed."""

IN_FLIGHT_PHASES: Final[frozenset[str]] = frozenset({"Pending", "Provisioning", "Joining"})
"""Capacity on the way: counted by scale-up before asking for more (ignoring it orders too many nodes)."""
LEAVING_PHASES: Final[frozenset[str]] = frozenset({"Draining", "Deleting", "Failed"})
"""Never counted as capacity (a deleting node counted as current would be counted twice)."""

ERROR_MESSAGE_MAX_LENGTH: Final = 1024
"""What the lifecycle controller keeps of one error in ``status.lastError`` and condition messages (the
schema allows ``MESSAGE_MAX_LENGTH``): a pod, its PDB and the API's words fit; ``kubectl describe`` stays
readable."""

HOSTNAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
HOSTNAME_MAX_LENGTH: Final = 63

RULE_SPEC_IMMUTABLE: Final = "self == oldSelf"
MSG_SPEC_IMMUTABLE: Final = "spec is immutable: delete the VPSieNode and create a new one"
RULE_PHASE_KEYS: Final = "self.all(k, k in " + str(list(PHASES)).replace('"', "'") + ")"
MSG_PHASE_KEYS: Final = "phaseTimestamps keys must be phase names"

HOSTNAME_SUFFIX_LENGTH: Final = 5
"""``<nodegroup>-<5 random [a-z0-9]>`` (docs/architecture.md, "Creating capacity")."""


def hostname_for(group: str, suffix: str) -> str:
    """The hostname (and VPSieNode name) of a new node: ``<group>-<suffix>``, a valid DNS label.

    The caller passes :data:`HOSTNAME_SUFFIX_LENGTH` random ``[a-z0-9]`` characters; the group
    part is lowercased, stripped of characters a DNS label cannot hold and shortened so the whole
    fits 63 characters. Raises ``ValueError`` for a suffix that is not lowercase alphanumeric.
    """
    if not re.fullmatch(r"[a-z0-9]+", suffix):
        raise ValueError(f"hostname suffix {suffix!r} must be lowercase letters and digits")
    base = re.sub(r"[^a-z0-9-]+", "-", group.lower()).strip("-")
    base = base[: HOSTNAME_MAX_LENGTH - len(suffix) - 1].rstrip("-") or "node"
    return f"{base}-{suffix}"


def random_suffix(rng: random.Random | None = None) -> str:
    """:data:`HOSTNAME_SUFFIX_LENGTH` random ``[a-z0-9]`` (cryptographic unless a seeded ``rng`` is given)."""
    alphabet = string.ascii_lowercase + string.digits
    if rng is None:
        return "".join(secrets.choice(alphabet) for _ in range(HOSTNAME_SUFFIX_LENGTH))
    return "".join(rng.choice(alphabet) for _ in range(HOSTNAME_SUFFIX_LENGTH))


CONDITION_LAUNCHED: Final = "Launched"
CONDITION_REGISTERED: Final = "Registered"
CONDITION_READY: Final = "Ready"
CONDITION_DRAINED: Final = "Drained"


BASELINE_MAX_ITEMS: Final = 1000


class AdoptTarget(KubeModel):
    """An instance that exists in VPSie without a record: the VPSieNode is created to own it."""

    identifier: str = Field(min_length=1, max_length=253, description="VPSie identifier of the instance.")
    hostname: str = Field(min_length=1, max_length=253, description="VPSie hostname of the instance.")


class LaunchRecord(KubeModel):
    """What was asked of VPSie for this record and which instance answered (written ahead of the call)."""

    requested_hostname: str = Field(
        min_length=1,
        max_length=253,
        description="The hostname this record asked for (plain VMs: the handle).",
    )
    sent_at: datetime = Field(
        description="Written before the create call: from then on the request counts as sent, even if "
        "its answer was lost."
    )
    baseline: list[str] = Field(
        default_factory=list,
        max_length=BASELINE_MAX_ITEMS,
        description="Managed groups: the group's node hostnames (lower case) seen before the call; only a "
        "node outside it can answer this launch.",
    )
    outcome: Literal["Done", "Unknown", "NotDone"] | None = Field(
        default=None,
        description="The create call's answer when it was recorded: Done, Unknown (answer lost, counts as "
        "sent) or NotDone (refused: nothing will answer this launch). Absent: written ahead of a call whose "
        "answer nobody recorded (same rule as Unknown: sent).",
    )
    bound_hostname: str | None = Field(
        default=None, max_length=253, description="VPSie hostname of the instance bound to this launch."
    )
    bound_identifier: str | None = Field(
        default=None, max_length=253, description="VPSie identifier of the instance bound to this launch."
    )
    bound_at: datetime | None = Field(default=None, description="When the instance was bound.")
    adopted: bool = Field(
        default=False, description="True when the instance existed without a record and was adopted."
    )


class VPSieNodeSpec(KubeModel):
    """What to create in VPSie and how to find it again (immutable)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": RULE_ONE_SOURCE, "message": MSG_ONE_SOURCE},
                {"rule": RULE_SPEC_IMMUTABLE, "message": MSG_SPEC_IMMUTABLE},
            ]
        }
    )

    node_group: str = Field(min_length=1, max_length=253, description="Owning NodeGroup.")
    hostname: str = Field(
        max_length=HOSTNAME_MAX_LENGTH,
        pattern=HOSTNAME_PATTERN,
        description="Chosen before the cloud call; the handle to find the instance after a crash.",
    )
    managed: ManagedSource | None = Field(default=None, description="Copy of the group's managed source.")
    vm: VMSource | None = Field(default=None, description="Copy of the group's VM source.")
    labels: dict[str, LabelValue] = Field(
        default_factory=dict, max_length=MAX_LABELS, description="Labels applied to the Node when it joins."
    )
    taints: list[Taint] = Field(
        default_factory=list, max_length=MAX_TAINTS, description="Taints applied to the Node when it joins."
    )
    instance_type: str | None = Field(default=None, max_length=253, description="Informational (plan name).")
    plan_size_id: int | None = Field(
        default=None,
        ge=1,
        description="Managed groups with several plans: the VPSie Kubernetes size (KubeSizeID) of this "
        "node when it is not the size of the group's own VPSie node group. The node is added to the "
        "cluster's VPSie node group of that size (VPSie keeps one per size), found by size or created.",
    )
    adopt: AdoptTarget | None = Field(
        default=None, description="Set when the record is created for an existing instance nobody asked for."
    )

    @model_validator(mode="after")
    def _one_source(self) -> VPSieNodeSpec:
        if (self.managed is None) == (self.vm is None):
            raise ValueError(MSG_ONE_SOURCE)
        return self


class VPSieNodeStatus(KubeModel):
    """Lifecycle state of the instance, written only by the controller."""

    phase: Phase | None = Field(
        default=None,
        description="Lifecycle phase: Pending (recorded, VPSie not asked yet), Provisioning (create sent), "
        "Joining (instance running, Node not Ready yet), Ready, Draining (pods being evicted), Deleting "
        "(instance being deleted); Failed when provisioning failed or timed out (kept for a while: the "
        "group's back-off is derived from Failed records).",
    )
    launch: LaunchRecord | None = Field(
        default=None, description="The launch record: written before VPSie is asked, bound to the instance."
    )
    instance_identifier: str | None = Field(default=None, max_length=253, description="VPSie identifier.")
    instance_id: int | None = Field(default=None, ge=0, description="VPSie numeric id.")
    node_name: str | None = Field(default=None, max_length=253, description="The Kubernetes Node.")
    ip: str | None = Field(default=None, max_length=64, description="Primary IP address.")
    pods_remaining: int | None = Field(
        default=None,
        ge=0,
        description="While Draining: how many of the Node's pods are still to leave (evictions pending, "
        "refused by a PodDisruptionBudget or still terminating; DaemonSet, mirror and finished pods do "
        "not count), updated on every pass of the drain; unset when no drain is under way.",
    )
    phase_timestamps: dict[str, datetime] = Field(
        default_factory=dict,
        max_length=len(PHASES),
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": RULE_PHASE_KEYS, "message": MSG_PHASE_KEYS}]
        },
        description="When each phase was entered.",
    )
    last_error: str | None = Field(
        default=None,
        max_length=MESSAGE_MAX_LENGTH,
        description="The last thing that went wrong, as reason: message (CreateFailed, ProvisionTimeout, "
        "DrainFailed, an eviction a PDB refused, ...); cleared when the node becomes Ready.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra=CONDITIONS_FIELD_EXTRA,
        description="Launched (VPSie accepted the create or the instance was adopted), Registered (the "
        "Node exists), Ready (the Node is Ready; False with the failure reason when Failed), Drained (False "
        "while draining, reason DrainFailed when a drain was aborted).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status was computed from."
    )

    @model_validator(mode="after")
    def _phase_keys(self) -> VPSieNodeStatus:
        bad = sorted(set(self.phase_timestamps) - set(PHASES))
        if bad:
            raise ValueError(f"{MSG_PHASE_KEYS}: {bad}")
        return self


class VPSieNode(KubeModel):
    """One VPSie instance owned by the autoscaler (cluster-scoped, short name ``vn``)."""

    api_version: Literal["autoscaler.vpsie.com/v1alpha1"] = API_VERSION
    kind: Literal["VPSieNode"] = "VPSieNode"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: VPSieNodeSpec
    status: VPSieNodeStatus = Field(default_factory=VPSieNodeStatus)

    @classmethod
    def from_k8s(cls, obj: dict[str, Any]) -> VPSieNode:
        """Parse a VPSieNode as read from the API server (raises ``pydantic.ValidationError``)."""
        return cls.model_validate(obj)
