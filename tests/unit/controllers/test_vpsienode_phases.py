"""The VPSieNode phase table: every phase has a handler, the router picks the right row, and the only
phase changes a record can make are the ones the table lists (docs/lifecycle.md, "VPSieNode phases")."""

from __future__ import annotations

import ast
import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import PHASES as ALL_PHASES
from vpsie_autoscaler.api.vpsienode import LaunchRecord, Phase, VPSieNode, VPSieNodeStatus
from vpsie_autoscaler.controllers.new_vpsienode import new_vpsienode
from vpsie_autoscaler.controllers.vpsienode import (
    context,
    draining,
    failure,
    launch,
    reconciler,
    registration,
    termination,
)
from vpsie_autoscaler.controllers.vpsienode.context import IllegalTransition, enter_phase
from vpsie_autoscaler.controllers.vpsienode.phases import PHASES, TRANSITIONS, route

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PACKAGE = Path(inspect.getfile(reconciler)).parent


def record(
    phase: Phase | None, *, deleting: bool = False, drain: bool = False, launched: bool = False
) -> VPSieNode:
    group = NodeGroup.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {
                "minNodes": 0,
                "maxNodes": 5,
                "vm": {"resourceIdentifier": "p", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "x"},
            },
        }
    )
    vn = new_vpsienode(group)
    vn.status.phase = phase
    if deleting:
        vn.metadata.deletion_timestamp = T0
    if drain:
        vn.metadata.annotations[DRAIN_REQUESTED_ANNOTATION] = "2026-11-27T09:00:00Z"
    if launched:
        vn.status.launch = LaunchRecord(requested_hostname=vn.spec.hostname, sent_at=T0)
    return vn


# --- the table --------------------------------------------------------------------------------------


def test_every_phase_has_exactly_one_row_with_a_handler() -> None:
    assert set(PHASES) == set(ALL_PHASES)
    for phase, rule in PHASES.items():
        assert inspect.iscoroutinefunction(rule.handler), phase
        assert rule.why, phase
        assert rule.to <= set(ALL_PHASES), phase
        assert phase not in rule.to, f"{phase}: staying is implicit, not a transition"


@pytest.mark.parametrize(
    ("phase", "handler"),
    [
        ("Pending", launch.launch),
        ("Provisioning", registration.provision),
        ("Joining", registration.provision),
        ("Ready", registration.ready),
        ("Draining", draining.drain),
        ("Failed", failure.failed),
        ("Deleting", termination.finalize),
    ],
)
def test_each_phase_is_driven_by_the_module_of_its_job(phase: Phase, handler: object) -> None:
    assert PHASES[phase].handler is handler


def test_the_dispatcher_enforces_the_table() -> None:
    assert reconciler.VPSieNodeReconciler.transitions is TRANSITIONS
    assert dict(TRANSITIONS) == {phase: rule.to for phase, rule in PHASES.items()}
    assert context.Lifecycle.transitions == {}, "only the dispatcher moves phases"


def reachable(start: Phase) -> set[Phase]:
    seen: set[Phase] = set()
    todo = [start]
    while todo:
        for nxt in TRANSITIONS[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_table_is_the_documented_lifecycle() -> None:
    # Deleting is terminal; every other phase can be deleted (the finalizer always runs).
    assert TRANSITIONS["Deleting"] == frozenset()
    assert all("Deleting" in TRANSITIONS[p] for p in ALL_PHASES if p != "Deleting")
    # A Failed record never comes back: its only way out is deletion (after the back-off TTL).
    assert TRANSITIONS["Failed"] == frozenset({"Deleting"})
    # A drain either ends with the record deleted or gives up — back to Ready, or to Provisioning when
    # its instance is not bound yet (a Node that joined before the record saw it); it never fails one.
    assert TRANSITIONS["Draining"] == frozenset({"Ready", "Provisioning", "Deleting"})
    # The happy path exists; nothing returns to Pending, and to Provisioning only from a given-up drain.
    assert {"Provisioning", "Joining", "Ready"} <= reachable("Pending")
    assert all("Pending" not in TRANSITIONS[p] for p in ALL_PHASES)
    assert {p for p in ALL_PHASES if "Provisioning" in TRANSITIONS[p]} == {"Pending", "Draining"}
    # Ready is reached only through Joining (or by an aborted drain).
    assert {p for p in ALL_PHASES if "Ready" in TRANSITIONS[p]} == {"Joining", "Draining"}


# --- the router -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vn", "row"),
    [
        (record(None), "Pending"),
        (record("Pending"), "Pending"),
        (record("Pending", launched=True), "Provisioning"),
        (record("Provisioning", launched=True), "Provisioning"),
        (record("Provisioning"), "Provisioning"),  # a record from before launch records
        (record("Joining", launched=True), "Joining"),
        (record("Ready", launched=True), "Ready"),
        (record("Ready", drain=True), "Draining"),
        (record("Joining", drain=True), "Draining"),
        (record(None, drain=True), "Draining"),
        (record("Draining"), "Draining"),
        (record("Failed"), "Failed"),
        (record("Failed", drain=True), "Failed"),  # nothing to drain: its own handler deletes the instance
        (record("Ready", deleting=True), "Deleting"),
        (record("Failed", deleting=True, drain=True), "Deleting"),
        (record(None, deleting=True), "Deleting"),
        (record("Deleting", deleting=True), "Deleting"),
        (record("Deleting"), "Provisioning"),  # a hand-written status: read as in flight
    ],
)
def test_route_picks_the_row(vn: VPSieNode, row: Phase) -> None:
    assert route(vn) == row


@given(
    phase=st.sampled_from([None, *ALL_PHASES]),
    deleting=st.booleans(),
    drain=st.booleans(),
    launched=st.booleans(),
)
def test_route_overrides_the_phase_only_for_deletion_drain_and_a_written_launch(
    phase: Phase | None, deleting: bool, drain: bool, launched: bool
) -> None:
    row = route(record(phase, deleting=deleting, drain=drain, launched=launched))
    assert row in PHASES
    assert (row == "Deleting") == deleting
    if not deleting:
        if phase == "Failed":
            assert row == "Failed"
        elif drain:
            assert row == "Draining"
        elif row != (phase or "Pending"):
            assert row == "Provisioning"
            assert (phase in (None, "Pending") and launched) or phase == "Deleting"


# --- the guard --------------------------------------------------------------------------------------

PAIRS = [(a, b) for a in ALL_PHASES for b in ALL_PHASES]


@pytest.mark.parametrize(("current", "wanted"), PAIRS)
def test_enter_allows_exactly_the_moves_of_the_table(current: Phase, wanted: Phase) -> None:
    status = VPSieNodeStatus(phase=current, phase_timestamps={current: T0})
    now = T0 + timedelta(seconds=5)
    if wanted == current or wanted in TRANSITIONS[current]:
        enter_phase(status, wanted, now, TRANSITIONS)
        assert status.phase == wanted
        assert status.phase_timestamps[wanted] == (T0 if wanted == current else now)
    else:
        with pytest.raises(IllegalTransition):
            enter_phase(status, wanted, now, TRANSITIONS)
        assert status.phase == current, "a refused move changes nothing"
        assert set(status.phase_timestamps) == {current}


@pytest.mark.parametrize("wanted", ALL_PHASES)
def test_a_record_without_a_phase_moves_as_pending(wanted: Phase) -> None:
    status = VPSieNodeStatus()
    allowed = wanted == "Pending" or wanted in TRANSITIONS["Pending"]
    if allowed:
        enter_phase(status, wanted, T0, TRANSITIONS)
        assert status.phase == wanted
    else:
        with pytest.raises(IllegalTransition):
            enter_phase(status, wanted, T0, TRANSITIONS)


def phase_writes(tree: ast.AST) -> list[int]:
    """Lines that set ``.phase`` or stamp ``.phase_timestamps[...]`` directly."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "phase":
                found.append(node.lineno)
            if (
                isinstance(target, ast.Subscript)
                and isinstance(target.value, ast.Attribute)
                and target.value.attr == "phase_timestamps"
            ):
                found.append(node.lineno)
    return found


def test_every_phase_change_goes_through_the_guard() -> None:
    """So the table's moves are the only ones made: no module of the controller sets a phase itself."""
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        writes = phase_writes(tree)
        if path.name == "context.py":
            guard = next(
                n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "enter_phase"
            )
            assert writes, "enter_phase writes the phase"
            assert all(guard.lineno <= line <= (guard.end_lineno or 0) for line in writes), writes
        else:
            assert writes == [], f"{path.name} sets a phase outside the guard at lines {writes}"
