"""The Go system's metrics, end to end: a group priced by its VPSie plan (no price in the template)
shows its hourly cost, and a drain shows its duration and the pods it evicted.

The autoscaler runs as a real process against the local control plane and the simulated VPSie cloud
(Advanced plan: 4 cpu, $40 a month). Two 3-cpu pods need two nodes; a small pod joins one of them;
one big pod goes. Exactly one node is then removed: the one left empty (0 pods evicted) or the one
with only the small pod, which moves to the other node (1 pod evicted).
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import ADVANCED, E2E, deployment, nodegroup

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SCALE_UP_S = 90.0
SCALE_DOWN_S = 120.0
GROUP = "m-advanced"
HOURS_PER_MONTH = 730


def test_hourly_cost_from_the_plan_and_drain_metrics(e2e: E2E) -> None:
    e2e.apply_nodegroup(nodegroup(GROUP, ADVANCED, unneeded_time="10s", delay_after_scale_up="5s"))
    scaler = e2e.autoscaler()
    e2e.apply_deployment(deployment("big", 2, cpu="3", memory="1Gi"))
    e2e.wait_pods_running("big", 2, timeout=SCALE_UP_S)
    per_node = ADVANCED.monthly_price / HOURS_PER_MONTH
    e2e.wait(
        lambda: scaler.metric("vpsie_autoscaler_nodegroup_hourly_cost", {"nodegroup": GROUP}),
        lambda cost: cost is not None and cost == pytest.approx(2 * per_node, rel=0.05),
        timeout=60,
        what="the hourly cost of 2 Advanced nodes from the plan's price",
    )

    e2e.apply_deployment(deployment("small", 1, cpu="500m", memory="64Mi"))
    (small,) = e2e.wait_pods_running("small", 1, timeout=SCALE_UP_S)
    small_node = e2e.node_of(small)
    nodes_before = {n["metadata"]["name"] for n in e2e.sim_nodes()}
    e2e.scale_deployment("big", 1)
    e2e.wait(
        lambda: e2e.live_vpsienodes(GROUP),
        lambda vns: len(vns) == 1,
        timeout=SCALE_DOWN_S,
        what="one of the two nodes removed",
    )
    e2e.wait(e2e.sim_nodes, lambda n: len(n) == 1, timeout=60, what="1 Node left")
    (removed,) = nodes_before - {n["metadata"]["name"] for n in e2e.sim_nodes()}
    expected_evicted = 1 if removed == small_node else 0
    drains = {"nodegroup": GROUP, "result": "success"}
    e2e.wait(
        lambda: scaler.metric("vpsie_autoscaler_drain_duration_seconds_count", drains),
        lambda n: n == 1,
        timeout=30,
        what="one successful drain observed",
    )
    assert scaler.metric("vpsie_autoscaler_drain_duration_seconds_sum", drains) is not None
    evicted = {"nodegroup": GROUP}
    assert scaler.metric("vpsie_autoscaler_drain_evicted_pods_count", evicted) == 1
    assert scaler.metric("vpsie_autoscaler_drain_evicted_pods_sum", evicted) == expected_evicted
    e2e.wait(
        lambda: scaler.metric("vpsie_autoscaler_nodegroup_hourly_cost", {"nodegroup": GROUP}),
        lambda cost: cost == pytest.approx(per_node, rel=0.05),
        timeout=60,
        what="the hourly cost of the one node left",
    )
    print(f"removed {removed} ({'with' if expected_evicted else 'without'} the small pod)")
