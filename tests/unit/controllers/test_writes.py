"""The dry-run seam: in dry-run no write reaches the API server; each is reported as "would …"."""

from __future__ import annotations

from typing import cast

from tests.unit.controllers.fakes import World
from vpsie_autoscaler.api.labels import NODEGROUP_FINALIZER
from vpsie_autoscaler.controllers.writes import REASON_DRY_RUN, Writes
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import NODEGROUPS, NODES, VPSIENODES
from vpsie_autoscaler.runtime.events import EventRecorder


def writes(w: World, *, dry_run: bool) -> Writes:
    return Writes(cast(KubeClient, w.kube), dry_run=dry_run, recorder=cast(EventRecorder, w.recorder))


async def test_dry_run_writes_nothing_and_reports_each_intended_write() -> None:
    w = World()
    group = w.group("web")
    w.node("web-a", "web")
    dry = writes(w, dry_run=True)
    assert await dry.create(VPSIENODES, {"metadata": {"name": "web-x"}}) is None
    assert await dry.merge_patch(NODES, "web-a", {"metadata": {"annotations": {"a": "b"}}}) is None
    assert await dry.delete(VPSIENODES, "web-x") is False
    assert await dry.add_finalizer(NODEGROUPS, group, NODEGROUP_FINALIZER) is False
    assert await dry.perform("delete VPSie VM web-a", _never) is None
    assert w.kube.calls == []
    assert dry.would("adopt web-b", obj=group) is True
    (event,) = w.recorder.reasons(REASON_DRY_RUN, "web")
    assert event.note == "dry-run: would adopt web-b"
    assert dry.note("scale-up web: 0 -> 1") == "dry-run: scale-up web: 0 -> 1"


async def test_for_real_the_writes_are_made_and_notes_are_unchanged() -> None:
    w = World()
    w.node("web-a", "web")
    real = writes(w, dry_run=False)
    assert await real.merge_patch(NODES, "web-a", {"metadata": {"annotations": {"a": "b"}}}) is not None
    assert [c.verb for c in w.kube.calls] == ["patch"]
    assert real.would("anything") is False
    assert real.note("text") == "text"


async def _never() -> bool:
    raise AssertionError("dry-run made a write")
