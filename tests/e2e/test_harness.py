"""The harness itself: real processes start, lead, serve metrics, die by SIGKILL and come back.

If these fail, every scenario would fail for a reason that has nothing to do with scaling; they pin
the plumbing down first.
"""

from __future__ import annotations

import pytest

from tests.e2e.harness import ADVANCED, E2E, add_node_path, http_json, nodegroup

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def test_autoscaler_process_leads_serves_metrics_and_survives_sigkill(e2e: E2E) -> None:
    scaler = e2e.autoscaler()
    assert scaler.metric("leader_election_master_status") == 1
    first_pid = scaler.proc.pid
    scaler.kill9()
    assert not scaler.proc.alive()
    scaler.start()
    assert scaler.proc.pid != first_pid
    scaler.wait_ready()
    scaler.wait_leader()  # the killed leader's Lease ran out; the new process took over


def test_standby_replica_does_not_lead(e2e: E2E) -> None:
    leader = e2e.autoscaler("leader")
    standby = e2e.autoscaler("standby", wait_leader=False)
    assert leader.is_leader()
    assert not standby.is_leader()
    leader.stop()  # released on SIGTERM: the standby takes over without waiting for expiry
    standby.wait_leader()


def test_simulator_faults_and_nodegroups_round_trip(e2e: E2E) -> None:
    gid = e2e.sim.group_id(ADVANCED)
    fault = e2e.sim.add_fault(
        kind="error_200", path=add_node_path(gid), method="POST", message="out of stock"
    )
    assert [f["id"] for f in http_json("GET", f"{e2e.sim.base_url}/_sim/faults")] == [fault]
    e2e.sim.clear_faults()
    assert http_json("GET", f"{e2e.sim.base_url}/_sim/faults") == []
    created = e2e.apply_nodegroup(nodegroup("harness-ng", ADVANCED, max_nodes=2))
    assert created["spec"]["scaleDown"]["unneededTime"] == "10s"
    assert e2e.sim.workers() == []
