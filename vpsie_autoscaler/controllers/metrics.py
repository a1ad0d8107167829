"""The autoscaler's domain metric families (docs/metrics.md), defined once for every controller.

All controllers (NodeGroup, VPSieNode lifecycle, scale-up, scale-down, garbage collection) share
these families and differ only by labels. Families are registered once per
:class:`~prometheus_client.CollectorRegistry` (the manager's, or one a test creates; never the
global default): :func:`autoscaler_metrics` returns the same :class:`AutoscalerMetrics` for the same
registry, so every controller can call it without coordinating who registers first.

Names are a contract with the chart's dashboard and alerts (branch ``ship``): change them only
together. Per-group gauges carry the label ``nodegroup``; a group that is deleted has its series
removed with :meth:`AutoscalerMetrics.forget_group` so dashboards do not show ghosts.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "vpsie_autoscaler_"

# Pod unschedulable → add-node call. The target is p99 ≤ 2 s including the 1 s / 10 s batch window,
# so resolution is fine below 2 s and the tail reaches past the 10 s maximum batch.
DECISION_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 15.0, 30.0, 60.0)
# Provisioning (create accepted → Node Ready) takes tens of seconds to many minutes on VPSie; the
# simulator does it in well under a second, so the lowest buckets are kept for tests and demos.
PROVISION_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1200.0, 1800.0)
# A drain of an empty node takes a second, one held by a PDB up to maxGracefulTermination (600 s by
# default, at most 24 h).
DRAIN_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)
# Pods evicted per drain: 0 for an empty node, up to the kubelet's 110 pods.
EVICTED_PER_DRAIN_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 110.0)
RESULT_LABEL = "result"

GROUP_LABEL = "nodegroup"
REASON_LABEL = "reason"
KIND_LABEL = "kind"


@dataclass(frozen=True)
class AutoscalerMetrics:
    """Every domain family; attribute names mirror the metric names without the prefix."""

    nodegroup_min_nodes: Gauge
    nodegroup_max_nodes: Gauge
    nodegroup_desired_nodes: Gauge
    nodegroup_current_nodes: Gauge
    nodegroup_ready_nodes: Gauge
    nodegroup_backoff: Gauge
    nodegroup_hourly_cost: Gauge
    nodegroup_headroom_missing_pods: Gauge
    unschedulable_pods: Gauge
    scale_up_total: Counter
    scale_down_total: Counter
    scale_up_decision_latency_seconds: Histogram
    node_provision_duration_seconds: Histogram
    evicted_pods_total: Counter
    drain_failures_total: Counter
    drain_duration_seconds: Histogram
    drain_evicted_pods: Histogram
    vpsienode_ttl_deletions_total: Counter
    unremovable_nodes: Gauge
    orphan_instances: Gauge
    launches_total: Counter
    adopted_instances_total: Counter
    invalid_objects: Gauge
    dry_run: Gauge

    def per_group_gauges(self) -> tuple[Gauge, ...]:
        return (
            self.nodegroup_min_nodes,
            self.nodegroup_max_nodes,
            self.nodegroup_desired_nodes,
            self.nodegroup_current_nodes,
            self.nodegroup_ready_nodes,
            self.nodegroup_backoff,
            self.nodegroup_hourly_cost,
            self.nodegroup_headroom_missing_pods,
        )

    def forget_group(self, nodegroup: str) -> None:
        """Drop every per-group gauge series of a deleted NodeGroup (no ghost series)."""
        for gauge in self.per_group_gauges():
            with contextlib.suppress(KeyError):
                gauge.remove(nodegroup)


_metrics: weakref.WeakKeyDictionary[CollectorRegistry, AutoscalerMetrics] = weakref.WeakKeyDictionary()


def _group_gauge(name: str, doc: str, registry: CollectorRegistry) -> Gauge:
    return Gauge(PREFIX + name, doc, [GROUP_LABEL], registry=registry)


def autoscaler_metrics(registry: CollectorRegistry) -> AutoscalerMetrics:
    """The domain families registered on ``registry`` (created on first use, then shared)."""
    found = _metrics.get(registry)
    if found is not None:
        return found
    found = AutoscalerMetrics(
        nodegroup_min_nodes=_group_gauge("nodegroup_min_nodes", "minNodes of the NodeGroup.", registry),
        nodegroup_max_nodes=_group_gauge("nodegroup_max_nodes", "maxNodes of the NodeGroup.", registry),
        nodegroup_desired_nodes=_group_gauge(
            "nodegroup_desired_nodes", "Nodes the NodeGroup should have (not leaving).", registry
        ),
        nodegroup_current_nodes=_group_gauge(
            "nodegroup_current_nodes", "VPSieNodes of the group that are not leaving.", registry
        ),
        nodegroup_ready_nodes=_group_gauge(
            "nodegroup_ready_nodes", "VPSieNodes of the group whose Node is Ready.", registry
        ),
        nodegroup_backoff=_group_gauge(
            "nodegroup_backoff", "1 while the NodeGroup is in scale-up back-off, else 0.", registry
        ),
        nodegroup_hourly_cost=_group_gauge(
            "nodegroup_hourly_cost",
            "Hourly price of the group's current nodes (plan price x current nodes).",
            registry,
        ),
        nodegroup_headroom_missing_pods=_group_gauge(
            "nodegroup_headroom_missing_pods",
            "Virtual pods of the group's headroom its nodes do not hold now (0: the headroom is kept).",
            registry,
        ),
        unschedulable_pods=Gauge(
            PREFIX + "unschedulable_pods", "Pods the scheduler reports as unschedulable.", registry=registry
        ),
        scale_up_total=Counter(
            PREFIX + "scale_up",
            "Nodes requested by scale-up (and minNodes enforcement), by group and reason.",
            [GROUP_LABEL, REASON_LABEL],
            registry=registry,
        ),
        scale_down_total=Counter(
            PREFIX + "scale_down",
            "Nodes removed by scale-down (and maxNodes enforcement), by group and reason.",
            [GROUP_LABEL, REASON_LABEL],
            registry=registry,
        ),
        scale_up_decision_latency_seconds=Histogram(
            PREFIX + "scale_up_decision_latency_seconds",
            "Time from a pod becoming unschedulable to the add-node call for it.",
            buckets=DECISION_LATENCY_BUCKETS,
            registry=registry,
        ),
        node_provision_duration_seconds=Histogram(
            PREFIX + "node_provision_duration_seconds",
            "Time from a VPSieNode's creation to its Node being Ready.",
            buckets=PROVISION_BUCKETS,
            registry=registry,
        ),
        evicted_pods_total=Counter(
            PREFIX + "evicted_pods",
            "Pods evicted through the Eviction API while draining.",
            registry=registry,
        ),
        drain_failures_total=Counter(
            PREFIX + "drain_failures",
            "Drains that did not finish within maxGracefulTermination (DrainFailed), by group.",
            [GROUP_LABEL],
            registry=registry,
        ),
        drain_duration_seconds=Histogram(
            PREFIX + "drain_duration_seconds",
            "Time from a node's drain starting to its end, by group and result (success, aborted).",
            [GROUP_LABEL, RESULT_LABEL],
            buckets=DRAIN_BUCKETS,
            registry=registry,
        ),
        drain_evicted_pods=Histogram(
            PREFIX + "drain_evicted_pods",
            "Pods that left the node during a successful drain (evicted), by group.",
            [GROUP_LABEL],
            buckets=EVICTED_PER_DRAIN_BUCKETS,
            registry=registry,
        ),
        vpsienode_ttl_deletions_total=Counter(
            PREFIX + "vpsienode_ttl_deletions",
            "Failed VPSieNodes deleted by garbage collection after their TTL, by group.",
            [GROUP_LABEL],
            registry=registry,
        ),
        unremovable_nodes=Gauge(
            PREFIX + "unremovable_nodes",
            "Nodes the scale-down planner could not remove, by reason.",
            [REASON_LABEL],
            registry=registry,
        ),
        orphan_instances=Gauge(
            PREFIX + "orphan_instances",
            "VPSie instances with our naming and no VPSieNode (deleted after a grace period).",
            registry=registry,
        ),
        launches_total=Counter(
            PREFIX + "launches_total",
            "Create calls sent to VPSie, by outcome: Done, Unknown (answer lost; counts as sent), NotDone.",
            [GROUP_LABEL, "outcome"],
            registry=registry,
        ),
        adopted_instances_total=Counter(
            PREFIX + "adopted_instances_total",
            "Instances found in a referenced VPSie group without a VPSieNode, given one (adopted).",
            [GROUP_LABEL],
            registry=registry,
        ),
        invalid_objects=Gauge(
            PREFIX + "invalid_objects",
            "Stored objects that cannot be parsed (reported and skipped, never acted on), by kind.",
            [KIND_LABEL],
            registry=registry,
        ),
        dry_run=Gauge(
            PREFIX + "dry_run", "1 when the autoscaler only reports decisions (--dry-run).", registry=registry
        ),
    )
    _metrics[registry] = found
    return found
