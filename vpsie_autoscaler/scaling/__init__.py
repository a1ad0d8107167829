"""Pure scaling decisions: scale-up and scale-down planners over immutable snapshots.

Entry points for the controllers (everything here is pure: no I/O, no clock, no clients):

- scheduling facts (:mod:`vpsie_autoscaler.scaling.scheduling_facts`): :class:`PodInfo`,
  :class:`NodeInfo`, :class:`PDBInfo` (``from_k8s(raw_dict)``), :func:`nodes_from_k8s`,
  :class:`GroupTemplate` (``from_nodegroup``);
- :func:`plan_scale_up` → :class:`ScaleUpPlan`; :func:`plan_scale_down` → :class:`ScaleDownPlan`;
- :class:`ExpanderChain` (``parse("priority,least-waste")``), :class:`ClusterLimits`,
  :class:`ClusterUsage`, :class:`ScaleDownSettings`;
- :class:`Reason` and the reason codes in :mod:`vpsie_autoscaler.scaling.reasons`.
"""

from vpsie_autoscaler.scaling.expanders import ExpanderChain
from vpsie_autoscaler.scaling.groups import GroupTemplate, ScaleDownPolicy, TemplateError
from vpsie_autoscaler.scaling.reasons import Reason
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scaledown import NodeRemoval, ScaleDownPlan, ScaleDownSettings, plan_scale_down
from vpsie_autoscaler.scaling.scaleup import (
    ClusterLimits,
    ClusterUsage,
    GroupIncrease,
    PodOutcome,
    ScaleUpPlan,
    plan_scale_up,
)
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PDBInfo, PodInfo, nodes_from_k8s

__all__ = [
    "ClusterLimits",
    "ClusterUsage",
    "ExpanderChain",
    "GroupIncrease",
    "GroupTemplate",
    "NodeInfo",
    "NodeRemoval",
    "PDBInfo",
    "PodInfo",
    "PodOutcome",
    "Reason",
    "Resources",
    "ScaleDownPlan",
    "ScaleDownPolicy",
    "ScaleDownSettings",
    "ScaleUpPlan",
    "TemplateError",
    "nodes_from_k8s",
    "plan_scale_down",
    "plan_scale_up",
]
