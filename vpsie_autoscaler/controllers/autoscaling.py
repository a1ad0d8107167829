"""Registration of the autoscaling controllers (scale-up, scale-down) with the manager.

``setup()`` (controllers/setup.py) calls :func:`setup_autoscaling`. Both controllers are leader-only
manager runnables over shared informers (pods, nodes, PodDisruptionBudgets, NodeGroups,
VPSieNodes): standbys keep their caches warm, so a new leader decides at once, but never plan,
create or emit. The plan catalogue refresher runs on standbys too: a few read calls every five
minutes keep the plans warm, so a standby that takes over decides its first scale-up at once instead
of reporting "the VPSie plan has not been read yet" (failover's first action, docs/reliability.md).

RBAC used (all within the chart's ClusterRole): pods and nodes list/watch, nodes patch (timers,
stale taints), poddisruptionbudgets, daemonsets, persistentvolumeclaims and persistentvolumes
list/watch (a pod whose volume lives on its node keeps that node), nodegroups list/watch and status
patch, vpsienodes list/watch/create/patch, events create/patch. The DaemonSets that would land on a
group's new node are subtracted from its template (Karpenter's DaemonSet overhead per NodePool), so
a new node is never too small once they start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.catalogue import CatalogueClient, PlanCatalogue
from vpsie_autoscaler.controllers.cluster_state import SnapshotBuilder
from vpsie_autoscaler.controllers.consolidation import ConsolidationController, ConsolidationOptions
from vpsie_autoscaler.controllers.decisions import DecisionLog
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.drainmetrics import DrainObserver
from vpsie_autoscaler.controllers.podcache import trim_pod
from vpsie_autoscaler.controllers.scaledown import ScaleDownController, ScaleDownOptions
from vpsie_autoscaler.controllers.scaleup import ScaleUpController, ScaleUpOptions
from vpsie_autoscaler.kube.resources import DAEMONSETS, NODEGROUPS, NODES, PDBS, PODS, PVCS, PVS, VPSIENODES
from vpsie_autoscaler.runtime.manager import Manager
from vpsie_autoscaler.scaling import ClusterLimits
from vpsie_autoscaler.scaling.consolidation import ConsolidationSettings


@dataclass(frozen=True)
class Autoscaling:
    """What :func:`setup_autoscaling` registered (tests drive these directly)."""

    builder: SnapshotBuilder
    catalogue: PlanCatalogue
    decisions: DecisionLog
    scaleup: ScaleUpController
    scaledown: ScaleDownController
    consolidation: ConsolidationController | None = None


def limits_from(settings: Settings) -> ClusterLimits:
    return ClusterLimits(
        max_nodes=settings.max_nodes_total,
        max_cores=settings.max_cores_total,
        # The planner counts whole GiB; round up so a fractional limit never becomes 0 ("no limit").
        max_memory_gib=math.ceil(settings.max_memory_total_gib),
    )


def setup_autoscaling(
    manager: Manager,
    settings: Settings,
    *,
    catalogue_client: CatalogueClient | None = None,
    deps: Deps | None = None,
) -> Autoscaling:
    """Create the scale-up and scale-down controllers on ``manager``'s informers and register them.

    ``catalogue_client``: a VPSie client to read plan capacity from (None: groups must state
    cpu/memory in ``spec.template.resources``). ``deps``: shared with the lifecycle controllers
    (built here when they are not running, as in some tests).
    """
    deps = deps or Deps.of(manager, settings)
    informers = manager.informers
    pods = informers.informer_for(PODS, transform=trim_pod)
    nodegroups = informers.informer_for(NODEGROUPS)
    catalogue = PlanCatalogue(catalogue_client, manager.clock)
    builder = SnapshotBuilder(
        pods=pods.store,
        nodes=informers.informer_for(NODES).store,
        nodegroups=nodegroups.store,
        vpsienodes=informers.informer_for(VPSIENODES).store,
        pdbs=informers.informer_for(PDBS).store,
        daemonsets=informers.informer_for(DAEMONSETS).store,
        pvcs=informers.informer_for(PVCS).store,
        pvs=informers.informer_for(PVS).store,
        catalogue=catalogue,
    )
    scaleup = ScaleUpController(
        deps,
        builder=builder,
        options=ScaleUpOptions(
            expander=settings.expander, limits=limits_from(settings), scan_interval=settings.scan_interval
        ),
    )
    pods.add_event_handler(
        on_add=scaleup.on_pod, on_update=scaleup.on_pod_update, on_delete=scaleup.on_pod_delete
    )
    # Drain duration and pods evicted per drain, read from what the lifecycle controller records.
    drains = DrainObserver(deps.metrics, deps.clock)
    informers.informer_for(VPSIENODES).add_event_handler(
        on_add=drains.on_vpsienode, on_update=drains.on_vpsienode_update, on_delete=drains.on_vpsienode_delete
    )
    pods.add_event_handler(on_delete=drains.on_pod_delete)
    # Read a new group's plan as soon as the group appears, not when the first pod needs it, and
    # re-plan once new plan facts arrive (pods may have been refused for "capacity unknown").
    nodegroups.add_event_handler(
        on_add=catalogue.want_object, on_update=lambda _old, new: catalogue.want_object(new)
    )
    catalogue.on_change(scaleup.replan)
    scaledown = ScaleDownController(
        deps, builder=builder, options=ScaleDownOptions(scan_interval=settings.scan_interval)
    )
    if catalogue.enabled:
        manager.add_runnable(catalogue.run, needs_leader=False, name="plan-catalogue")
    manager.add_runnable(scaleup.run, needs_leader=True, name="scaleup")
    manager.add_runnable(scaledown.run, needs_leader=True, name="scaledown")
    consolidation = ConsolidationController(
        deps,
        builder=builder,
        registry=manager.registry,
        options=ConsolidationOptions(
            scan_interval=settings.scan_interval,
            settings=ConsolidationSettings(evictions_per_hour=settings.consolidation_evictions_per_hour),
        ),
    )
    manager.add_runnable(consolidation.run, needs_leader=True, name="consolidation")
    return Autoscaling(builder, catalogue, deps.decisions, scaleup, scaledown, consolidation)
