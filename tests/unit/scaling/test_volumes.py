"""Local PersistentVolumes keep their pod's node: spec.local, or node affinity to one hostname; a claim
or volume the cache does not hold is not known to be safe."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.scaling.builders import LONG_AGO, NOW, group, node, pod, policy
from vpsie_autoscaler.api.labels import UNNEEDED_SINCE_ANNOTATION
from vpsie_autoscaler.scaling import reasons
from vpsie_autoscaler.scaling.scaledown import plan_scale_down
from vpsie_autoscaler.scaling.scheduling_facts import PodInfo
from vpsie_autoscaler.scaling.volumes import local_claims, on_one_node, pinned_hostnames

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def expr(key: str, *values: str, op: str = "In") -> dict[str, Any]:
    return {"key": key, "operator": op, "values": list(values)}


def pv(
    name: str = "pv-1", *, local: bool = False, terms: list[list[dict[str, Any]]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"capacity": {"storage": "1Gi"}}
    if local:
        spec["local"] = {"path": "/mnt/disks/ssd1"}
    if terms is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": t} for t in terms]}}
    return {"metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize(
    ("volume", "pinned", "one"),
    [
        (pv(local=True, terms=[[expr(HOST, "n1")]]), frozenset({"n1"}), True),
        (pv(local=True), None, True),  # local without affinity: still a disk of one node
        (pv(terms=[[expr(HOST, "n1")]]), frozenset({"n1"}), True),  # hostPath-style PV
        (pv(terms=[[expr(HOST, "n1", "n2")]]), frozenset({"n1", "n2"}), False),
        (pv(terms=[[expr(HOST, "n1")], [expr(HOST, "n2")]]), frozenset({"n1", "n2"}), False),
        (pv(terms=[[expr(HOST, "n1"), expr(ZONE, "z1")]]), frozenset({"n1"}), True),
        (pv(terms=[[expr(HOST, "n1")], [expr(ZONE, "z1")]]), None, False),  # a term any node of z1 passes
        (pv(terms=[[expr(ZONE, "z1")]]), None, False),  # a zonal cloud disk moves with the pod
        (pv(terms=[[expr(HOST, "n1", op="NotIn")]]), None, False),
        (pv(), None, False),
    ],
)
def test_which_volumes_live_on_one_node(
    volume: dict[str, Any], pinned: frozenset[str] | None, one: bool
) -> None:
    assert pinned_hostnames(volume) == pinned
    assert on_one_node(volume) is one


PVCS: dict[str, dict[str, Any]] = {
    "default/local": {"spec": {"volumeName": "pv-local"}},
    "default/pinned": {"spec": {"volumeName": "pv-pinned"}},
    "default/cloud": {"spec": {"volumeName": "pv-cloud"}},
    "default/pending": {"spec": {}},
    "default/lost": {"spec": {"volumeName": "pv-gone"}},
}
PVS = {
    "pv-local": pv("pv-local", local=True, terms=[[expr(HOST, "n1")]]),
    "pv-pinned": pv("pv-pinned", terms=[[expr(HOST, "n1")]]),
    "pv-cloud": pv("pv-cloud", terms=[[expr(ZONE, "z1")]]),
}


@pytest.mark.parametrize(
    ("claim", "blocks", "text"),
    [
        ("local", True, "PersistentVolume pv-local is a local volume of this node"),
        ("pinned", True, "PersistentVolume pv-pinned is bound to this node by its node affinity"),
        ("cloud", False, ""),
        ("pending", False, ""),  # not bound: nothing on any node yet
        ("lost", True, "PersistentVolume pv-gone not found"),
        ("unknown", True, "PersistentVolumeClaim not found"),
    ],
)
def test_claims_that_keep_the_pod_on_its_node(claim: str, blocks: bool, text: str) -> None:
    found = local_claims("default", (claim,), PVCS, PVS)
    assert bool(found) is blocks
    if blocks:
        assert found[0].startswith(f"{claim}: ")
        assert text in found[0]
    assert local_claims("other", ("cloud",), PVCS, PVS)  # another namespace's claim is not this one


def test_claim_names_are_read_from_the_pod() -> None:
    volumes = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "db-0"}},
        {"name": "cache", "emptyDir": {}},
    ]
    p = pod("db", volumes=volumes)
    assert p.claims == ("db-0",)
    assert p.local_volumes == ("cache",)


LONG = {UNNEEDED_SINCE_ANNOTATION: LONG_AGO.isoformat()}
FAST = policy(unneeded_time=timedelta(minutes=10), disruption_budget="100%", max_concurrent_drains=10)


@pytest.mark.parametrize(
    "annotations",
    [{}, {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}],  # safe-to-evict does not lift it
)
def test_a_pod_on_a_local_volume_keeps_its_node(annotations: dict[str, str]) -> None:
    db = dataclasses.replace(
        pod("db", annotations=annotations, node="n1"),
        local_claims=("data: PersistentVolume pv-local is a local volume of this node",),
    )
    nodes = [node("n1", pods=[db], annotations=LONG), node("n2", annotations=LONG, cpu="8")]
    p = plan_scale_down(nodes, [group("web", size=2, scale_down=FAST)], [], now=NOW)
    assert "n1" not in [r.node for r in p.removals]
    reason = p.blocked["n1"]
    assert reason.code == reasons.POD_BLOCKS_EVICTION
    assert reason.detail == reasons.LOCAL_PERSISTENT_VOLUME
    assert "pv-local is a local volume" in reason.message


@given(st.lists(st.sampled_from([*sorted(PVCS), "default/unknown"]), max_size=5))
def test_blocking_is_per_claim(keys: list[str]) -> None:
    """Each claim is judged alone: the result is the claims that block, in order."""
    claims = tuple(k.split("/")[1] for k in keys)
    alone = [c for c in claims if local_claims("default", (c,), PVCS, PVS)]
    assert [x.split(":")[0] for x in local_claims("default", claims, PVCS, PVS)] == alone


def test_podinfo_default_has_no_claims() -> None:
    assert PodInfo("ns", "p").local_claims == ()
