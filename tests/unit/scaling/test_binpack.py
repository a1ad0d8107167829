"""FFD over equivalence groups: right node counts, caps honoured, conflicts respected."""

from __future__ import annotations

from vpsie_autoscaler.scaling.binpack import PackItem, pack
from vpsie_autoscaler.scaling.resources import Resources

NODE = Resources.parse({"cpu": "4", "memory": "8Gi", "pods": 110})


def req(cpu: str, mem: str = "1Gi") -> Resources:
    return Resources.parse({"cpu": cpu, "memory": mem, "pods": 1})


def test_identical_pods_fill_nodes() -> None:
    result = pack([PackItem(0, req("1"), 10)], NODE, {}, 100)
    assert result.nodes == 3  # 4 + 4 + 2
    assert result.placed == {0: 10}
    assert sorted((r.count, r.contents[0]) for r in result.runs) == [(1, 2), (2, 4)]


def test_small_pods_fill_the_gaps_of_big_ones() -> None:
    items = [PackItem(0, req("3", "1Gi"), 2), PackItem(1, req("1", "1Gi"), 2)]
    result = pack(items, NODE, {}, 100)
    assert result.nodes == 2
    assert all(r.contents == {0: 1, 1: 1} for r in result.runs)


def test_node_cap_leaves_pods_unplaced() -> None:
    result = pack([PackItem(0, req("1"), 10)], NODE, {}, 2)
    assert result.nodes == 2
    assert result.placed == {0: 8}


def test_self_conflict_means_one_per_node() -> None:
    result = pack([PackItem(0, req("100m"), 5)], NODE, {0: frozenset({0})}, 100)
    assert result.nodes == 5


def test_conflicting_classes_never_share() -> None:
    items = [PackItem(0, req("1"), 1), PackItem(1, req("1"), 1)]
    result = pack(items, NODE, {0: frozenset({1}), 1: frozenset({0})}, 100)
    assert result.nodes == 2


def test_pod_count_caps_a_node() -> None:
    small = Resources.parse({"cpu": "4", "memory": "8Gi", "pods": 3})
    result = pack([PackItem(0, req("10m", "1Mi"), 7)], small, {}, 100)
    assert result.nodes == 3


def test_too_big_items_are_not_placed() -> None:
    result = pack([PackItem(0, req("5"), 1)], NODE, {}, 100)
    assert result.nodes == 0
    assert result.placed == {0: 0}
