"""Registration of the lifecycle controllers: VPSieNode lifecycle, NodeGroup, garbage collection.

:func:`setup_lifecycle` is called by :func:`vpsie_autoscaler.controllers.setup.setup`. It builds the
VPSie client and providers from the settings (or takes ``providers`` from a test), registers

- controller ``vpsienode`` (VPSieNodes, and Nodes mapped to their VPSieNode),
- controller ``nodegroup`` (NodeGroups, and VPSieNodes and Nodes mapped to their group),
- runnable ``garbagecollection`` (orphan instances and expired Failed VPSieNodes),
- runnables ``vpsie-credentials`` (rotation from the mounted directory) and ``vpsie-client`` (closes
  the HTTP session on stop), which run on standbys too,

and sets ``vpsie_autoscaler_dry_run``. All of them act only while this replica leads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.binding import BindingBook
from vpsie_autoscaler.controllers.cloud import (
    ClusterIdentity,
    CredentialsWatcher,
    ProviderConfigError,
    Providers,
    build_client,
    close_on_stop,
)
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.garbagecollection.collector import GarbageCollector, GCOptions
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.controllers.nodegroup.reconciler import NodeGroupOptions, NodeGroupReconciler
from vpsie_autoscaler.controllers.objects import labels_of
from vpsie_autoscaler.controllers.vpsienode.reconciler import LifecycleOptions, VPSieNodeReconciler
from vpsie_autoscaler.kube.resources import NODEGROUPS, NODES, VPSIENODES
from vpsie_autoscaler.runtime.controller import Controller, Request
from vpsie_autoscaler.runtime.manager import Manager

log = structlog.get_logger("vpsie_autoscaler.controllers.lifecycle")

VPSIENODE_WORKERS: Final = 16  # a burst's launches go out together (the rate limiter's burst bounds them)
NODEGROUP_WORKERS: Final = 2
RECONCILE_TIMEOUT_SECONDS: Final = 120.0  # a reconcile makes a few VPSie calls, each bounded by 30 s


@dataclass
class Lifecycle:
    """What :func:`setup_lifecycle` registered (tests drive the pieces directly)."""

    providers: Providers
    metrics: AutoscalerMetrics
    vpsienode: VPSieNodeReconciler
    vpsienode_controller: Controller
    nodegroup: NodeGroupReconciler
    nodegroup_controller: Controller
    gc: GarbageCollector


def build_providers(manager: Manager, settings: Settings) -> Providers:
    """Providers from the settings. Without usable credentials every VPSie call reports why, and with
    ``--vpsie-credentials-dir`` the client is built as soon as the mounted files become valid."""
    identity = ClusterIdentity(manager.client, settings.cluster_id)
    try:
        client = build_client(settings, clock=manager.clock, registry=manager.registry)
    except ProviderConfigError as exc:
        log.error("vpsie.unconfigured", error=str(exc))
        client = None
        reason = str(exc)
    else:
        reason = "VPSie client not configured"
    providers = Providers(client, identity=identity, fence=manager.fence, unconfigured_reason=reason)
    manager.add_runnable(functools.partial(close_on_stop, providers), needs_leader=False, name="vpsie-client")
    if settings.vpsie_credentials_dir:
        watcher = CredentialsWatcher(
            providers,
            settings.vpsie_credentials_dir,
            build=lambda creds: build_client(
                settings, clock=manager.clock, registry=manager.registry, credentials=creds
            ),
            clock=manager.clock,
        )
        manager.add_runnable(watcher.run, needs_leader=False, name="vpsie-credentials")
    return providers


def gc_options_from(settings: Settings) -> GCOptions:
    """The garbage collector's timers from ``--failed-vpsienode-ttl`` and ``--orphan-grace-period``."""
    return GCOptions(orphan_grace=settings.orphan_grace_period, failed_ttl=settings.failed_vpsienode_ttl)


def setup_lifecycle(
    manager: Manager,
    settings: Settings,
    *,
    providers: Providers | None = None,
    lifecycle_options: LifecycleOptions | None = None,
    nodegroup_options: NodeGroupOptions | None = None,
    gc_options: GCOptions | None = None,
    deps: Deps | None = None,
) -> Lifecycle:
    deps = deps or Deps.of(manager, settings)
    if providers is None:
        providers = build_providers(manager, settings)
    vpsienodes = manager.informers.informer_for(VPSIENODES)
    nodes = manager.informers.informer_for(NODES)
    nodegroups = manager.informers.informer_for(NODEGROUPS)
    book = BindingBook()
    vn = VPSieNodeReconciler(
        client=deps.client,
        recorder=deps.recorder,
        clock=deps.clock,
        providers=providers,
        metrics=deps.metrics,
        vpsienodes=vpsienodes,
        nodes=nodes,
        nodegroups=nodegroups,
        options=lifecycle_options or LifecycleOptions(dry_run=settings.dry_run),
        writes=deps.writes,  # one dry-run switch for every controller (AutoscalerSettings changes it)
        book=book,
    )
    vn_controller = manager.new_controller(
        "vpsienode", vn, workers=VPSIENODE_WORKERS, reconcile_timeout=RECONCILE_TIMEOUT_SECONDS
    )
    vn_controller.watch(vpsienodes)
    vn_controller.watch(nodes, vn.requests_for_node)

    ng = NodeGroupReconciler(
        deps,
        providers=providers,
        nodegroups=nodegroups,
        vpsienodes=vpsienodes,
        nodes=nodes,
        options=nodegroup_options
        or NodeGroupOptions(
            resync_interval=settings.scan_interval, cluster_identifier=settings.vpsie_cluster_identifier
        ),
        book=book,
    )
    ng_controller = manager.new_controller(
        "nodegroup", ng, workers=NODEGROUP_WORKERS, reconcile_timeout=RECONCILE_TIMEOUT_SECONDS
    )
    ng_controller.watch(nodegroups)
    ng_controller.watch(vpsienodes, ng.requests_for_vpsienode)
    ng_controller.watch(nodes, _group_of_node)
    # A decision of scale-up or scale-down reaches status.lastDecision through this reconcile.
    ng.decisions.on_record(lambda group: ng_controller.enqueue(Request(group)))

    gc = GarbageCollector(
        deps,
        providers=providers,
        nodegroups=nodegroups,
        vpsienodes=vpsienodes,
        options=gc_options or gc_options_from(settings),
    )
    manager.add_runnable(gc.run, name="garbagecollection")
    return Lifecycle(providers, deps.metrics, vn, vn_controller, ng, ng_controller, gc)


def _group_of_node(node: dict[str, Any]) -> list[Request]:
    group = labels_of(node).get(NODEGROUP_LABEL)
    return [Request(group)] if group else []
