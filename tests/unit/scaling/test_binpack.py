"""Packing equivalence groups onto new nodes: right node counts, caps honoured, conflicts respected,
and never more nodes than first fit decreasing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vpsie_autoscaler.scaling.binpack import COMPLEMENTARY_WORK_LIMIT, PackItem, first_fit_decreasing, pack
from vpsie_autoscaler.scaling.resources import EMPTY as EMPTY_REQUESTS
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


def test_cpu_heavy_and_memory_heavy_pods_share_nodes() -> None:
    """FFD over whole classes packs 8 cpu-heavy pods onto 2 nodes and 8 memory-heavy pods onto 2
    more; filled to complement each other, 3 nodes hold them all (the lower bound)."""
    big = Resources.parse({"cpu": "8", "memory": "16Gi", "pods": 110})
    items = [PackItem(0, req("2", "128Mi"), 8), PackItem(1, req("100m", "4Gi"), 8)]
    assert first_fit_decreasing(items, big, {}, 100).nodes == 4
    result = pack(items, big, {}, 100)
    assert result.nodes == 3
    assert result.placed == {0: 8, 1: 8}
    assert all(set(r.contents) == {0, 1} for r in result.runs)


def test_large_bursts_are_packed_by_ffd_alone() -> None:
    items = [PackItem(i, req(f"{100 + i}m", f"{64 + i}Mi"), 200) for i in range(40)]  # 8 000 pods
    assert COMPLEMENTARY_WORK_LIMIT < 8_000 * 40
    assert pack(items, NODE, {}, 10_000) == first_fit_decreasing(items, NODE, {}, 10_000)


CPU_M = st.sampled_from([100, 250, 500, 1000, 2000, 3000])
MEM_MI = st.sampled_from([128, 256, 512, 1024, 4096, 6144])


@st.composite
def packings(draw: st.DrawFn) -> tuple[list[PackItem], dict[int, frozenset[int]], int]:
    n = draw(st.integers(1, 8))
    items = [
        PackItem(i, req(f"{draw(CPU_M)}m", f"{draw(MEM_MI)}Mi"), draw(st.integers(1, 12))) for i in range(n)
    ]
    conflicts: dict[int, set[int]] = {}
    for a, b in draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3)):
        conflicts.setdefault(a, set()).add(b)
        conflicts.setdefault(b, set()).add(a)
    return items, {k: frozenset(v) for k, v in conflicts.items()}, draw(st.integers(1, 40))


@settings(max_examples=300, deadline=None)
@given(packings())
def test_a_packing_is_valid_and_never_worse_than_ffd(
    case: tuple[list[PackItem], dict[int, frozenset[int]], int],
) -> None:
    items, conflicts, cap = case
    result = pack(items, NODE, conflicts, cap)
    ffd = first_fit_decreasing(items, NODE, conflicts, cap)
    by_index = {i.index: i for i in items}
    assert result.nodes == sum(r.count for r in result.runs) <= cap
    for run in result.runs:
        used = EMPTY_REQUESTS
        for cls, k in run.contents.items():
            used = used + by_index[cls].requests.scaled(k)
            assert k == 1 or cls not in conflicts.get(cls, frozenset())
            assert conflicts.get(cls, frozenset()).isdisjoint(set(run.contents) - {cls})
        assert all(used[name] <= NODE[name] for name in used)
    for item in items:
        assert result.placed[item.index] == sum(r.count * r.contents.get(item.index, 0) for r in result.runs)
        assert result.placed[item.index] <= item.count
    placed, ffd_placed = sum(result.placed.values()), sum(ffd.placed.values())
    assert placed > ffd_placed or (placed == ffd_placed and result.nodes <= ffd.nodes)
