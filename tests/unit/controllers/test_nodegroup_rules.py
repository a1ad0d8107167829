"""The NodeGroup controller's rules: which step a group's counts lead to, and where it settles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.controllers.test_lifecycle_rules import record
from vpsie_autoscaler.controllers.nodegroup import rules
from vpsie_autoscaler.controllers.nodegroup.status import Backoff, Counts, count

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
NO_BACKOFF = Backoff()
BACKING_OFF = Backoff(until=NOW + timedelta(minutes=5), failures=2, error_class="transient")


def view(
    current: int, *, min_nodes: int = 1, max_nodes: int = 3, backoff: Backoff = NO_BACKOFF
) -> rules.GroupView:
    members = [record("Ready", name=f"n{i}", node=f"n{i}") for i in range(current)]
    return rules.GroupView(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        counts=count(members, lambda _n: True),
        backoff=backoff,
        now=NOW,
        members=members,
        node_ready=lambda _n: True,
    )


@pytest.mark.parametrize(
    ("current", "backoff", "reason", "create", "drain", "text"),
    [
        (0, Backoff(), rules.STEP_CREATE_MIN, 1, 0, "created 1 node(s) to reach minNodes=1"),
        (
            0,
            BACKING_OFF,
            rules.STEP_WAIT_BACKOFF,
            1,
            0,
            "1 node(s) below minNodes=1; waiting for the back-off to end at 2026-11-27T09:05:00Z",
        ),
        (2, Backoff(), None, 0, 0, None),
        (2, BACKING_OFF, None, 0, 0, None),  # back-off only stops scale-up
        (5, Backoff(), rules.STEP_DRAIN_ABOVE_MAX, 0, 2, "requested removal of 2 node(s) above maxNodes=3"),
        (5, BACKING_OFF, rules.STEP_DRAIN_ABOVE_MAX, 0, 2, "requested removal of 2 node(s) above maxNodes=3"),
    ],
)
def test_the_first_matching_rule_decides(  # noqa: PLR0917 - one table row
    current: int, backoff: Backoff, reason: str | None, create: int, drain: int, text: str | None
) -> None:
    step = rules.next_step(view(current, backoff=backoff))
    if reason is None:
        assert step is None
        return
    assert step is not None
    assert (step.reason, step.create, len(step.drain)) == (reason, create, drain)
    assert text is not None
    assert step.decision(dry_run=False).startswith(text)
    if reason != rules.STEP_WAIT_BACKOFF:
        assert step.decision(dry_run=True).startswith("dry-run: would ")


def test_a_partial_creation_says_how_many_were_created() -> None:
    step = rules.next_step(view(0, min_nodes=3))
    assert step is not None
    assert step.decision(dry_run=False, done=2) == "created 2 node(s) to reach minNodes=3"
    assert rules.settle(Counts(current=0), step, 2) == Counts(current=2, provisioning=2)


@given(
    current=st.integers(0, 12),
    min_nodes=st.integers(0, 6),
    extra=st.integers(0, 6),
    backing_off=st.booleans(),
)
def test_a_step_done_in_full_lands_within_the_limits(
    current: int, min_nodes: int, extra: int, backing_off: bool
) -> None:
    """Invariant: after its writes, a group is within ``[minNodes, maxNodes]`` (unless it waits for
    its back-off below minNodes), and desiredNodes always is."""
    max_nodes = min_nodes + extra
    v = view(
        current, min_nodes=min_nodes, max_nodes=max_nodes, backoff=BACKING_OFF if backing_off else NO_BACKOFF
    )
    step = rules.next_step(v)
    done = 0 if step is None else (step.create if step.reason == rules.STEP_CREATE_MIN else len(step.drain))
    after = rules.settle(v.counts, step, done)
    if step is not None and step.reason == rules.STEP_WAIT_BACKOFF:
        assert backing_off
        assert after.current == current < min_nodes
    else:
        assert min_nodes <= after.current <= max_nodes
    assert min_nodes <= rules.desired_nodes(after, min_nodes, max_nodes) <= max_nodes
    if step is None:
        assert min_nodes <= current <= max_nodes
