"""NodeGroup objects → the planners' flexible plans and headroom (:mod:`vpsie_autoscaler.scaling.plans`,
:mod:`vpsie_autoscaler.scaling.headroom`), and the chosen plan → the VPSieNode that carries it.

- ``spec.plans``: the catalogue's options (:meth:`~.catalogue.PlanCatalogue.options`) become
  :class:`PlanShape` values, each with the group's template (reserved resources, DaemonSet overhead)
  applied the way the single-plan template is (:meth:`GroupTemplate.from_nodegroup`), then filtered by
  ``sizes`` or resolved by ``requirements``. The plans are fetched when the group is first seen, and
  the group sits out of decisions until the catalogue has answered once; if it fails, the group
  plans with its source's plan only.
- A VM VPSieNode carries its plan in ``spec.vm.resourceIdentifier`` (the lifecycle controller creates
  the VM from that copy), so a VM group's chosen plan goes into the record the scale-up controller
  creates, and the record's plan shapes its in-flight capacity.
- A managed VPSieNode on a size other than its VPSie node group's carries it in ``spec.planSizeId``:
  VPSie keeps one node group per size, so the lifecycle controller adds the node to the cluster's VPSie
  group of that size, found by size or created on demand (:meth:`~.cloud.Providers.size_source`), and
  its records bind within that group (``binding.source_key``). A size that is another managed
  NodeGroup's own VPSie group is never chosen (``reserved``): that group's nodes are counted and
  adopted by the NodeGroup that names it, and one VPSie group must never be two sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog

from vpsie_autoscaler.api.nodegroup import HeadroomSpec, NodeGroup, PlanRequirementsSpec
from vpsie_autoscaler.api.settings import ClusterHeadroomSpec
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.catalogue import PlanCatalogue
from vpsie_autoscaler.controllers.cloud import Providers, size_group_name
from vpsie_autoscaler.scaling import GroupTemplate, NodeInfo, PodInfo
from vpsie_autoscaler.scaling.groups import TemplateError
from vpsie_autoscaler.scaling.headroom import NO_HEADROOM, Headroom, cluster_unmet, unmet
from vpsie_autoscaler.scaling.plans import (
    PlanRequirements,
    PlanShape,
    plan_node,
    resolve_requirements,
)
from vpsie_autoscaler.scaling.resources import CPU, EMPTY, MEMORY, PODS, Resources, to_units
from vpsie_autoscaler.vpsie.errors import NotFound
from vpsie_autoscaler.vpsie.provider import ManagedSource

log = structlog.get_logger("vpsie_autoscaler.controllers.flexible")


def headroom_of(ng: NodeGroup) -> Headroom:
    """``spec.headroom`` for the planners (no headroom when unset)."""
    spec: HeadroomSpec | None = ng.spec.headroom
    if spec is None:
        return NO_HEADROOM
    return Headroom(headroom_requests(spec), spec.nodes or 0)


def headroom_requests(spec: HeadroomSpec | ClusterHeadroomSpec | None) -> Resources:
    """The cpu, memory and pods of a headroom spec (a NodeGroup's, or the cluster-wide one of
    ``AutoscalerSettings``) as planner resources (empty when unset)."""
    raw: dict[str, int] = {}
    if spec is None:
        return Resources(raw)
    if spec.cpu is not None:
        raw[CPU] = to_units(CPU, spec.cpu)
    if spec.memory is not None:
        raw[MEMORY] = to_units(MEMORY, spec.memory)
    if spec.pods is not None:
        raw[PODS] = spec.pods
    return Resources(raw)


def requirements_of(spec: PlanRequirementsSpec) -> PlanRequirements:
    cpu, memory = spec.cpu, spec.memory
    return PlanRequirements(
        min_cpu=(cpu.min or 0) * 1000 if cpu is not None else 0,
        max_cpu=cpu.max * 1000 if cpu is not None and cpu.max is not None else None,
        min_memory=to_units(MEMORY, memory.min) if memory is not None and memory.min is not None else 0,
        max_memory=to_units(MEMORY, memory.max) if memory is not None and memory.max is not None else None,
        categories=frozenset(spec.categories),
    )


def own_size(ng: NodeGroup) -> str | None:
    """A managed group's own size id (its VPSie node group's, once resolved) as a plan name."""
    managed = ng.spec.managed
    return str(managed.size_id) if managed is not None and managed.size_id is not None else None


def reserved_sizes(groups: Iterable[NodeGroup]) -> dict[tuple[str, str], str]:
    """(VPSie cluster, size id) → the managed NodeGroup whose own VPSie node group has that size."""
    out: dict[tuple[str, str], str] = {}
    for ng in groups:
        managed, size = ng.spec.managed, own_size(ng)
        if managed is not None and managed.cluster_identifier is not None and size is not None:
            out.setdefault((managed.cluster_identifier, size), ng.metadata.name)
    return out


def plan_shapes(
    ng: NodeGroup,
    catalogue: PlanCatalogue,
    daemonset_pods: Sequence[PodInfo],
    reserved: Mapping[tuple[str, str], str] | None = None,
) -> tuple[PlanShape, ...]:
    """The plans ``ng`` may choose from, smallest first (empty: single-plan group, or not known yet).

    A managed group never chooses a size that ``reserved`` gives another NodeGroup (its own VPSie
    node group: see the module docstring)."""
    spec = ng.spec.plans
    if spec is None:
        return ()
    options = catalogue.options(ng)
    if not options:
        return ()
    cluster = ng.spec.managed.cluster_identifier if ng.spec.managed is not None else None
    shapes: list[PlanShape] = []
    for facts in options:
        if spec.sizes is not None and facts.identifier not in spec.sizes:
            continue
        owner = (reserved or {}).get((cluster, facts.identifier)) if cluster is not None else None
        if owner is not None and owner != ng.metadata.name:
            _skip_reserved(ng.metadata.name, facts.identifier, owner)
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


_skipped: set[tuple[str, str, str]] = set()


def _skip_reserved(group: str, size: str, owner: str) -> None:
    """Say once per (group, size, owner) why a size of ``spec.plans`` is left out."""
    if (group, size, owner) not in _skipped:
        _skipped.add((group, size, owner))
        log.warning(
            "plan not used",
            nodegroup=group,
            size=size,
            reason=f"size {size} is the VPSie node group of NodeGroup {owner}",
        )


def flexible(
    template: GroupTemplate,
    ng: NodeGroup,
    catalogue: PlanCatalogue,
    daemonset_pods: Sequence[PodInfo],
    reserved: Mapping[tuple[str, str], str] | None = None,
) -> GroupTemplate:
    """``template`` with the group's plans and headroom (unchanged when it has neither). Raises
    :class:`TemplateError` while the group's plans are being read for the first time (the group sits
    out until the catalogue answers, which re-plans at once; a failed read falls back to the source's
    plan)."""
    if catalogue.options_pending(ng):
        raise TemplateError("spec.plans: the VPSie catalogue has not listed the plans yet")
    plans = plan_shapes(ng, catalogue, daemonset_pods, reserved)
    spare = headroom_of(ng)
    if not plans and spare.empty:
        return template
    return dataclasses.replace(template, plans=plans, spare=spare)


def record_plan(vpsienode: Mapping[str, Any]) -> str:
    """The plan a VPSieNode (raw) is created with: its VM ``resourceIdentifier``; for a managed record
    its ``planSizeId``, else its group's size id ("" when unknown)."""
    spec = vpsienode.get("spec") or {}
    vm = spec.get("vm") or {}
    if vm:
        return str(vm.get("resourceIdentifier") or "")
    managed = spec.get("managed") or {}
    return str(spec.get("planSizeId") or managed.get("sizeId") or "")


def record_node(group: GroupTemplate, vpsienode: Mapping[str, Any], hostname: str) -> NodeInfo:
    """The capacity a VPSieNode without a Node brings: its own plan's shape in a flexible group."""
    plan = record_plan(vpsienode)
    shape = next((p for p in group.plans if p.name == plan), None)
    if shape is None:
        return group.virtual_node(hostname)
    return plan_node(group, shape, hostname)


def with_plan(vn: VPSieNode, plan: PlanShape | None) -> VPSieNode:
    """``vn`` created on ``plan``: a VM group's plan goes into ``spec.vm.resourceIdentifier``; a
    managed group's size, when it is not its VPSie node group's, into ``spec.planSizeId`` (the
    lifecycle controller adds the node to the VPSie group of that size). Unchanged for None."""
    if plan is None:
        return vn
    update: dict[str, Any] = {"instance_type": plan.instance_type}
    if vn.spec.vm is not None:
        update["vm"] = vn.spec.vm.model_copy(update={"resource_identifier": plan.name})
    elif vn.spec.managed is not None and plan.name != str(vn.spec.managed.size_id):
        update["plan_size_id"] = int(plan.name)
    return vn.model_copy(update={"spec": vn.spec.model_copy(update=update)})


async def size_groups_made_for(
    providers: Providers, ng: NodeGroup, members: Iterable[VPSieNode]
) -> list[tuple[int, ManagedSource]]:
    """The VPSie node groups made for ``ng``'s other sizes (named ``<NodeGroup>-size-<id>``) that its
    records use: the NodeGroup controller adopts their nodes that no record owns or waits for (a
    launch answered after its record failed), as it does in its own VPSie group. A group of that size
    made by anyone else is left alone: its unowned nodes are not known to be this NodeGroup's."""
    managed = ng.spec.managed
    if managed is None:
        return []
    out: list[tuple[int, ManagedSource]] = []
    for size in sorted({vn.spec.plan_size_id for vn in members if vn.spec.plan_size_id is not None}):
        try:
            source = await providers.size_source(ng.metadata.name, managed, size)
        except NotFound:
            continue  # not made yet: its first launch makes it
        if source.group_name == size_group_name(ng.metadata.name, size):
            out.append((size, source))
    return out


def headroom_pods(
    groups: Sequence[GroupTemplate], nodes: Sequence[NodeInfo], cluster: Resources = EMPTY
) -> tuple[PodInfo, ...]:
    """Virtual pods for every group's headroom that its nodes (Ready, arriving or only a VPSieNode yet)
    do not hold now, and for the part of the cluster-wide headroom (``cluster``) that the nodes of all
    groups together do not hold."""
    out: list[PodInfo] = []
    for group in groups:
        if not group.spare.empty:
            out.extend(unmet(group, group.spare, nodes))
    if cluster:
        out.extend(cluster_unmet(groups, cluster, nodes))
    return tuple(out)


def headroom_text(group: GroupTemplate, nodes: Sequence[NodeInfo]) -> str | None:
    """``status.headroom``: what is kept and whether the group's nodes hold it now."""
    if group.spare.empty:
        return None
    missing = unmet(group, group.spare, nodes)
    state = "held" if not missing else f"{len(missing)} virtual pod(s) waiting for capacity"
    return f"{group.spare}: {state}"
