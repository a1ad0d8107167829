"""Well-known label, annotation, taint and finalizer keys.

One place for every key the autoscaler reads or writes on Kubernetes objects, so the controllers, the
planners, the chart and the documentation cannot drift apart. Keys we honour from other autoscalers are
named after their owners (cluster-autoscaler, Karpenter) so an operator migrating keeps their
annotations working.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "autoscaler.vpsie.com"
"""The API group of our CRDs; every key we own lives under it."""

# --- labels -------------------------------------------------------------------------------------------
NODEGROUP_LABEL: Final = f"{GROUP}/nodegroup"
"""On Nodes and VPSieNodes: the NodeGroup that owns them. The only way a Node is linked to a group;
nodes without it are never touched."""

VPSIENODE_LABEL: Final = f"{GROUP}/vpsienode"
"""On Nodes: the VPSieNode that created the node (lookup from Node to its VPSieNode)."""

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "vpsie-autoscaler"

HOSTNAME_LABEL: Final = "kubernetes.io/hostname"
"""The only topology key whose pod anti-affinity the planners model (one pod per node)."""

# --- annotations on Nodes -----------------------------------------------------------------------------
UNNEEDED_SINCE_ANNOTATION: Final = f"{GROUP}/unneeded-since"
"""RFC 3339 time since which the scale-down planner has found the node unneeded. Persisted so the
``unneededTime`` timer survives restarts and leader changes (cluster-autoscaler issue #7873)."""

SCALE_DOWN_DISABLED_ANNOTATION: Final = f"{GROUP}/scale-down-disabled"
"""``"true"`` on a Node: never remove it."""

CA_SCALE_DOWN_DISABLED_ANNOTATION: Final = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
"""cluster-autoscaler's node annotation with the same meaning, honoured for easy migration."""

PROTECTED_ANNOTATION: Final = f"{GROUP}/protected"
"""``"true"`` on a Node: never remove it by scale-down (the key VPSie's Go autoscaler honoured)."""

SCALE_DOWN_DISABLED_LABEL: Final = f"{GROUP}/scale-down-disabled"
"""``"true"`` as a *label* on a Node: never remove it by scale-down (the Go autoscaler read the label;
the annotation of the same key is honoured too)."""

SCALE_DOWN_ANNOTATION: Final = f"{GROUP}/scale-down"
"""``"disabled"`` on a Node: never remove it by scale-down (the Go autoscaler's policy key)."""

SCALE_DOWN_ALLOWED_HOURS_ANNOTATION: Final = f"{GROUP}/scale-down-allowed-hours"
"""``"HH:MM-HH:MM"`` (UTC, may wrap midnight) on a Node: scale-down may remove it only inside this daily
window. A value that cannot be read blocks its removal (and is reported), it never allows it."""

# --- annotations on Pods ------------------------------------------------------------------------------
SAFE_TO_EVICT_ANNOTATION: Final = "cluster-autoscaler.kubernetes.io/safe-to-evict"
"""``"false"`` blocks scale-down of the pod's node; ``"true"`` lifts the local-storage, kube-system and
not-replicated rules (cluster-autoscaler semantics). PDBs still apply."""

SAFE_TO_EVICT_LOCAL_VOLUMES_ANNOTATION: Final = "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes"
"""Comma-separated volume names whose local data may be lost on eviction."""

DO_NOT_DISRUPT_ANNOTATION: Final = "karpenter.sh/do-not-disrupt"
"""Karpenter's annotation: ``"true"`` blocks voluntary disruption; a duration (``"30m"``) blocks it until
the pod has run that long. Honoured on pods and on nodes."""

MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
"""Static (mirror) pods are managed by the kubelet; they never move and never block."""

# --- annotations on VPSieNodes (the drain protocol, docs/architecture.md) ----------------------------
DRAIN_REQUESTED_ANNOTATION: Final = f"{GROUP}/drain-requested"
"""RFC 3339 time at which scale-down or maxNodes enforcement asked for the node to be removed; the
lifecycle controller then drains it and deletes the VPSieNode. Nothing else deletes capacity."""

DRAIN_REASON_ANNOTATION: Final = f"{GROUP}/drain-reason"
"""Why (``Empty``, ``Underutilized``, ``AboveMaxSize``: ``NodeRemoval.reason`` of the planner)."""

# --- taints -------------------------------------------------------------------------------------------
TO_BE_DELETED_TAINT: Final = f"{GROUP}/to-be-deleted"
"""NoSchedule taint put on a node before it is drained. A node carrying it is being removed: it is
never counted as capacity, never a destination for moved pods, and every loop removes it from nodes
that are not actually being deleted (cluster-autoscaler #5657 leaks its own)."""

# --- finalizers ---------------------------------------------------------------------------------------
INSTANCE_FINALIZER: Final = f"{GROUP}/instance"
"""On VPSieNodes: the VPSie instance is deleted before the object may go."""

NODEGROUP_FINALIZER: Final = f"{GROUP}/nodegroup"
"""On NodeGroups: its VPSieNodes are deleted before the group may go."""

SCALE_DOWN_DISABLED_ANNOTATIONS: Final = (SCALE_DOWN_DISABLED_ANNOTATION, CA_SCALE_DOWN_DISABLED_ANNOTATION)
