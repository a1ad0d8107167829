"""End-to-end harness: the VPSie simulator and the autoscaler as real processes against the local cluster.

What a user runs, run the way a user runs it: ``vpsie-autoscaler cloudsim --kubeconfig`` (the cloud,
whose booted instances become kwok Nodes through the bridge) and ``vpsie-autoscaler run`` (the
controller), each in its own process group with its output in a log file, against the control plane of
the ``k8s_cluster`` fixture. Tests talk to the cluster with the fixture's synchronous client and to the
simulator through its admin endpoints (``/_sim/state``, ``/_sim/requests``, ``/_sim/faults``).

The stack itself lives in ``hack/stack`` (processes, simulator, autoscaler, objects, :class:`E2E`), the
library ``make demo`` and the benchmarks use too, so the stack the tests prove is the stack the demo
shows. This module re-exports it for the tests and adds the assertions only tests make.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Final

from hack.stack.autoscaler import (
    AUTOSCALER_READY_S,
    LEADER_S,
    LEASE_DURATION_S,
    RENEW_DEADLINE_S,
    RETRY_PERIOD_S,
    SCAN_INTERVAL_S,
    Autoscaler,
)
from hack.stack.cloudsim import (
    ADVANCED,
    BOOT_DELAY_S,
    DELETE_DELAY_S,
    HIGHMEM,
    MANAGED_DELETE_SUFFIX,
    PENDING_DELAY_S,
    SIM_CLIENT_ID,
    SIM_CLIENT_SECRET,
    SIM_CLUSTER_ID,
    SIM_CLUSTER_NAME,
    SIM_GROUPS,
    SIM_START_S,
    STANDARD,
    VM_CREATE_PATHS,
    CloudSim,
    VPSieGroup,
    add_node_path,
    delete_requests,
    fault_hits,
    plan_identifier,
    sim_config,
    sim_faults,
    sim_vms,
    vm_create_requests,
)
from hack.stack.kube import (
    API_GROUP,
    CLUSTER_SCOPED_EVENTS_NS,
    EVENTS_NS,
    FINALIZER_PATCH_TYPE,
    NODEGROUPS,
    NODES,
    VPSIENODES,
    JsonObj,
    collection_version,
    watch,
)
from hack.stack.objects import (
    bare_pod,
    deployment,
    is_running,
    nodegroup,
    phase_of,
    pod_disruption_budget,
    pod_spec,
    vm_nodegroup,
)
from hack.stack.processes import (
    HTTP_TIMEOUT_S,
    LOG_TAIL_LINES,
    POLL_S,
    STOP_GRACE_S,
    Process,
    ProcessDied,
    WaitTimeout,
    cli,
    http_json,
    http_text,
    log_tail,
    sample_value,
    samples,
    wait_until,
)
from hack.stack.scenario import (
    CLEANUP_S,
    E2E,
)
from vpsie_autoscaler.api.labels import VPSIENODE_LABEL

__all__ = [
    "ADVANCED",
    "API_GROUP",
    "AUTOSCALER_READY_S",
    "BOOT_DELAY_S",
    "CLEANUP_S",
    "CLUSTER_SCOPED_EVENTS_NS",
    "DELETE_DELAY_S",
    "E2E",
    "EVENTS_NS",
    "FINALIZER_PATCH_TYPE",
    "HIGHMEM",
    "HTTP_TIMEOUT_S",
    "JOIN_S",
    "LEADER_S",
    "LEASE_DURATION_S",
    "LOG_TAIL_LINES",
    "MANAGED_DELETE_SUFFIX",
    "NODEGROUPS",
    "NODES",
    "PENDING_DELAY_S",
    "POLL_S",
    "RENEW_DEADLINE_S",
    "RETRY_PERIOD_S",
    "SCAN_INTERVAL_S",
    "SIM_CLIENT_ID",
    "SIM_CLIENT_SECRET",
    "SIM_CLUSTER_ID",
    "SIM_CLUSTER_NAME",
    "SIM_GROUPS",
    "SIM_START_S",
    "STANDARD",
    "STOP_GRACE_S",
    "VM_CREATE_PATHS",
    "VPSIENODES",
    "Autoscaler",
    "CloudSim",
    "JsonObj",
    "Process",
    "ProcessDied",
    "VPSieGroup",
    "WaitTimeout",
    "add_node_path",
    "bare_pod",
    "cli",
    "collection_version",
    "delete_requests",
    "deployment",
    "fault_hits",
    "http_json",
    "http_text",
    "is_running",
    "log_tail",
    "nodegroup",
    "one_to_one",
    "phase_of",
    "plan_identifier",
    "pod_disruption_budget",
    "pod_spec",
    "sample_value",
    "samples",
    "sim_config",
    "sim_faults",
    "sim_vms",
    "timed",
    "vm_create_requests",
    "vm_nodegroup",
    "wait_until",
    "watch",
]

JOIN_S: Final = 30.0  # a VPSieNode records its Ready Node


def one_to_one(e2e: E2E, group: str, timeout: float = JOIN_S) -> None:
    """Each live VPSieNode of ``group`` has its own Node, labelled with it, and no Node is claimed twice.

    Waits first until every live VPSieNode is Ready (a pod may run on a Node a moment before its
    VPSieNode's status records it).
    """
    vns = e2e.wait(
        lambda: e2e.live_vpsienodes(group),
        lambda vns: all(phase_of(vn) == "Ready" for vn in vns),
        timeout=timeout,
        what=f"every live VPSieNode of {group} Ready",
    )
    node_names = [vn.get("status", {}).get("nodeName") for vn in vns]
    assert all(node_names), f"VPSieNodes without a node: {[vn['metadata']['name'] for vn in vns]}"
    assert len(set(node_names)) == len(node_names), f"two VPSieNodes claim one Node: {node_names}"
    nodes = {n["metadata"]["name"]: n for n in e2e.group_nodes(group)}
    assert set(node_names) == set(nodes), (
        f"VPSieNodes name {sorted(node_names)}, group Nodes are {sorted(nodes)}"
    )
    for vn in vns:
        node = nodes[vn["status"]["nodeName"]]
        assert node["metadata"]["labels"].get(VPSIENODE_LABEL) == vn["metadata"]["name"]


@contextlib.contextmanager
def timed(record: dict[str, float], key: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        record[key] = time.monotonic() - start
