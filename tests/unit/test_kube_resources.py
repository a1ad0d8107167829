"""Resource descriptors build the URLs the apiserver serves."""

from __future__ import annotations

import pytest

from vpsie_autoscaler.kube.resources import EVENTS, LEASES, NODEGROUPS, NODES, PDBS, PODS, VPSIENODES


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (NODES.path(), "/api/v1/nodes"),
        (NODES.path(name="n1"), "/api/v1/nodes/n1"),
        (PODS.path(), "/api/v1/pods"),
        (PODS.path("ns"), "/api/v1/namespaces/ns/pods"),
        (PODS.path("ns", "p", "eviction"), "/api/v1/namespaces/ns/pods/p/eviction"),
        (PDBS.path("ns"), "/apis/policy/v1/namespaces/ns/poddisruptionbudgets"),
        (EVENTS.path("default"), "/apis/events.k8s.io/v1/namespaces/default/events"),
        (LEASES.path("kube-system", "x"), "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"),
        (
            NODEGROUPS.path(name="g", subresource="status"),
            "/apis/autoscaler.vpsie.com/v1alpha1/nodegroups/g/status",
        ),
        (VPSIENODES.path(), "/apis/autoscaler.vpsie.com/v1alpha1/vpsienodes"),
    ],
)
def test_paths(path: str, expected: str) -> None:
    assert path == expected


def test_api_version() -> None:
    assert NODES.api_version == "v1"
    assert NODEGROUPS.api_version == "autoscaler.vpsie.com/v1alpha1"
    assert str(LEASES) == "leases.coordination.k8s.io"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: NODES.path("ns"), "cluster-scoped"),
        (lambda: PODS.path(name="p"), "namespaced"),
        (lambda: NODES.path(name=""), "empty name"),
        (lambda: NODES.path(subresource="status"), "needs an object name"),
    ],
)
def test_scope_mistakes_are_rejected(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_names_are_escaped() -> None:
    assert NODES.path(name="a/b") == "/api/v1/nodes/a%2Fb"
