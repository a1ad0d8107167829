"""NodeGroup objects → the planners' flexible plans and headroom (:mod:`vpsie_autoscaler.scaling.plans`,
:mod:`vpsie_autoscaler.scaling.headroom`), and the chosen plan → the VPSieNode that carries it.

- ``spec.plans``: the catalogue's options (:meth:`~.catalogue.PlanCatalogue.options`) become
  :class:`PlanShape` values, each with the group's template (reserved resources, DaemonSet overhead)
  applied the way the single-plan template is (:meth:`GroupTemplate.from_nodegroup`), then filtered by
  ``sizes`` or resolved by ``requirements``. Until the catalogue has answered, the group plans with
  its source's plan only.
- A VM VPSieNode carries its plan in ``spec.vm.resourceIdentifier`` (the lifecycle controller creates
  the VM from that copy), so a VM group's chosen plan goes into the record the scale-up controller
  creates, and the record's plan shapes its in-flight capacity.
- Managed groups: VPSie keeps one node group per size, so a size other than the source's needs its own
  VPSie node group; creating those on demand is not wired yet, and a managed group plans with its
  source's size (:data:`MANAGED_NOT_WIRED` is logged once per group).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.nodegroup import HeadroomSpec, NodeGroup, PlanRequirementsSpec
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.catalogue import PlanCatalogue
from vpsie_autoscaler.scaling import GroupTemplate, NodeInfo, PodInfo
from vpsie_autoscaler.scaling.headroom import NO_HEADROOM, Headroom, unmet
from vpsie_autoscaler.scaling.plans import (
    PlanRequirements,
    PlanShape,
    plan_node,
    resolve_requirements,
)
from vpsie_autoscaler.scaling.resources import CPU, MEMORY, PODS, Resources, to_units

log = structlog.get_logger("vpsie_autoscaler.controllers.flexible")

MANAGED_NOT_WIRED: Final = (
    "spec.plans of a managed group is not used yet: VPSie node groups for other sizes are not created "
    "on demand; the group's own size is used"
)
_warned: set[str] = set()


def headroom_of(ng: NodeGroup) -> Headroom:
    """``spec.headroom`` for the planners (no headroom when unset)."""
    spec: HeadroomSpec | None = ng.spec.headroom
    if spec is None:
        return NO_HEADROOM
    raw: dict[str, int] = {}
    if spec.cpu is not None:
        raw[CPU] = to_units(CPU, spec.cpu)
    if spec.memory is not None:
        raw[MEMORY] = to_units(MEMORY, spec.memory)
    if spec.pods is not None:
        raw[PODS] = spec.pods
    return Headroom(Resources(raw), spec.nodes or 0)


def requirements_of(spec: PlanRequirementsSpec) -> PlanRequirements:
    cpu, memory = spec.cpu, spec.memory
    return PlanRequirements(
        min_cpu=(cpu.min or 0) * 1000 if cpu is not None else 0,
        max_cpu=cpu.max * 1000 if cpu is not None and cpu.max is not None else None,
        min_memory=to_units(MEMORY, memory.min) if memory is not None and memory.min is not None else 0,
        max_memory=to_units(MEMORY, memory.max) if memory is not None and memory.max is not None else None,
        categories=frozenset(spec.categories),
    )


def plan_shapes(
    ng: NodeGroup, catalogue: PlanCatalogue, daemonset_pods: Sequence[PodInfo]
) -> tuple[PlanShape, ...]:
    """The plans ``ng`` may choose from, smallest first (empty: single-plan group, or not known yet)."""
    spec = ng.spec.plans
    if spec is None:
        return ()
    if ng.spec.managed is not None:
        if ng.metadata.name not in _warned:
            _warned.add(ng.metadata.name)
            log.warning("flexible plans not used", nodegroup=ng.metadata.name, reason=MANAGED_NOT_WIRED)
        return ()
    options = catalogue.options(ng)
    if not options:
        return ()
    shapes: list[PlanShape] = []
    for facts in options:
        if spec.sizes is not None and facts.identifier not in spec.sizes:
            continue
        try:
            shaped = GroupTemplate.from_nodegroup(
                ng, size=0, plan_capacity=facts.capacity, daemonset_pods=daemonset_pods
            )
        except ValueError:  # a plan without cpu or memory in the catalogue cannot hold a pod
            continue
        shapes.append(
            PlanShape(
                facts.identifier,
                shaped.allocatable,
                shaped.capacity,
                facts.hourly_price,
                label=facts.name,
                category=facts.category,
            )
        )
    if spec.requirements is not None:
        return resolve_requirements(requirements_of(spec.requirements), shapes)
    return tuple(sorted(shapes, key=PlanShape.size_key))


def flexible(
    template: GroupTemplate, ng: NodeGroup, catalogue: PlanCatalogue, daemonset_pods: Sequence[PodInfo]
) -> GroupTemplate:
    """``template`` with the group's plans and headroom (unchanged when it has neither)."""
    plans = plan_shapes(ng, catalogue, daemonset_pods)
    spare = headroom_of(ng)
    if not plans and spare.empty:
        return template
    return dataclasses.replace(template, plans=plans, spare=spare)


def record_plan(vpsienode: Mapping[str, Any]) -> str:
    """The plan a VPSieNode (raw) is created with: its VM ``resourceIdentifier`` ("" otherwise)."""
    vm = (vpsienode.get("spec") or {}).get("vm") or {}
    return str(vm.get("resourceIdentifier") or "")


def record_node(group: GroupTemplate, vpsienode: Mapping[str, Any], hostname: str) -> NodeInfo:
    """The capacity a VPSieNode without a Node brings: its own plan's shape in a flexible group."""
    plan = record_plan(vpsienode)
    shape = next((p for p in group.plans if p.name == plan), None)
    if shape is None:
        return group.virtual_node(hostname)
    return plan_node(group, shape, hostname)


def with_plan(vn: VPSieNode, plan: PlanShape | None) -> VPSieNode:
    """``vn`` created on ``plan`` (a VM group's chosen plan); unchanged for None or a managed record."""
    if plan is None or vn.spec.vm is None:
        return vn
    vm = vn.spec.vm.model_copy(update={"resource_identifier": plan.name})
    spec = vn.spec.model_copy(update={"vm": vm, "instance_type": plan.instance_type})
    return vn.model_copy(update={"spec": spec})


def headroom_pods(groups: Sequence[GroupTemplate], nodes: Sequence[NodeInfo]) -> tuple[PodInfo, ...]:
    """Virtual pods for every group's headroom that its nodes (Ready, arriving or only a VPSieNode yet)
    do not hold now."""
    out: list[PodInfo] = []
    for group in groups:
        if not group.spare.empty:
            out.extend(unmet(group, group.spare, nodes))
    return tuple(out)


def headroom_text(group: GroupTemplate, nodes: Sequence[NodeInfo]) -> str | None:
    """``status.headroom``: what is kept and whether the group's nodes hold it now."""
    if group.spare.empty:
        return None
    missing = unmet(group, group.spare, nodes)
    state = "held" if not missing else f"{len(missing)} virtual pod(s) waiting for capacity"
    return f"{group.spare}: {state}"
