"""The models refuse what the API server refuses, with the same message, and keep explicit values."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from vpsie_autoscaler.api import NodeGroup, NodeGroupSpec, VPSieNode, format_duration, parse_duration
from vpsie_autoscaler.api.nodegroup import (
    MSG_BACKOFF_ORDER,
    MSG_MIN_LE_MAX,
    MSG_ONE_SOURCE,
    MSG_ONE_VPSIE_GROUP,
)
from vpsie_autoscaler.scaling import membership

VM = {"resourceIdentifier": "plan-1", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}
MANAGED = {"clusterIdentifier": "c-1", "nodeGroupName": "workers", "sizeId": 3}


def spec(**extra: Any) -> dict[str, Any]:
    return {"minNodes": 1, "maxNodes": 5, "vm": VM, **extra}


def test_minimal_spec_gets_the_documented_defaults() -> None:
    s = NodeGroupSpec.model_validate(spec())
    assert s.scale_up.enabled is True
    assert s.scale_down.utilization_threshold == 0.5
    assert s.scale_down.unneeded == timedelta(minutes=10)
    assert s.scale_down.delay_after_up == timedelta(minutes=10)
    assert s.scale_down.graceful_termination == timedelta(seconds=600)
    assert s.scale_down.disruption_budget == "10%"
    assert s.provisioning.provision_timeout == timedelta(minutes=15)


def test_explicit_false_survives_a_round_trip() -> None:
    # Seed trap §1.5: an explicit `enabled: false` was dropped on update and re-defaulted to true.
    s = NodeGroupSpec.model_validate(spec(scaleDown={"enabled": False}, scaleUp={"enabled": False}))
    out = s.to_k8s()
    assert out["scaleDown"]["enabled"] is False
    assert out["scaleUp"]["enabled"] is False
    assert NodeGroupSpec.model_validate(out).scale_down.enabled is False


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"minNodes": 6}, MSG_MIN_LE_MAX),
        ({"managed": MANAGED}, MSG_ONE_SOURCE),
        ({"vm": None}, MSG_ONE_SOURCE),
        ({"minNodes": -1}, "greater than or equal to 0"),
        ({"maxNodes": 1001}, "less than or equal to 1000"),
        ({"scaleDown": {"utilizationThreshold": 1.5}}, "less than or equal to 1"),
        ({"scaleDown": {"unneededTime": "10 minutes"}}, "invalid duration"),
        ({"scaleDown": {"unneededTime": "-5m"}}, "invalid duration"),
        ({"scaleDown": {"unneededTime": "200h"}}, "must be a duration between 0s and 168h"),
        ({"scaleDown": {"disruptionBudget": "150%"}}, "percentage"),
        ({"scaleDown": {"disruptionBudget": -1}}, "percentage"),
        ({"scaleDown": {"disruptionBudget": "ten"}}, "percentage"),
        ({"provisioning": {"maxProvisionTime": "30s"}}, "between 1m and 24h"),
        ({"provisioning": {"backoff": {"initial": "20m", "max": "5m"}}}, MSG_BACKOFF_ORDER),
        ({"template": {"taints": [{"key": "a", "effect": "Sometimes"}]}}, "NoSchedule"),
        (
            {"template": {"taints": [{"key": "bad key", "effect": "NoSchedule"}]}},
            "taint keys are qualified names",
        ),
        ({"template": {"resources": {"cpu": "two"}}}, "must be a quantity"),
        ({"template": {"labels": {"a": "x" * 64}}}, "at most 63 characters"),
    ],
)
def test_invalid_specs_are_refused_with_a_clear_message(patch: dict[str, Any], message: str) -> None:
    body = spec()
    body.update(patch)
    with pytest.raises(ValidationError, match=message):
        NodeGroupSpec.model_validate(body)


def test_managed_source_needs_exactly_one_vpsie_group_reference() -> None:
    both = {**MANAGED, "nodeGroupId": 7}
    with pytest.raises(ValidationError, match=MSG_ONE_VPSIE_GROUP):
        NodeGroupSpec.model_validate({"minNodes": 0, "maxNodes": 1, "managed": both})
    neither = {k: v for k, v in MANAGED.items() if k != "nodeGroupName"}
    with pytest.raises(ValidationError, match=MSG_ONE_VPSIE_GROUP):
        NodeGroupSpec.model_validate({"minNodes": 0, "maxNodes": 1, "managed": neither})


def test_accepted_budgets_and_quantities() -> None:
    s = NodeGroupSpec.model_validate(
        spec(
            scaleDown={"disruptionBudget": 3},
            template={
                "resources": {"cpu": 4, "memory": "8Gi", "nvidia.com/gpu": "1"},
                "reserved": {"cpu": "100m"},
            },
        )
    )
    assert s.scale_down.disruption_budget == 3
    assert s.template.resources["memory"] == "8Gi"


def test_price_is_derived_from_the_monthly_plan_price() -> None:
    s = NodeGroupSpec.model_validate(spec(template={"monthlyPrice": 73}))
    assert s.template.effective_hourly_price() == pytest.approx(0.1)
    assert NodeGroupSpec.model_validate(spec()).template.effective_hourly_price() is None


def test_nodegroup_parses_a_server_object_with_unknown_fields() -> None:
    obj = {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": "web", "generation": 2, "futureField": 1},
        "spec": spec(futureKnob=True),
        "status": {"desiredNodes": 2, "conditions": [], "newStatus": "x"},
    }
    ng = NodeGroup.from_k8s(obj)
    assert ng.metadata.name == "web"
    assert ng.status.desired_nodes == 2


def test_vpsienode_phase_helpers_and_timestamp_keys() -> None:
    base = {"spec": {"nodeGroup": "web", "hostname": "web-abc12", "vm": VM}}
    vn = VPSieNode.from_k8s({**base, "status": {"phase": "Joining"}})
    assert membership.in_flight(vn)
    assert not membership.leaving(vn)
    gone = VPSieNode.from_k8s(
        {**base, "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Ready"}}
    )
    assert membership.leaving(gone)
    assert not membership.in_flight(gone)
    with pytest.raises(ValidationError, match="phase names"):
        VPSieNode.from_k8s({**base, "status": {"phaseTimestamps": {"Booting": "2026-01-01T00:00:00Z"}}})
    with pytest.raises(ValidationError, match="pattern"):
        VPSieNode.from_k8s({"spec": {**base["spec"], "hostname": "Web_1"}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0s", 0),
        ("30s", 30),
        ("10m", 600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("250ms", 0.25),
        ("2h0m5s", 7205),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "1d", "-1s", "1 h", "1h-5m", "x" * 40])
def test_parse_duration_refuses_non_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration_round_trips() -> None:
    for text in ("10m", "1h30m", "45s", "2h"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(timedelta(0)) == "0s"


def test_set_condition_moves_transition_time_only_on_status_change() -> None:
    from datetime import UTC, datetime

    from vpsie_autoscaler.api.types import Condition, set_condition

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(minutes=5)
    conds: list[Condition] = []
    assert set_condition(conds, "Ready", "True", "Active", "ok", now=t0)
    assert not set_condition(conds, "Ready", "True", "Active", "ok", now=t1)  # steady: no write
    assert set_condition(conds, "Ready", "True", "ScalingUp", "growing", now=t1)
    assert conds[0].last_transition_time == t0  # same status: still "since t0"
    assert set_condition(conds, "Ready", "False", "CloudError", "down", now=t1)
    assert conds[0].last_transition_time == t1
    assert set_condition(conds, "Backoff", "True", "Quota", "q", now=t1, observed_generation=3)
    assert [c.type for c in conds] == ["Ready", "Backoff"]
    assert conds[1].observed_generation == 3


@pytest.mark.parametrize(
    ("group", "suffix", "expected"),
    [
        ("web", "1a2b3c4d", "web-1a2b3c4d"),
        ("Web_Pool.GPU", "00ff00ff", "web-pool-gpu-00ff00ff"),
        ("x" * 80, "abcdef12", "x" * 54 + "-abcdef12"),
        ("---", "abcdef12", "node-abcdef12"),
    ],
)
def test_hostname_for_is_a_valid_dns_label(group: str, suffix: str, expected: str) -> None:
    from vpsie_autoscaler.api.vpsienode import hostname_for

    name = hostname_for(group, suffix)
    assert name == expected
    assert len(name) <= 63
    VPSieNode.from_k8s({"spec": {"nodeGroup": group, "hostname": name, "vm": VM}})


def test_hostname_suffix_must_be_safe() -> None:
    from vpsie_autoscaler.api.vpsienode import hostname_for

    with pytest.raises(ValueError, match="suffix"):
        hostname_for("web", "AB-1")
    with pytest.raises(ValueError, match="suffix"):
        hostname_for("web", "")


def test_random_suffix_follows_the_naming_contract() -> None:
    import random
    import re

    from vpsie_autoscaler.api.vpsienode import hostname_for, random_suffix

    suffix = random_suffix()
    assert re.fullmatch(r"[a-z0-9]{5}", suffix)
    assert random_suffix(random.Random(1)) == random_suffix(random.Random(1))
    assert re.fullmatch(r"web-[a-z0-9]{5}", hostname_for("web", random_suffix()))


def test_nodegroup_name_must_fit_a_label_value() -> None:
    from vpsie_autoscaler.api.nodegroup import MSG_NAME_LENGTH

    NodeGroup.from_k8s({"metadata": {"name": "g" * 63}, "spec": spec()})
    with pytest.raises(ValidationError, match=MSG_NAME_LENGTH):
        NodeGroup.from_k8s({"metadata": {"name": "g" * 64}, "spec": spec()})
