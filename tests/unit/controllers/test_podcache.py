"""Trimming the pod cache must never change a decision: the scheduling snapshot stays identical."""

import copy
import dataclasses
from typing import Any

import pytest

from tests.unit.scaling.builders import pod_dict, self_anti_affinity
from vpsie_autoscaler.controllers.podcache import trim_pod
from vpsie_autoscaler.scaling.scheduling_facts import PodInfo


def heavy(pod: dict[str, Any]) -> dict[str, Any]:
    """Add what a real API server sends and a kubelet needs: env, probes, mounts, statuses."""
    pod = copy.deepcopy(pod)
    for c in pod["spec"]["containers"]:
        c.update(
            env=[{"name": f"VAR{i}", "value": "x" * 100} for i in range(20)],
            command=["/app"],
            args=["--serve"],
            volumeMounts=[{"name": "token", "mountPath": "/var/run/secrets"}],
            livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}},
            securityContext={"runAsNonRoot": True},
        )
    pod["spec"].setdefault("volumes", []).extend(
        [
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
            {"name": "config", "configMap": {"name": "app"}},
        ]
    )
    pod["spec"]["dnsConfig"] = {"nameservers": ["10.0.0.10"]}
    pod["status"].update(
        containerStatuses=[{"name": "c", "ready": True, "restartCount": 0, "image": "x"}],
        podIPs=[{"ip": "10.244.0.5"}],
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
        startTime="2026-01-01T00:00:00Z",
    )
    return pod


CASES = {
    "plain": pod_dict("web"),
    "selector and tolerations": pod_dict(
        "db",
        node_selector={"pool": "db"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
    ),
    "host port": pod_dict("proxy", host_port=8443),
    "anti-affinity": pod_dict("zk", affinity=self_anti_affinity("zk")),
    "local storage": pod_dict(
        "cache",
        node="n1",
        volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "logs", "hostPath": {"path": "/var/log"}}],
    ),
    "claim and memory volume": pod_dict(
        "pg",
        volumes=[
            {"name": "data", "persistentVolumeClaim": {"claimName": "pg"}},
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
        ],
    ),
    "gpu and annotations": pod_dict(
        "train",
        extra={"nvidia.com/gpu": "1"},
        annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
    ),
    "sidecar init container": pod_dict(
        "mesh",
        spec_extra={
            "initContainers": [
                {
                    "name": "proxy",
                    "image": "p",
                    "restartPolicy": "Always",
                    "env": [{"name": "A", "value": "b"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                }
            ]
        },
    ),
    "topology spread": pod_dict(
        "spread",
        spec_extra={
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule",
                }
            ]
        },
    ),
}


def snapshot(pod: dict[str, Any]) -> dict[str, Any]:
    """Every field of the pod's scheduling snapshot (PodInfo compares by identity)."""
    info = PodInfo.from_k8s(pod)
    return {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}


@pytest.mark.parametrize("pod", [heavy(p) for p in CASES.values()], ids=list(CASES))
def test_scheduling_snapshot_is_unchanged_by_trimming(pod: dict[str, Any]) -> None:
    assert snapshot(trim_pod(pod)) == snapshot(pod)


def test_trimming_drops_what_only_the_kubelet_reads_and_keeps_conditions() -> None:
    pod = heavy(pod_dict("web"))
    trimmed = trim_pod(pod)
    container = trimmed["spec"]["containers"][0]
    assert "env" not in container
    assert "livenessProbe" not in container
    assert container["resources"] == pod["spec"]["containers"][0]["resources"]
    assert [v["name"] for v in trimmed["spec"].get("volumes", [])] == []
    assert "containerStatuses" not in trimmed["status"]
    assert trimmed["status"]["conditions"] == pod["status"]["conditions"]
    assert trimmed["metadata"] == pod["metadata"]
    assert len(repr(trimmed)) < len(repr(pod)) / 3


def test_trimming_leaves_the_input_untouched() -> None:
    pod = heavy(pod_dict("web"))
    before = copy.deepcopy(pod)
    trim_pod(pod)
    assert pod == before
