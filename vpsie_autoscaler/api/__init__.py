"""CRD models for ``autoscaler.vpsie.com/v1alpha1``: NodeGroup and VPSieNode.

The models are the one source of truth: ``vpsie-autoscaler crds`` prints the CRDs generated from them
(:mod:`vpsie_autoscaler.api.crdgen`), and the controllers parse what they read with them.
"""

from vpsie_autoscaler.api.durations import format_duration, parse_duration
from vpsie_autoscaler.api.nodegroup import (
    API_VERSION,
    BackoffSpec,
    ManagedSource,
    NodeGroup,
    NodeGroupSpec,
    NodeGroupStatus,
    NodeTemplate,
    ProvisioningSpec,
    ScaleDownSpec,
    ScaleUpSpec,
    VMSource,
)
from vpsie_autoscaler.api.types import Condition, ObjectMeta, Taint, set_condition
from vpsie_autoscaler.api.vpsienode import (
    PHASES,
    Phase,
    VPSieNode,
    VPSieNodeSpec,
    VPSieNodeStatus,
    hostname_for,
    random_suffix,
)

__all__ = [
    "API_VERSION",
    "PHASES",
    "BackoffSpec",
    "Condition",
    "ManagedSource",
    "NodeGroup",
    "NodeGroupSpec",
    "NodeGroupStatus",
    "NodeTemplate",
    "ObjectMeta",
    "Phase",
    "ProvisioningSpec",
    "ScaleDownSpec",
    "ScaleUpSpec",
    "Taint",
    "VMSource",
    "VPSieNode",
    "VPSieNodeSpec",
    "VPSieNodeStatus",
    "format_duration",
    "hostname_for",
    "parse_duration",
    "random_suffix",
    "set_condition",
]
