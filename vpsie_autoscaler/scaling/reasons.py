"""Why a decision was (not) made: a constant code plus a message with the numbers.

cert-manager's policy chains return ``(reason, message)``; so do ours. The ``code`` is a stable
CamelCase constant (Event reasons, metric labels, condition reasons); the ``message`` is for humans
("needs 3 cpu, template allocatable 1900m"). ``detail`` refines a code when one code covers several
causes (``PodBlocksEviction`` → ``PodDisruptionBudget``), so metrics can use ``code`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Reason:
    """A decision reason: stable ``code``, optional sub-``detail``, human ``message``."""

    code: str
    message: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# --- predicates (pod vs node or node template) -----------------------------------------------------
INSUFFICIENT_RESOURCE: Final = "InsufficientResource"
TOO_MANY_PODS: Final = "TooManyPods"
NODE_SELECTOR_MISMATCH: Final = "NodeSelectorMismatch"
NODE_AFFINITY_MISMATCH: Final = "NodeAffinityMismatch"
TAINT_NOT_TOLERATED: Final = "TaintNotTolerated"
HOST_PORT_CONFLICT: Final = "HostPortConflict"
ANTI_AFFINITY_CONFLICT: Final = "AntiAffinityConflict"
NODE_UNSCHEDULABLE: Final = "NodeUnschedulable"

# --- scale-up (per pod and per group) ---------------------------------------------------------------
SCALE_UP_DISABLED: Final = "ScaleUpDisabled"
GROUP_IN_BACKOFF: Final = "GroupInBackoff"
GROUP_AT_MAX_SIZE: Final = "GroupAtMaxSize"
CLUSTER_MAX_NODES: Final = "ClusterMaxNodesReached"
CLUSTER_MAX_CORES: Final = "ClusterMaxCoresReached"
CLUSTER_MAX_MEMORY: Final = "ClusterMaxMemoryReached"
NOT_CHOSEN: Final = "NotChosenByExpander"
"""The group could hold the pod, but the expander chain chose another group for it; informational."""
EXPENDABLE_POD: Final = "ExpendablePod"
DAEMONSET_POD: Final = "DaemonSetPod"
NO_GROUPS: Final = "NoNodeGroups"

# --- scale-down (per node) ----------------------------------------------------------------------------
NODE_NOT_READY: Final = "NodeNotReady"
NODE_CORDONED: Final = "NodeCordoned"
"""Cordoned by someone else (a manual drain, a maintenance tool): not ours to remove."""
SCALE_DOWN_DISABLED: Final = "ScaleDownDisabled"
SCALE_DOWN_DISABLED_ANNOTATION: Final = "ScaleDownDisabledAnnotation"
NOT_UNDERUTILIZED: Final = "NotUnderutilized"
POD_BLOCKS_EVICTION: Final = "PodBlocksEviction"
PODS_CANNOT_MOVE: Final = "PodsCannotMove"
NOT_UNNEEDED_LONG_ENOUGH: Final = "NotUnneededLongEnough"
RECENT_SCALE_UP: Final = "RecentScaleUp"
AT_MIN_SIZE: Final = "AtMinSize"
DISRUPTION_BUDGET_EXHAUSTED: Final = "DisruptionBudgetExhausted"
MAX_CONCURRENT_DRAINS: Final = "MaxConcurrentDrains"
MAX_BULK_DELETE: Final = "MaxEmptyBulkDelete"
NODE_PROTECTED: Final = "NodeProtected"
"""The node carries ``autoscaler.vpsie.com/protected=true``."""
SCALE_DOWN_DISABLED_LABEL: Final = "ScaleDownDisabledLabel"
"""The node carries the label ``autoscaler.vpsie.com/scale-down-disabled=true``."""
OUTSIDE_ALLOWED_HOURS: Final = "OutsideAllowedHours"
"""The node's ``scale-down-allowed-hours`` window is closed now."""
INVALID_ALLOWED_HOURS: Final = "InvalidAllowedHours"
"""The node's ``scale-down-allowed-hours`` cannot be read: no removal (never fail open)."""
OUTSIDE_DISRUPTION_WINDOW: Final = "OutsideDisruptionWindow"
"""The NodeGroup has disruption windows and none is open now."""
RECEIVES_MOVED_PODS: Final = "ReceivesMovedPods"
"""The simulation already moves another candidate's pods onto this node: it must stay this pass."""

# --- PodBlocksEviction details ----------------------------------------------------------------------
POD_DISRUPTION_BUDGET: Final = "PodDisruptionBudget"
SAFE_TO_EVICT_FALSE: Final = "SafeToEvictFalse"
DO_NOT_DISRUPT: Final = "DoNotDisrupt"
LOCAL_STORAGE: Final = "LocalStorage"
KUBE_SYSTEM_WITHOUT_PDB: Final = "KubeSystemPodWithoutPDB"
NOT_REPLICATED: Final = "NotReplicated"
LOCAL_PERSISTENT_VOLUME: Final = "LocalPersistentVolume"
"""The pod's PersistentVolume lives on this node (``spec.local``, or node affinity to this node only)."""

# --- scale-down removal reasons (why a node goes) --------------------------------------------------
REMOVE_EMPTY: Final = "Empty"
REMOVE_UNDERUTILIZED: Final = "Underutilized"
REMOVE_ABOVE_MAX: Final = "AboveMaxSize"
