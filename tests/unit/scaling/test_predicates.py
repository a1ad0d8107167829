"""Each predicate admits what the scheduler admits and explains refusals with numbers."""

from __future__ import annotations

import pytest

from tests.unit.scaling.builders import node, pod, self_anti_affinity
from vpsie_autoscaler.scaling import predicates, reasons
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo, PodInfo

NO_SCHEDULE = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
TOLERATE = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
AFFINITY_SSD = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
            ]
        }
    }
}

CASES: list[tuple[str, PodInfo, NodeInfo, str | None]] = [
    ("fits", pod("a", "1", "1Gi"), node("n", "2", "2Gi"), None),
    ("cpu short", pod("a", "3", "1Gi"), node("n", "2", "8Gi"), reasons.INSUFFICIENT_RESOURCE),
    ("memory short", pod("a", "1", "9Gi"), node("n", "2", "8Gi"), reasons.INSUFFICIENT_RESOURCE),
    (
        "extended resource missing",
        pod("a", extra={"nvidia.com/gpu": "1"}),
        node("n"),
        reasons.INSUFFICIENT_RESOURCE,
    ),
    ("pods full", pod("a"), node("n", pods_cap="1", pods=[pod("x", node="n")]), reasons.TOO_MANY_PODS),
    ("selector ok", pod("a", node_selector={"disk": "ssd"}), node("n", labels={"disk": "ssd"}), None),
    ("selector missing", pod("a", node_selector={"disk": "ssd"}), node("n"), reasons.NODE_SELECTOR_MISMATCH),
    (
        "selector differs",
        pod("a", node_selector={"disk": "ssd"}),
        node("n", labels={"disk": "hdd"}),
        reasons.NODE_SELECTOR_MISMATCH,
    ),
    ("affinity ok", pod("a", affinity=AFFINITY_SSD), node("n", labels={"disk": "ssd"}), None),
    ("affinity fails", pod("a", affinity=AFFINITY_SSD), node("n"), reasons.NODE_AFFINITY_MISMATCH),
    ("taint untolerated", pod("a"), node("n", taints=[NO_SCHEDULE]), reasons.TAINT_NOT_TOLERATED),
    ("taint tolerated", pod("a", tolerations=TOLERATE), node("n", taints=[NO_SCHEDULE]), None),
    ("prefer-no-schedule", pod("a"), node("n", taints=[{**NO_SCHEDULE, "effect": "PreferNoSchedule"}]), None),
    ("cordoned", pod("a"), node("n", unschedulable=True), reasons.NODE_UNSCHEDULABLE),
    ("host port free", pod("a", host_port=80), node("n", pods=[pod("x", host_port=81, node="n")]), None),
    (
        "host port taken",
        pod("a", host_port=80),
        node("n", pods=[pod("x", host_port=80, node="n")]),
        reasons.HOST_PORT_CONFLICT,
    ),
    (
        "anti-affinity: incoming pod's term",
        pod("a", labels={"app": "db"}, affinity=self_anti_affinity("db")),
        node("n", pods=[pod("x", labels={"app": "db"}, node="n")]),
        reasons.ANTI_AFFINITY_CONFLICT,
    ),
    (
        "anti-affinity: resident pod's term",
        pod("a", labels={"app": "db"}),
        node("n", pods=[pod("x", labels={"app": "other"}, affinity=self_anti_affinity("db"), node="n")]),
        reasons.ANTI_AFFINITY_CONFLICT,
    ),
    (
        "anti-affinity: other labels",
        pod("a", labels={"app": "web"}, affinity=self_anti_affinity("db")),
        node("n", pods=[pod("x", labels={"app": "web"}, node="n")]),
        None,
    ),
]


@pytest.mark.parametrize(("pod_", "node_", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_predicate_chain(pod_: PodInfo, node_: NodeInfo, code: str | None) -> None:
    reason = predicates.check(pod_, node_)
    assert (reason.code if reason else None) == code


def test_resource_message_has_the_numbers() -> None:
    reason = predicates.check(pod("a", "3", "1Gi"), node("n", "2", "8Gi"))
    assert reason is not None
    assert reason.detail == "cpu"
    assert reason.message == "insufficient cpu: requests 3, free 2"


def test_cordon_is_tolerable() -> None:
    tolerant = pod("a", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}])
    assert predicates.check(tolerant, node("n", unschedulable=True)) is None


def test_pods_conflict_is_symmetric() -> None:
    a = pod("a", labels={"app": "db"}, affinity=self_anti_affinity("db"))
    b = pod("b", labels={"app": "db"})
    assert predicates.pods_conflict(a, b)
    assert predicates.pods_conflict(b, a)
    assert predicates.pods_conflict(a, a)
    assert not predicates.pods_conflict(b, b)
    assert predicates.pods_conflict(pod("x", host_port=53), pod("y", host_port=53))
