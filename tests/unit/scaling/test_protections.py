"""Node protections the Go autoscaler honoured, daily allowed hours and per-group disruption windows:
each keeps the node with its own reason, a bad value never lets a node go."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.scaling.builders import LONG_AGO, NOW, group, node, policy
from vpsie_autoscaler.api.labels import UNNEEDED_SINCE_ANNOTATION
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.scaling import protections, reasons
from vpsie_autoscaler.scaling.groups import GroupTemplate
from vpsie_autoscaler.scaling.protections import (
    AllowedHours,
    AllowedHoursError,
    allowed_hours_blocker,
    node_protection,
    parse_allowed_hours,
)
from vpsie_autoscaler.scaling.scaledown import (
    Candidate,
    ScaleDownSettings,
    node_scale_down_disabled,
    plan_scale_down,
)
from vpsie_autoscaler.scaling.scheduling_facts import NodeInfo
from vpsie_autoscaler.scaling.windows import DisruptionWindow, window_active

HOURS = "autoscaler.vpsie.com/scale-down-allowed-hours"
LONG = {UNNEEDED_SINCE_ANNOTATION: LONG_AGO.isoformat()}
FAST = policy(unneeded_time=timedelta(minutes=10), disruption_budget="100%", max_concurrent_drains=10)


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 30, hour, minute, tzinfo=UTC)


def empty_node(name: str = "n", **kw: Any) -> NodeInfo:
    annotations = {**LONG, **kw.pop("annotations", {})}
    return node(name, annotations=annotations, **kw)


def plan_at(now: datetime, *nodes: NodeInfo, **group_kw: Any) -> Any:
    group_kw.setdefault("scale_down", FAST)
    return plan_scale_down(list(nodes), [group("web", size=len(nodes), **group_kw)], [], now=now)


@pytest.mark.parametrize(
    ("labels", "annotations", "code"),
    [
        ({}, {"autoscaler.vpsie.com/protected": "true"}, reasons.NODE_PROTECTED),
        ({}, {"autoscaler.vpsie.com/protected": "True"}, reasons.NODE_PROTECTED),
        ({"autoscaler.vpsie.com/scale-down-disabled": "true"}, {}, reasons.SCALE_DOWN_DISABLED_LABEL),
        ({}, {"autoscaler.vpsie.com/scale-down": "disabled"}, reasons.SCALE_DOWN_DISABLED_ANNOTATION),
        ({}, {"autoscaler.vpsie.com/scale-down": "Disabled"}, reasons.SCALE_DOWN_DISABLED_ANNOTATION),
        ({}, {"autoscaler.vpsie.com/protected": "false"}, None),
        ({}, {"autoscaler.vpsie.com/scale-down": "enabled"}, None),
        ({"autoscaler.vpsie.com/scale-down-disabled": "false"}, {}, None),
        ({}, {}, None),
    ],
)
def test_protections(labels: dict[str, str], annotations: dict[str, str], code: str | None) -> None:
    reason = node_protection(labels, annotations)
    assert (reason.code if reason else None) == code
    p = plan_at(NOW, empty_node(labels=labels, annotations=annotations))
    if code is None:
        assert [r.node for r in p.removals] == ["n"]
    else:
        assert p.removals == ()
        assert p.blocked["n"].code == code


@pytest.mark.parametrize(
    ("text", "now", "open_"),
    [
        ("09:00-17:00", at(9), True),
        ("09:00-17:00", at(16, 59), True),
        ("09:00-17:00", at(17), False),  # the end is excluded
        ("09:00-17:00", at(8, 59), False),
        ("22:00-06:00", at(23, 30), True),  # wraps midnight
        ("22:00-06:00", at(2), True),
        ("22:00-06:00", at(6), False),
        ("22:00-06:00", at(12), False),
        ("9:30-10:00", at(9, 45), True),  # one-digit hour
        (" 00:00-23:59 ", at(12), True),
    ],
)
def test_allowed_hours(text: str, now: datetime, open_: bool) -> None:
    assert parse_allowed_hours(text).contains(now) is open_
    p = plan_at(now, empty_node(annotations={HOURS: text}))
    if open_:
        assert [r.node for r in p.removals] == ["n"]
    else:
        assert p.blocked["n"].code == reasons.OUTSIDE_ALLOWED_HOURS
        assert "n" in p.unneeded  # the timer runs; the node goes when the window opens


@pytest.mark.parametrize(
    "text", ["", "9-17", "09:00", "25:00-06:00", "09:60-10:00", "10:00-10:00", "nine to five", "09:00-17:00Z"]
)
def test_unreadable_allowed_hours_keep_the_node_at_any_time(text: str) -> None:
    with pytest.raises(AllowedHoursError):
        parse_allowed_hours(text)
    for hour in (0, 9, 12, 23):
        p = plan_at(at(hour), empty_node(annotations={HOURS: text}))
        assert p.removals == ()
        assert p.blocked["n"].code == reasons.INVALID_ALLOWED_HOURS
        assert HOURS in p.blocked["n"].message


def test_a_hostile_value_is_not_quoted_whole() -> None:
    reason = allowed_hours_blocker({HOURS: "x" * 10_000}, NOW)
    assert reason is not None
    assert reason.code == reasons.INVALID_ALLOWED_HOURS
    assert len(reason.message) < 400


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59), st.integers(0, 1439))
def test_allowed_hours_property(h1: int, m1: int, h2: int, m2: int, minute: int) -> None:
    """Inside exactly when the minute is in [start, end) walking forward from start, midnight wrapping;
    the window and its complement (end-start) cover the day exactly once."""
    start, end = h1 * 60 + m1, h2 * 60 + m2
    now = at(minute // 60, minute % 60)
    text = f"{h1:02d}:{m1:02d}-{h2:02d}:{m2:02d}"
    if start == end:
        with pytest.raises(AllowedHoursError):
            parse_allowed_hours(text)
        return
    window = parse_allowed_hours(text)
    assert window == AllowedHours(start, end)
    assert window.contains(now) is ((minute - start) % 1440 < (end - start) % 1440)
    complement = AllowedHours(end, start)
    assert window.contains(now) != complement.contains(now)
    blocker = allowed_hours_blocker({HOURS: text}, now)
    assert (blocker is None) is window.contains(now)


NIGHTLY = DisruptionWindow("0 22 * * *", timedelta(hours=8))  # 22:00-06:00 UTC


@pytest.mark.parametrize(
    ("windows", "now", "removed"),
    [
        ((), at(12), True),  # no windows: any time
        ((NIGHTLY,), at(23), True),
        ((NIGHTLY,), at(5, 59), True),
        ((NIGHTLY,), at(6), False),
        ((NIGHTLY,), at(12), False),
        ((NIGHTLY, DisruptionWindow("0 12 * * 1", timedelta(hours=1))), at(12, 30), True),  # Monday noon
    ],
)
def test_disruption_windows_of_the_group(
    windows: tuple[DisruptionWindow, ...], now: datetime, removed: bool
) -> None:
    sd = dataclasses.replace(FAST, windows=windows)
    p = plan_at(now, empty_node(), scale_down=sd)
    if removed:
        assert [r.node for r in p.removals] == ["n"]
    else:
        assert p.removals == ()
        assert p.blocked["n"].code == reasons.OUTSIDE_DISRUPTION_WINDOW
        assert "NodeGroup web" in p.blocked["n"].message
        assert "'0 22 * * *' for 8h" in p.blocked["n"].message
        assert "n" in p.unneeded


def test_protections_win_over_busy_and_window_reasons() -> None:
    """The user's protection is the reason shown, not a transient one."""
    sd = dataclasses.replace(FAST, windows=(NIGHTLY,))
    p = plan_at(at(12), empty_node(annotations={"autoscaler.vpsie.com/protected": "true"}), scale_down=sd)
    assert p.blocked["n"].code == reasons.NODE_PROTECTED


def test_a_schedule_that_is_not_cron_keeps_the_nodes_at_any_time() -> None:
    sd = dataclasses.replace(FAST, windows=(DisruptionWindow("99 * * * *", timedelta(hours=1)),))
    for hour in (0, 12, 23):
        p = plan_at(at(hour), empty_node(), scale_down=sd)
        assert p.removals == ()
        assert p.blocked["n"].code == reasons.OUTSIDE_DISRUPTION_WINDOW
        assert "invalid disruption window schedule of NodeGroup web" in p.blocked["n"].message


def test_the_nodegroup_windows_reach_the_planner() -> None:
    vm = {"resourceIdentifier": "p", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "x"}
    spec = {
        "minNodes": 0,
        "maxNodes": 3,
        "vm": vm,
        "template": {"resources": {"cpu": "4", "memory": "8Gi"}},
        "scaleDown": {"windows": [{"schedule": "0 22 * * *", "duration": "8h"}]},
    }
    ng = NodeGroup.model_validate({"metadata": {"name": "web"}, "spec": spec})
    g = GroupTemplate.from_nodegroup(ng, size=1)
    assert g.scale_down.windows == (NIGHTLY,)


@pytest.mark.parametrize(
    ("labels", "annotations", "code"),
    [
        ({}, {"autoscaler.vpsie.com/protected": "true"}, reasons.NODE_PROTECTED),
        ({"autoscaler.vpsie.com/scale-down-disabled": "true"}, {}, reasons.SCALE_DOWN_DISABLED_LABEL),
        ({}, {HOURS: "late"}, reasons.INVALID_ALLOWED_HOURS),
        ({}, {}, None),
    ],
)
def test_the_rule_consolidation_shares_honours_the_protections(
    labels: dict[str, str], annotations: dict[str, str], code: str | None
) -> None:
    """Consolidation asks ``node_scale_down_disabled`` too: a protected node is never consolidated."""
    candidate = Candidate(
        empty_node(labels=labels, annotations=annotations),
        group("web", size=1),
        0.0,
        (),
        NOW,
        ScaleDownSettings(),
        (),
    )
    reason = node_scale_down_disabled(candidate)
    assert (reason.code if reason else None) == code


def test_the_windows_are_evaluated_once_per_group_and_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A week-long window is a week of minutes to scan: fifty nodes must not scan it fifty times."""
    calls: list[int] = []
    real = window_active

    def counting(windows: Any, now: datetime) -> bool:
        calls.append(1)
        return real(windows, now)

    monkeypatch.setattr(protections, "window_active", counting)
    week = tuple(DisruptionWindow("0 0 1 1 *", timedelta(days=7)) for _ in range(16))
    sd = dataclasses.replace(FAST, windows=week)
    nodes = [empty_node(f"n{i}") for i in range(50)]
    p = plan_at(at(7, 13), *nodes, scale_down=sd)
    assert len(p.blocked) == 50
    assert all(r.code == reasons.OUTSIDE_DISRUPTION_WINDOW for r in p.blocked.values())
    assert len(calls) == 1
