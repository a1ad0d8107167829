"""Snapshots extract what scheduling needs from raw JSON, and report what they cannot model."""

from __future__ import annotations

from typing import Any

from tests.unit.scaling.builders import node_dict, pod_dict
from vpsie_autoscaler.api.labels import TO_BE_DELETED_TAINT
from vpsie_autoscaler.scaling.resources import Resources
from vpsie_autoscaler.scaling.scheduling_facts import (
    HostPort,
    NodeInfo,
    PDBInfo,
    PodInfo,
    nodes_from_k8s,
    pod_requests,
)


def c(name: str, requests: dict[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": requests or {}}, **kw}


def test_requests_sum_containers_and_add_a_pod_slot() -> None:
    spec = {"containers": [c("a", {"cpu": "100m", "memory": "64Mi"}), c("b", {"cpu": "200m"})]}
    assert pod_requests(spec) == Resources.parse({"cpu": "300m", "memory": "64Mi", "pods": 1})


def test_init_containers_take_the_max_not_the_sum() -> None:
    spec = {
        "containers": [c("app", {"cpu": "100m"})],
        "initContainers": [c("i1", {"cpu": "1"}), c("i2", {"cpu": "500m", "memory": "1Gi"})],
    }
    assert pod_requests(spec) == Resources.parse({"cpu": "1", "memory": "1Gi", "pods": 1})


def test_sidecars_add_to_the_app_and_to_later_init_containers() -> None:
    spec = {
        "containers": [c("app", {"cpu": "100m"})],
        "initContainers": [
            c("sidecar", {"cpu": "200m"}, restartPolicy="Always"),
            c("migrate", {"cpu": "1"}),
        ],
    }
    # max(app + sidecar = 300m, sidecar + migrate = 1200m)
    assert pod_requests(spec)["cpu"] == 1200


def test_overhead_is_added_and_limits_default_requests() -> None:
    spec = {
        "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
        "overhead": {"cpu": "250m"},
    }
    assert pod_requests(spec) == Resources.parse({"cpu": "1250m", "memory": "1Gi", "pods": 1})


def test_pod_level_resources_win_when_set() -> None:
    spec = {"resources": {"requests": {"cpu": "2"}}, "containers": [c("a", {"cpu": "100m"})]}
    assert pod_requests(spec)["cpu"] == 2000


def test_pod_fields_are_extracted() -> None:
    raw = pod_dict(
        "web-1",
        node_selector={"disk": "ssd"},
        tolerations=[{"key": "dedicated", "operator": "Exists"}],
        host_port=8080,
        priority=5,
        volumes=[
            {"name": "scratch", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
            {"name": "host", "hostPath": {"path": "/x"}},
        ],
    )
    pod = PodInfo.from_k8s(raw)
    assert pod.key == "default/web-1"
    assert pod.node_selector == (("disk", "ssd"),)
    assert pod.tolerations[0].key == "dedicated"
    assert pod.host_ports == (HostPort("TCP", 8080),)
    assert pod.priority == 5
    assert pod.controller_kind == "ReplicaSet"
    assert pod.local_volumes == ("scratch", "host")  # memory-backed emptyDir is not local storage
    assert pod.unmodelled == ()


def test_unmodelled_constraints_are_recorded_not_dropped() -> None:
    raw = pod_dict(
        "p",
        affinity={
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}]},
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": {"a": "b"}},
                        "topologyKey": "topology.kubernetes.io/zone",
                    }
                ]
            },
        },
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}],
        spec_extra={
            "topologySpreadConstraints": [
                {"topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "maxSkew": 1},
                {"topologyKey": "host", "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 1},
            ]
        },
    )
    pod = PodInfo.from_k8s(raw)
    assert pod.anti_affinity == ()  # only hostname anti-affinity is modelled
    assert set(pod.unmodelled) == {
        "podAntiAffinity(topologyKey=topology.kubernetes.io/zone)",
        "podAffinity",
        "topologySpreadConstraints(topologyKey=zone)",
        "persistentVolumeClaim(volume topology not checked)",
    }


def test_hostname_anti_affinity_namespaces() -> None:
    term = {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}
    own = PodInfo.from_k8s(
        pod_dict(
            "a",
            namespace="prod",
            affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
        )
    )
    assert own.anti_affinity[0].namespaces == frozenset({"prod"})
    assert own.anti_affinity[0].selects("prod", {"app": "db"})
    assert not own.anti_affinity[0].selects("dev", {"app": "db"})
    everywhere = {**term, "namespaceSelector": {}}
    allns = PodInfo.from_k8s(
        pod_dict(
            "b",
            affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [everywhere]}},
        )
    )
    assert allns.anti_affinity[0].selects("dev", {"app": "db"})


def test_daemonset_mirror_and_terminal_pods_are_recognized() -> None:
    assert PodInfo.from_k8s(pod_dict("d", owner="DaemonSet")).is_daemonset
    assert PodInfo.from_k8s(
        pod_dict("m", owner=None, annotations={"kubernetes.io/config.mirror": "x"})
    ).is_mirror
    assert PodInfo.from_k8s(pod_dict("t", node="n1", phase="Succeeded")).is_terminal


def test_node_from_k8s_counts_only_live_pods_and_spots_deletion() -> None:
    running = PodInfo.from_k8s(pod_dict("a", "1", "1Gi", node="n1"))
    done = PodInfo.from_k8s(pod_dict("b", "1", "1Gi", node="n1", phase="Succeeded"))
    node = NodeInfo.from_k8s(node_dict("n1", "4", "8Gi"), [running, done])
    assert node.group == "web"
    assert node.ready
    assert node.requested == running.requests
    assert node.free["cpu"] == 3000
    tainted = NodeInfo.from_k8s(
        node_dict("n2", taints=[{"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}])
    )
    assert tainted.deleting
    assert NodeInfo.from_k8s(node_dict("n3", deleting=True)).deleting
    assert not NodeInfo.from_k8s(node_dict("n4", ready=False)).ready


def test_nodes_from_k8s_joins_pods_to_their_nodes() -> None:
    nodes = nodes_from_k8s(
        [node_dict("n1"), node_dict("n2")],
        [pod_dict("a", node="n1"), pod_dict("b", node="n2"), pod_dict("pending")],
    )
    assert [len(n.pods) for n in nodes] == [1, 1]


def test_pdb_selector_semantics() -> None:
    pod = PodInfo.from_k8s(pod_dict("a", labels={"app": "x"}))
    assert PDBInfo.from_k8s(
        {"metadata": {"name": "p", "namespace": "default"}, "spec": {"selector": {}}}
    ).covers(pod)
    assert not PDBInfo.from_k8s({"metadata": {"name": "p", "namespace": "default"}, "spec": {}}).covers(pod)
    other_ns = {"metadata": {"name": "p", "namespace": "prod"}, "spec": {"selector": {}}}
    assert not PDBInfo.from_k8s(other_ns).covers(pod)
