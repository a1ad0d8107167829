"""The side-by-side benchmark's figures and table: what a wrong parse or sum would silently misreport."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.compare_report import (
    Plan,
    Row,
    burst_figures,
    kwok_instance_types,
    parse_cpu_seconds,
    parse_rss_bytes,
    percentile,
    ratio,
    render_table,
    usage,
)

STANDARD = Plan("Standard", 2, 4096, 80, 20.0)
HIGHMEM = Plan("HighMem", 4, 32768, 160, 90.0)

# /proc/<pid>/stat of a process whose name holds spaces and a parenthesis: utime 250, stime 50 ticks.
STAT = "4242 (vpsie (auto) x) S 1 4242 4242 0 -1 4194560 9 0 0 0 250 50 0 0 20 0 9 0 100 1000 200"


def test_kwok_instance_types_carry_the_plans_shape_and_hourly_price() -> None:
    [standard] = kwok_instance_types([STANDARD])
    assert standard["name"] == "Standard"
    assert standard["resources"] == {
        "cpu": "2",
        "memory": "4096Mi",
        "pods": "110",
        "ephemeral-storage": "80Gi",
    }
    [offering] = standard["offerings"]
    assert offering["Price"] == pytest.approx(20.0 / 730)
    assert offering["Available"] is True
    keys = {r["key"]: r["values"] for r in offering["Requirements"]}
    assert keys == {
        "karpenter.sh/capacity-type": ["on-demand"],
        "topology.kubernetes.io/zone": ["test-zone-a"],
    }


def test_rss_is_read_from_vmrss_in_bytes() -> None:
    status = "Name:\tpython\nVmPeak:\t  999999 kB\nVmRSS:\t   81920 kB\nThreads:\t3\n"
    assert parse_rss_bytes(status) == 81920 * 1024


def test_a_process_without_vmrss_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="VmRSS"):
        parse_rss_bytes("Name:\tzombie\nState:\tZ (zombie)\n")


def test_cpu_time_is_utime_plus_stime_even_with_parentheses_in_the_name() -> None:
    assert parse_cpu_seconds(STAT, 100) == pytest.approx(3.0)


def test_usage_is_peak_rss_and_mean_cores_over_the_window() -> None:
    mib = 2**20
    u = usage([(10.0, 100 * mib, 1.0), (12.0, 300 * mib, 1.5), (14.0, 200 * mib, 3.0)])
    assert u.peak_rss_mib == 300
    assert u.cpu_cores == pytest.approx(0.5)


def test_burst_figures_time_from_the_start_and_price_each_node_by_type() -> None:
    fig = burst_figures(
        start=100.0,
        pods=3,
        decisions={"b3-a": 101.0, "b3-b": 101.5, "b3-c": 101.2},
        nodes={"b3-a": 102.0, "b3-b": 103.0, "b3-c": 102.5},
        node_types={"b3-a": "Standard", "b3-b": "HighMem", "b3-c": "Standard"},
        running_at=104.0,
        prices={"Standard": 0.1, "HighMem": 0.3},
    )
    assert (fig.decision_first_s, fig.decision_last_s, fig.nodes_last_s, fig.running_s) == (
        1.0,
        1.5,
        3.0,
        4.0,
    )
    assert fig.nodes == 3
    assert fig.hourly_cost == pytest.approx(0.5)
    assert fig.types == {"HighMem": 1, "Standard": 2}


def test_a_node_of_an_unpriced_type_fails_instead_of_costing_nothing() -> None:
    with pytest.raises(KeyError):
        burst_figures(
            start=0.0,
            pods=1,
            decisions={"a": 1.0},
            nodes={"a": 2.0},
            node_types={"a": "Mystery"},
            running_at=3.0,
            prices={"Standard": 0.1},
        )


def test_ratio_is_ours_over_theirs() -> None:
    assert ratio(1.0, 4.0) == "0.25"
    assert ratio(3.0, 2.0) == "1.50"
    assert ratio(None, 2.0) == "—"
    assert ratio(0.0, 0.0) == "1.00"
    assert ratio(1.0, 0.0) == "∞"


def test_table_marks_where_ours_loses() -> None:
    table = render_table(
        [Row("decision", 0.5, 1.0, "s"), Row("RSS idle", 300.0, 100.0, "MiB"), Row("cost", 1.0, None, "$/h")]
    )
    lines = table.splitlines()
    assert lines[2] == "| decision | 0.50 s | 1.00 s | 0.50 | yes |"
    assert lines[3] == "| RSS idle | 300 MiB | 100 MiB | 3.00 | **no** |"
    assert lines[4] == "| cost | $1.000/h | — | — | — |"


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200))
def test_p99_is_a_sample_at_or_below_the_maximum(values: list[float]) -> None:
    p99 = percentile(values, 99)
    assert p99 in values
    assert p99 <= max(values)
    assert sum(v <= p99 for v in values) >= 0.99 * len(values)
