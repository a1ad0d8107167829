"""The domain metric families: exact names (a contract with the chart's dashboard and alerts)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from vpsie_autoscaler.controllers.metrics import autoscaler_metrics

EXPECTED = {
    "vpsie_autoscaler_nodegroup_min_nodes",
    "vpsie_autoscaler_nodegroup_max_nodes",
    "vpsie_autoscaler_nodegroup_desired_nodes",
    "vpsie_autoscaler_nodegroup_current_nodes",
    "vpsie_autoscaler_nodegroup_ready_nodes",
    "vpsie_autoscaler_unschedulable_pods",
    "vpsie_autoscaler_scale_up_total",
    "vpsie_autoscaler_scale_down_total",
    "vpsie_autoscaler_scale_up_decision_latency_seconds",
    "vpsie_autoscaler_node_provision_duration_seconds",
    "vpsie_autoscaler_evicted_pods_total",
    "vpsie_autoscaler_unremovable_nodes",
    "vpsie_autoscaler_nodegroup_backoff",
    "vpsie_autoscaler_nodegroup_hourly_cost",
    "vpsie_autoscaler_orphan_instances",
    "vpsie_autoscaler_dry_run",
}


def _exposed(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_every_family_is_exposed_under_its_contract_name() -> None:
    registry = CollectorRegistry()
    m = autoscaler_metrics(registry)
    for gauge in m.per_group_gauges():
        gauge.labels("g").set(1)
    m.unschedulable_pods.set(2)
    m.scale_up_total.labels("g", "PendingPods").inc()
    m.scale_down_total.labels("g", "Empty").inc()
    m.scale_up_decision_latency_seconds.observe(0.5)
    m.node_provision_duration_seconds.observe(30)
    m.evicted_pods_total.inc()
    m.unremovable_nodes.labels("NotUnderutilized").set(1)
    m.orphan_instances.set(0)
    m.dry_run.set(1)
    text = _exposed(registry)
    names = {
        line.split("{")[0].split(" ")[0].removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    missing = EXPECTED - names
    assert not missing, missing
    assert 'vpsie_autoscaler_scale_up_total{nodegroup="g",reason="PendingPods"} 1.0' in text


def test_same_registry_shares_the_families_and_other_registries_are_separate() -> None:
    registry = CollectorRegistry()
    assert autoscaler_metrics(registry) is autoscaler_metrics(registry)
    other = CollectorRegistry()
    autoscaler_metrics(other).dry_run.set(1)
    assert "vpsie_autoscaler_dry_run 0.0" in _exposed(registry)


def test_forget_group_removes_every_series_of_a_deleted_group() -> None:
    registry = CollectorRegistry()
    m = autoscaler_metrics(registry)
    m.nodegroup_ready_nodes.labels("gone").set(3)
    m.nodegroup_ready_nodes.labels("kept").set(1)
    m.forget_group("gone")
    m.forget_group("never-seen")
    text = _exposed(registry)
    assert 'nodegroup="gone"' not in text
    assert 'vpsie_autoscaler_nodegroup_ready_nodes{nodegroup="kept"} 1.0' in text
