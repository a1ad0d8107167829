"""One rule for "leaving" and "in flight", whoever counts (cluster state, NodeGroup status)."""

from __future__ import annotations

from typing import Any

import pytest

from vpsie_autoscaler.api.labels import DRAIN_REQUESTED_ANNOTATION
from vpsie_autoscaler.api.vpsienode import PHASES, VPSieNode
from vpsie_autoscaler.controllers.cluster_state import VPSieNodeView
from vpsie_autoscaler.controllers.nodegroup.status import is_leaving as status_leaving
from vpsie_autoscaler.scaling import membership

VM = {"resourceIdentifier": "p", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "x"}


def raw(phase: str | None, *, deleting: bool, drain: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web-abc12", "annotations": {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    if drain:
        meta["annotations"][DRAIN_REQUESTED_ANNOTATION] = "2026-12-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeGroup": "web", "hostname": "web-abc12", "vm": VM},
        "status": {"phase": phase} if phase else {},
    }


@pytest.mark.parametrize("phase", [None, *PHASES])
@pytest.mark.parametrize("deleting", [False, True])
@pytest.mark.parametrize("drain", [False, True])
def test_every_counter_agrees_on_leaving_and_in_flight(
    phase: str | None, deleting: bool, drain: bool
) -> None:
    obj = raw(phase, deleting=deleting, drain=drain)
    model, view = VPSieNode.from_k8s(obj), VPSieNodeView.from_k8s(obj)
    leaving = membership.leaving(model)
    assert leaving == view.leaving == status_leaving(model)
    assert membership.in_flight(model) == view.in_flight_phase
    assert not (leaving and membership.in_flight(model))


def test_a_drain_request_stops_counting_at_once_and_a_new_record_is_in_flight() -> None:
    assert membership.is_leaving("Ready", deleting=False, drain_requested=True)
    assert not membership.is_in_flight("Joining", deleting=False, drain_requested=True)
    assert membership.is_in_flight(None, deleting=False, drain_requested=False)
    assert not membership.is_leaving("Ready", deleting=False, drain_requested=False)
