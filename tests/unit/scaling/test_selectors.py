"""Selector, node-affinity and toleration semantics match upstream Kubernetes."""

from __future__ import annotations

from typing import Any

import pytest

from vpsie_autoscaler.scaling.selectors import (
    LabelSelector,
    NodeSelectorTerm,
    Requirement,
    SelectorError,
    Taint,
    Toleration,
    node_affinity_matches,
    untolerated_taint,
)

LABELS = {"zone": "a", "size": "4", "gpu": "true"}


@pytest.mark.parametrize(
    ("expr", "matches"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
        ({"key": "zone", "operator": "In", "values": ["b"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["b"]}, True),
        ({"key": "missing", "operator": "NotIn", "values": ["b"]}, True),
        ({"key": "zone", "operator": "Exists"}, True),
        ({"key": "missing", "operator": "Exists"}, False),
        ({"key": "missing", "operator": "DoesNotExist"}, True),
        ({"key": "zone", "operator": "DoesNotExist"}, False),
        ({"key": "size", "operator": "Gt", "values": ["2"]}, True),
        ({"key": "size", "operator": "Gt", "values": ["4"]}, False),
        ({"key": "size", "operator": "Lt", "values": ["8"]}, True),
        ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),  # not an integer: no match
        ({"key": "missing", "operator": "Lt", "values": ["1"]}, False),
    ],
)
def test_requirement_operators(expr: dict[str, Any], matches: bool) -> None:
    assert Requirement.from_k8s(expr).matches(LABELS) is matches


def test_unknown_operator_is_an_error() -> None:
    with pytest.raises(SelectorError, match="unknown selector operator"):
        Requirement.from_k8s({"key": "a", "operator": "Like"})


def test_label_selector_ands_labels_and_expressions() -> None:
    sel = LabelSelector.from_k8s(
        {"matchLabels": {"zone": "a"}, "matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    )
    assert sel.matches(LABELS)
    assert not sel.matches({"zone": "a"})
    assert LabelSelector.from_k8s({}).matches({})  # empty selects everything
    assert sel.keys() == {"zone", "gpu"}


def test_node_affinity_terms_are_ored_and_empty_terms_match_nothing() -> None:
    t1 = NodeSelectorTerm.from_k8s({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})
    t2 = NodeSelectorTerm.from_k8s({"matchExpressions": [{"key": "gpu", "operator": "Exists"}]})
    assert node_affinity_matches([t1, t2], LABELS, "n1")
    assert not node_affinity_matches([t1], LABELS, "n1")
    assert node_affinity_matches([], LABELS, "n1")
    assert not node_affinity_matches([NodeSelectorTerm()], LABELS, "n1")
    by_name = NodeSelectorTerm.from_k8s(
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    )
    assert by_name.matches({}, "n1")
    assert not by_name.matches({}, "n2")
    assert not by_name.matches({}, "")  # a node that does not exist yet has no name to match


@pytest.mark.parametrize(
    ("toleration", "taint", "tolerated"),
    [
        (
            {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
            Taint("k", "v", "NoSchedule"),
            True,
        ),
        ({"key": "k", "value": "v"}, Taint("k", "v", "NoExecute"), True),  # empty effect: all effects
        ({"key": "k", "value": "other"}, Taint("k", "v", "NoSchedule"), False),
        ({"key": "k", "operator": "Exists"}, Taint("k", "v", "NoSchedule"), True),
        ({"operator": "Exists"}, Taint("any", "v", "NoExecute"), True),  # tolerates everything
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, Taint("k", "", "NoSchedule"), False),
        ({"key": "other", "operator": "Exists"}, Taint("k", "", "NoSchedule"), False),
    ],
)
def test_toleration_semantics(toleration: dict[str, str], taint: Taint, tolerated: bool) -> None:
    assert Toleration.from_k8s(toleration).tolerates(taint) is tolerated


def test_prefer_no_schedule_never_blocks() -> None:
    soft = Taint("k", "", "PreferNoSchedule")
    hard = Taint("h", "", "NoSchedule")
    assert untolerated_taint([soft], []) is None
    assert untolerated_taint([soft, hard], []) == hard
    assert str(Taint("k", "v", "NoSchedule")) == "k=v:NoSchedule"
