"""The pure rules of the lifecycle controllers: counting, back-off, surplus choice, naming, drains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vpsie_autoscaler.api.labels import (
    DRAIN_REQUESTED_ANNOTATION,
    MIRROR_POD_ANNOTATION,
    NODEGROUP_LABEL,
    VPSIENODE_LABEL,
)
from vpsie_autoscaler.api.nodegroup import BackoffSpec, NodeGroup
from vpsie_autoscaler.api.types import Taint
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.cloud import vm_hostname_prefix
from vpsie_autoscaler.controllers.garbagecollection.collector import OUR_NAMING_SHAPE, our_name_pattern
from vpsie_autoscaler.controllers.new_vpsienode import new_vpsienode
from vpsie_autoscaler.controllers.nodegroup import status as nodegroup_status
from vpsie_autoscaler.controllers.nodes import claimed_by_other, join_patch
from vpsie_autoscaler.controllers.objects import parse_time, rfc3339
from vpsie_autoscaler.controllers.vpsienode.drain import blocks_drain
from vpsie_autoscaler.controllers.vpsienode_keys import ERROR_CLASS_ANNOTATION

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def group(name: str = "web", **spec: Any) -> NodeGroup:
    body: dict[str, Any] = {
        "minNodes": 0,
        "maxNodes": 5,
        "vm": {"resourceIdentifier": "plan", "osIdentifier": "os", "dcIdentifier": "dc", "projectId": "p"},
        "template": {
            "labels": {"pool": name},
            "taints": [{"key": "dedicated", "value": name, "effect": "NoSchedule"}],
        },
    }
    body.update(spec)
    return NodeGroup.model_validate({"metadata": {"name": name}, "spec": body})


def record(
    phase: str | None,
    *,
    name: str | None = None,
    node: str | None = None,
    failed_at: datetime | None = None,
    ready_at: datetime | None = None,
    error_class: str | None = None,
    deleting: bool = False,
    drain: bool = False,
    created: datetime = T0,
) -> VPSieNode:
    vn = new_vpsienode(group())
    if name is not None:
        vn.metadata.name = name
    vn.metadata.creation_timestamp = created
    vn.status.phase = phase  # type: ignore[assignment]
    vn.status.node_name = node
    if failed_at is not None:
        vn.status.phase_timestamps["Failed"] = failed_at
    if ready_at is not None:
        vn.status.phase_timestamps["Ready"] = ready_at
    if error_class is not None:
        vn.metadata.annotations[ERROR_CLASS_ANNOTATION] = error_class
    if deleting:
        vn.metadata.deletion_timestamp = T0
    if drain:
        vn.metadata.annotations[DRAIN_REQUESTED_ANNOTATION] = rfc3339(T0)
    return vn


def all_ready(_: str) -> bool:
    return True


# --- counting ---------------------------------------------------------------------------------------


def test_leaving_nodes_are_never_counted_as_current() -> None:
    """Seed bug dc0700f: a node being deleted was counted twice (as current and as deleting)."""
    vns = [
        record("Ready", node="a"),
        record("Ready", node="b", deleting=True),
        record("Draining", node="c"),
        record("Ready", node="d", drain=True),
        record("Pending"),
        record("Failed", failed_at=T0),
    ]
    counts = nodegroup_status.count(vns, all_ready)
    assert counts == nodegroup_status.Counts(current=2, ready=1, provisioning=1, deleting=3, failed=1)


def test_ready_counts_only_nodes_whose_node_is_ready() -> None:
    vns = [record("Ready", node="a"), record("Ready", node="b"), record("Ready", node=None)]
    counts = nodegroup_status.count(vns, lambda name: name == "a")
    assert (counts.current, counts.ready) == (3, 1)


# --- back-off ---------------------------------------------------------------------------------------


def test_no_failures_no_backoff() -> None:
    assert (
        nodegroup_status.backoff([record("Ready", node="a", ready_at=T0)], BackoffSpec())
        == nodegroup_status.Backoff()
    )


def test_transient_failures_back_off_exponentially_from_the_latest_failure() -> None:
    spec = BackoffSpec(initial="1m", max="15m")
    one = [record("Failed", failed_at=T0, error_class="transient")]
    assert nodegroup_status.backoff(one, spec).until == T0 + timedelta(minutes=1)
    three = [record("Failed", failed_at=T0 + timedelta(minutes=i), error_class="transient") for i in range(3)]
    got = nodegroup_status.backoff(three, spec)
    assert (got.failures, got.until) == (3, T0 + timedelta(minutes=2) + timedelta(minutes=4))
    many = [record("Failed", failed_at=T0 + timedelta(minutes=i), error_class="transient") for i in range(10)]
    assert nodegroup_status.backoff(many, spec).until == T0 + timedelta(minutes=9) + timedelta(minutes=15)


def test_quota_failure_backs_off_for_the_maximum_at_once() -> None:
    got = nodegroup_status.backoff(
        [record("Failed", failed_at=T0, error_class="quota")], BackoffSpec(initial="1m", max="15m")
    )
    assert got.until == T0 + timedelta(minutes=15)
    assert got.error_class == "quota"


def test_a_success_after_failures_resets_the_backoff() -> None:
    vns = [
        record("Failed", failed_at=T0, error_class="quota"),
        record("Ready", node="a", ready_at=T0 + timedelta(seconds=1)),
    ]
    assert nodegroup_status.backoff(vns, BackoffSpec()).until is None


def test_a_lost_node_without_error_class_does_not_back_the_group_off() -> None:
    assert nodegroup_status.backoff([record("Failed", failed_at=T0)], BackoffSpec()).until is None


def test_backoff_is_active_only_before_its_end() -> None:
    b = nodegroup_status.Backoff(until=T0)
    assert b.active(T0 - timedelta(seconds=1))
    assert not b.active(T0)


# --- surplus and state ------------------------------------------------------------------------------


def test_surplus_takes_not_ready_nodes_first_then_newest() -> None:
    old = record("Ready", name="old", node="old", created=T0)
    new = record("Ready", name="new", node="new", created=T0 + timedelta(minutes=5))
    sick = record("Ready", name="sick", node="sick", created=T0)
    booting = record("Provisioning", name="booting", created=T0)
    leaving = record("Ready", name="leaving", node="leaving", drain=True)
    chosen = nodegroup_status.surplus([old, new, sick, booting, leaving], 3, lambda n: n != "sick")
    assert [vn.metadata.name for vn in chosen] == ["booting", "sick", "new"]
    assert nodegroup_status.surplus([old], 0, all_ready) == []


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"cloud_error": True, "in_backoff": True}, (False, "Error")),
        ({"in_backoff": True}, (True, "Backoff")),
        ({"counts": nodegroup_status.Counts(current=1, provisioning=1)}, (True, "ScalingUp")),
        ({"counts": nodegroup_status.Counts(current=0)}, (True, "ScalingUp")),
        ({"counts": nodegroup_status.Counts(current=2, deleting=1)}, (True, "ScalingDown")),
        ({"counts": nodegroup_status.Counts(current=3)}, (True, "AtMax")),
        ({"counts": nodegroup_status.Counts(current=2)}, (True, "Active")),
    ],
)
def test_ready_reason_is_the_one_word_state(kwargs: dict[str, Any], expected: tuple[bool, str]) -> None:
    args: dict[str, Any] = {
        "cloud_error": False,
        "in_backoff": False,
        "counts": nodegroup_status.Counts(current=2),
    }
    args.update(kwargs)
    assert nodegroup_status.ready_state(min_nodes=1, max_nodes=3, **args) == expected


# --- naming -----------------------------------------------------------------------------


def test_vm_prefix_is_the_new_vpsienode_hostname_minus_its_suffix() -> None:
    vn = new_vpsienode(group("Web_Pool"))
    assert vn.spec.hostname.startswith(vm_hostname_prefix("Web_Pool"))
    assert len(vn.spec.hostname) - len(vm_hostname_prefix("Web_Pool")) == 5


@pytest.mark.parametrize(
    ("hostname", "ours"),
    [
        ("web-abc12", True),
        ("WEB-ABC12", True),
        ("web-2-abc12", False),
        ("web-abc123", False),
        ("db-abc12", False),
        ("web-", False),
        ("someone-elses-vm", False),
    ],
)
def test_only_hostnames_with_our_naming_match_the_groups_pattern(hostname: str, ours: bool) -> None:
    """Garbage collection reads tags only of VMs named like a group's nodes (``<group>-<5 [a-z0-9]>``)."""
    assert (our_name_pattern("web").fullmatch(hostname.lower()) is not None) is ours


@pytest.mark.parametrize(
    ("hostname", "shaped"),
    [
        ("web-abc12", True),
        ("web-api-abc12", True),
        ("web-abc1", False),
        ("-abc12", False),
        ("webabc12", False),
    ],
)
def test_our_naming_shape_is_any_group_name_and_a_five_character_suffix(hostname: str, shaped: bool) -> None:
    assert (OUR_NAMING_SHAPE.fullmatch(hostname) is not None) is shaped


def test_times_round_trip() -> None:
    assert parse_time(rfc3339(T0)) == T0
    assert parse_time("garbage") is None
    assert parse_time(None) is None


# --- node patches and drain filters --------------------------------------------------------------------


def node(labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-abc12", "resourceVersion": "7", "labels": labels or {}},
        "spec": {"taints": taints or []},
    }


def test_join_patch_adds_group_labels_taints_and_links_and_keeps_the_rest() -> None:
    """Seed trap: node labels and taints never applied."""
    vn = new_vpsienode(group())
    vn.spec.taints.append(Taint(key="extra", effect="NoExecute"))
    patch = join_patch(
        vn,
        node(
            labels={"kubernetes.io/hostname": "web-abc12"}, taints=[{"key": "other", "effect": "NoSchedule"}]
        ),
    )
    assert patch is not None
    labels = patch["metadata"]["labels"]
    assert labels["pool"] == "web"
    assert labels[NODEGROUP_LABEL] == "web"
    assert labels[VPSIENODE_LABEL] == vn.metadata.name
    assert "kubernetes.io/hostname" not in labels  # merge patch: untouched
    assert patch["metadata"]["resourceVersion"] == "7"  # taints are a list: optimistic lock
    keys = [t["key"] for t in patch["spec"]["taints"]]
    assert keys == ["other", "dedicated", "extra"]


def test_join_patch_is_none_once_everything_is_applied() -> None:
    vn = new_vpsienode(group())
    first = join_patch(vn, node())
    assert first is not None
    applied = node(labels=first["metadata"]["labels"], taints=first["spec"]["taints"])
    assert join_patch(vn, applied) is None


def test_a_node_labelled_for_another_record_is_claimed_by_it() -> None:
    assert claimed_by_other("web-abc12", node(labels={VPSIENODE_LABEL: "web-zzz99"})) == "web-zzz99"
    assert claimed_by_other("web-abc12", node(labels={VPSIENODE_LABEL: "web-abc12"})) is None
    assert claimed_by_other("web-abc12", node()) is None


def pod(**meta: Any) -> dict[str, Any]:
    phase = meta.pop("phase", "Running")
    return {"metadata": {"name": "p", "namespace": "n", **meta}, "status": {"phase": phase}}


def test_daemonset_mirror_and_finished_pods_never_block_a_drain() -> None:
    assert blocks_drain(pod())
    assert not blocks_drain(pod(ownerReferences=[{"kind": "DaemonSet", "name": "ds", "controller": True}]))
    assert not blocks_drain(pod(annotations={MIRROR_POD_ANNOTATION: "x"}))
    assert not blocks_drain(pod(phase="Succeeded"))
    assert blocks_drain(pod(ownerReferences=[{"kind": "ReplicaSet", "name": "rs", "controller": True}]))
