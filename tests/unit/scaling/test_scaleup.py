"""Scale-up: the right group, the right count, a reason for every pod and group."""

from __future__ import annotations

import random
from datetime import timedelta

from tests.unit.scaling.builders import NOW, group, pod, pods, self_anti_affinity
from vpsie_autoscaler.scaling import reasons
from vpsie_autoscaler.scaling.expanders import ExpanderChain
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scaleup import (
    IGNORED,
    IN_FLIGHT,
    NOT_TRIGGERED,
    TRIGGERED,
    ClusterLimits,
    ClusterUsage,
    plan_scale_up,
)
from vpsie_autoscaler.scaling.selectors import Taint

GPU = {"nvidia.com/gpu": "1"}


def test_no_pending_pods_no_scale_up() -> None:
    plan = plan_scale_up([], [group()], now=NOW)
    assert plan.increases == ()
    assert plan.pods == ()


def test_bin_packs_pending_pods_into_the_fewest_nodes() -> None:
    plan = plan_scale_up(pods("web", 10, "1", "1Gi"), [group("web", "4", "8Gi")], now=NOW)
    (inc,) = plan.increases
    assert (inc.group, inc.nodes, inc.from_size, inc.to_size) == ("web", 3, 0, 3)
    assert len(inc.pods) == 10
    assert all(o.status == TRIGGERED and o.group == "web" for o in plan.pods)
    assert "0 -> 3 (+3) for 10 pending pod(s)" in inc.message


def test_pods_fitting_several_groups_grow_only_one() -> None:
    # Seed trap 10.2.2: every matching group grew for the same pods.
    plan = plan_scale_up(pods("web", 4, "1", "1Gi"), [group("a"), group("b"), group("c")], now=NOW)
    assert len(plan.increases) == 1
    others = plan.outcome("default/web-0").reasons
    assert {reason.code for reason in others.values()} == {reasons.NOT_CHOSEN}


def test_pods_needing_different_groups_grow_each_group_once() -> None:
    pending = pods("web", 4, "1", "1Gi", node_selector={"pool": "web"}) + pods(
        "gpu", 2, "1", "1Gi", extra=GPU, node_selector={"pool": "gpu"}
    )
    groups = [
        group("web", labels={"pool": "web"}),
        group("gpu", extra={"nvidia.com/gpu": "1"}, labels={"pool": "gpu"}),
    ]
    plan = plan_scale_up(pending, groups, now=NOW)
    assert {(i.group, i.nodes) for i in plan.increases} == {("web", 1), ("gpu", 2)}
    assert plan.outcome("default/gpu-0").group == "gpu"
    assert plan.outcome("default/web-0").group == "web"


def test_capacity_in_flight_is_used_first() -> None:
    # Seed bug d56a10a: in-flight capacity ignored, five nodes for one pod.
    web = group("web", size=1, in_flight=1)
    in_flight = [web.virtual_node("web-abc12")]
    plan = plan_scale_up(pods("p", 3, "1", "1Gi"), [web], in_flight_nodes=in_flight, now=NOW)
    assert plan.increases == ()
    assert all(o.status == IN_FLIGHT and o.node == "web-abc12" for o in plan.pods)
    assert "already being created" in plan.pods[0].message


def test_in_flight_overflow_triggers_only_the_rest() -> None:
    web = group("web", size=1, in_flight=1)
    plan = plan_scale_up(
        pods("p", 6, "1", "1Gi"), [web], in_flight_nodes=[web.virtual_node("web-1")], now=NOW
    )
    assert [o.status for o in plan.pods].count(IN_FLIGHT) == 4
    (inc,) = plan.increases
    assert inc.nodes == 1
    assert len(inc.pods) == 2


def test_in_flight_node_predicates_apply() -> None:
    tainted = group("tainted", taints=(Taint("dedicated", "x", "NoSchedule"),), size=1, in_flight=1)
    plain = group("plain")
    plan = plan_scale_up(
        pods("p", 1, "1", "1Gi"), [tainted, plain], in_flight_nodes=[tainted.virtual_node("t-1")], now=NOW
    )
    assert plan.pods[0].status == TRIGGERED
    assert plan.pods[0].group == "plain"


def test_too_big_pod_gets_a_reason_per_group() -> None:
    plan = plan_scale_up([pod("huge", "16", "1Gi")], [group("a", "4"), group("b", "8")], now=NOW)
    outcome = plan.outcome("default/huge")
    assert outcome.status == NOT_TRIGGERED
    assert outcome.reasons["a"].code == reasons.INSUFFICIENT_RESOURCE
    assert "requests 16, free 4" in outcome.reasons["a"].message
    assert "a: InsufficientResource" in outcome.message


def test_selectors_and_taints_of_the_template_apply() -> None:
    gpu = group("gpu", taints=(Taint("nvidia.com/gpu", "", "NoSchedule"),), labels={"accel": "gpu"})
    plain = pod("plain")
    wants_gpu = pod("wants", node_selector={"accel": "gpu"})
    tolerant = pod(
        "tolerant",
        node_selector={"accel": "gpu"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
    )
    plan = plan_scale_up([plain, wants_gpu, tolerant], [gpu], now=NOW)
    assert plan.outcome("default/plain").reasons["gpu"].code == reasons.TAINT_NOT_TOLERATED
    assert plan.outcome("default/wants").reasons["gpu"].code == reasons.TAINT_NOT_TOLERATED
    assert plan.outcome("default/tolerant").status == TRIGGERED


def test_group_max_size_caps_and_is_reported() -> None:
    plan = plan_scale_up(pods("p", 20, "1", "1Gi"), [group("web", max_nodes=3, size=1)], now=NOW)
    (inc,) = plan.increases
    assert inc.nodes == 2
    assert inc.limited_by is not None
    assert inc.limited_by.code == reasons.GROUP_AT_MAX_SIZE
    left = plan.by_status(NOT_TRIGGERED)
    assert len(left) == 12
    assert left[0].reasons["web"].code == reasons.GROUP_AT_MAX_SIZE


def test_group_at_max_is_skipped_for_another() -> None:
    plan = plan_scale_up(pods("p", 2), [group("full", max_nodes=2, size=2), group("spare")], now=NOW)
    assert [i.group for i in plan.increases] == ["spare"]


def test_cluster_limits_cap_nodes_cores_and_memory() -> None:
    pending = pods("p", 40, "1", "1Gi")
    by_nodes = plan_scale_up(
        pending, [group()], limits=ClusterLimits(max_nodes=5), usage=ClusterUsage(nodes=3), now=NOW
    )
    assert by_nodes.increases[0].nodes == 2
    assert by_nodes.increases[0].limited_by is not None
    assert by_nodes.increases[0].limited_by.code == reasons.CLUSTER_MAX_NODES
    by_cores = plan_scale_up(pending, [group()], limits=ClusterLimits(max_cores=12), now=NOW)
    assert by_cores.increases[0].nodes == 3
    by_mem = plan_scale_up(pending, [group()], limits=ClusterLimits(max_memory_gib=16), now=NOW)
    assert by_mem.increases[0].nodes == 2
    none_left = plan_scale_up(
        pending, [group()], limits=ClusterLimits(max_nodes=3), usage=ClusterUsage(nodes=3), now=NOW
    )
    assert none_left.increases == ()
    assert none_left.pods[0].reasons["web"].code == reasons.CLUSTER_MAX_NODES


def test_cluster_limit_is_shared_across_groups_in_one_plan() -> None:
    pending = pods("a", 8, "1", "1Gi", node_selector={"pool": "a"}) + pods(
        "b", 8, "1", "1Gi", node_selector={"pool": "b"}
    )
    groups = [group("a", labels={"pool": "a"}), group("b", labels={"pool": "b"})]
    plan = plan_scale_up(pending, groups, limits=ClusterLimits(max_nodes=3), now=NOW)
    assert sum(i.nodes for i in plan.increases) == 3


def test_disabled_and_backed_off_groups_are_skipped_with_reasons() -> None:
    off = group("off", scale_up_enabled=False)
    cooling = group("cooling", backoff_until=NOW + timedelta(minutes=5), backoff_reason="quota exceeded")
    expired = group("expired", backoff_until=NOW - timedelta(seconds=1))
    plan = plan_scale_up([pod("p")], [off, cooling, expired], now=NOW)
    assert plan.increases[0].group == "expired"
    group_reasons = plan.outcome("default/p").reasons
    assert group_reasons["off"].code == reasons.SCALE_UP_DISABLED
    assert group_reasons["cooling"].code == reasons.GROUP_IN_BACKOFF
    assert "quota exceeded" in group_reasons["cooling"].message


def test_expendable_and_daemonset_pods_never_trigger() -> None:
    plan = plan_scale_up(
        [pod("low", priority=-11), pod("ds", owner="DaemonSet"), pod("ok", priority=-10)], [group()], now=NOW
    )
    assert plan.outcome("default/low").status == IGNORED
    assert plan.outcome("default/low").reason is not None
    assert plan.outcome("default/ds").status == IGNORED
    assert plan.outcome("default/ok").status == TRIGGERED


def test_host_ports_spread_pods_over_nodes() -> None:
    plan = plan_scale_up(pods("dns", 3, "100m", "64Mi", host_port=53), [group()], now=NOW)
    assert plan.increases[0].nodes == 3


def test_hostname_anti_affinity_spreads_pods() -> None:
    pending = pods("db", 4, "100m", "64Mi", labels={"app": "db"}, affinity=self_anti_affinity("db"))
    plan = plan_scale_up(pending, [group()], now=NOW)
    assert plan.increases[0].nodes == 4
    assert all(k == 1 for run in plan.increases[0].runs for _, k in run.pods_per_node)


def test_unmodelled_constraints_are_reported_on_the_pod() -> None:
    spread = {
        "topologySpreadConstraints": [
            {"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "maxSkew": 1}
        ]
    }
    plan = plan_scale_up([pod("p", spec_extra=spread)], [group()], now=NOW)
    outcome = plan.pods[0]
    assert outcome.status == TRIGGERED
    assert outcome.unmodelled == ("topologySpreadConstraints(topologyKey=zone)",)
    assert "not modelled, assumed satisfied" in outcome.message


def test_expander_chain_and_rng_decide_between_equal_groups() -> None:
    groups = [group("a", priority=1), group("b", priority=2), group("c", priority=2)]
    plan = plan_scale_up(
        [pod("p")], groups, expanders=ExpanderChain.parse("priority"), rng=random.Random(1), now=NOW
    )
    assert plan.increases[0].group in {"b", "c"}
    assert plan.increases[0].expander_trail[0] == "priority: a, b, c -> b, c"
    cheap = plan_scale_up(
        [pod("p")],
        [group("pricey", price=1.0), group("cheap", price=0.1)],
        expanders=ExpanderChain.parse("least-cost"),
        now=NOW,
    )
    assert cheap.increases[0].group == "cheap"


def test_no_groups_at_all_is_explained() -> None:
    plan = plan_scale_up([pod("p")], [], now=NOW)
    assert plan.pods[0].reasons[""].code == reasons.NO_GROUPS


def test_pods_of_one_deployment_form_one_equivalence_group() -> None:
    # Same spec, unique names: the packing handles them as one class (performance guarantee).
    pending = pods("web", 100, "250m", "256Mi")
    plan = plan_scale_up(pending, [group()], now=NOW)
    runs = plan.increases[0].runs
    assert [(run.count, run.pods_per_node[0][1]) for run in runs] == [(6, 16), (1, 4)]


def test_group_allocatable_with_extended_resources() -> None:
    g = group("gpu", extra={"nvidia.com/gpu": "2"})
    assert g.allocatable["nvidia.com/gpu"] == 2
    plan = plan_scale_up(pods("t", 5, "100m", "64Mi", extra=GPU), [g], now=NOW)
    assert plan.increases[0].nodes == 3
    assert Resources.parse(GPU)["nvidia.com/gpu"] == 1
