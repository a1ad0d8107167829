"""GroupTemplate: built from a NodeGroup and what only the controllers know."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.unit.scaling.builders import NOW, pod
from vpsie_autoscaler.api import NodeGroup
from vpsie_autoscaler.api.labels import HOSTNAME_LABEL, NODEGROUP_LABEL
from vpsie_autoscaler.scaling.groups import GroupTemplate, TemplateError, budget_nodes
from vpsie_autoscaler.scaling.predicates import check
from vpsie_autoscaler.scaling.resources import Resources

VM = {"resourceIdentifier": "plan-1", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}


def ng(**spec: Any) -> NodeGroup:
    return NodeGroup.from_k8s(
        {
            "metadata": {"name": "web"},
            "spec": {"minNodes": 1, "maxNodes": 5, "vm": VM, **spec},
            "status": {
                "lastScaleUpTime": NOW.isoformat(),
                "backoffUntil": (NOW + timedelta(minutes=1)).isoformat(),
            },
        }
    )


def test_from_nodegroup_merges_plan_capacity_template_and_reserved() -> None:
    group = GroupTemplate.from_nodegroup(
        ng(
            template={
                "labels": {"pool": "web"},
                "taints": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}],
                "resources": {"memory": "7Gi"},
                "reserved": {"cpu": "200m", "memory": "1Gi"},
                "monthlyPrice": 73,
            },
            scaleUp={"priority": 5},
            scaleDown={"disruptionBudget": 2, "unneededTime": "5m"},
        ),
        size=3,
        in_flight=1,
        deleting=1,
        plan_capacity={"cpu": "2", "memory": "8Gi", "ephemeral-storage": "40Gi"},
    )
    assert group.capacity == Resources.parse(
        {"cpu": "2", "memory": "7Gi", "ephemeral-storage": "40Gi", "pods": 110}
    )
    assert group.allocatable == Resources.parse(
        {"cpu": "1800m", "memory": "6Gi", "ephemeral-storage": "40Gi", "pods": 110}
    )
    assert group.labels == {"pool": "web"}
    assert group.taints[0].key == "dedicated"
    assert group.hourly_price == pytest.approx(0.1)
    assert group.priority == 5
    assert (group.size, group.in_flight, group.deleting, group.headroom) == (3, 1, 1, 2)
    assert group.scale_down.disruption_budget == 2
    assert group.scale_down.unneeded_time == timedelta(minutes=5)
    assert group.last_scale_up_time == NOW
    assert group.backoff_until == NOW + timedelta(minutes=1)


def test_unknown_capacity_is_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="capacity of cpu, memory unknown"):
        GroupTemplate.from_nodegroup(ng(), size=0)


def test_plan_price_is_used_when_the_template_has_none() -> None:
    group = GroupTemplate.from_nodegroup(
        ng(template={"resources": {"cpu": 2, "memory": "4Gi"}}), size=0, plan_hourly_price=0.05
    )
    assert group.hourly_price == 0.05


def test_daemonset_overhead_counts_only_daemonsets_that_land_on_the_group() -> None:
    everywhere = pod("agent", "100m", "128Mi", owner="DaemonSet")
    elsewhere = pod("gpu-agent", "500m", "1Gi", owner="DaemonSet", node_selector={"accel": "gpu"})
    group = GroupTemplate.from_nodegroup(
        ng(template={"resources": {"cpu": "2", "memory": "4Gi", "pods": 10}}),
        size=0,
        daemonset_pods=[everywhere, elsewhere],
    )
    assert group.allocatable == Resources.parse({"cpu": "1900m", "memory": "3968Mi", "pods": 9})


def test_virtual_node_carries_group_labels_and_taints() -> None:
    group = GroupTemplate.from_nodegroup(
        ng(template={"labels": {"pool": "web"}, "resources": {"cpu": 2, "memory": "4Gi"}}), size=0
    )
    node = group.virtual_node("web-abc12")
    assert node.labels[NODEGROUP_LABEL] == "web"
    assert node.labels[HOSTNAME_LABEL] == "web-abc12"
    assert node.group == "web"
    assert check(pod("p", node_selector={"pool": "web"}), node) is None


@pytest.mark.parametrize(
    ("budget", "size", "nodes"),
    [(3, 10, 3), ("10%", 10, 1), ("10%", 3, 1), ("10%", 0, 0), ("0%", 5, 0), ("50%", 5, 3)],
)
def test_budget_nodes(budget: int | str, size: int, nodes: int) -> None:
    assert budget_nodes(budget, size) == nodes


def test_bad_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid disruption budget"):
        budget_nodes("ten", 3)
