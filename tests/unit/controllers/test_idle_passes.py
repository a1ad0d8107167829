"""An idle controller re-reads unchanged objects every ``scan_interval``: what it already parsed is
reused for as long as the object's resourceVersion stays the same, and nothing else changes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.controllers.fakes import World
from tests.unit.controllers.test_invalid_objects import Lifecycle, nodegroup
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.types import Condition
from vpsie_autoscaler.controllers.cluster_state import InvalidObject, NodeGroupParser, parse_nodegroup
from vpsie_autoscaler.kube import Resource, errors
from vpsie_autoscaler.runtime.controller import Request

Obj = dict[str, Any]


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the NodeGroups validated (``NodeGroup.from_k8s``), in order."""
    seen: list[str] = []
    original = NodeGroup.from_k8s

    def counting(obj: dict[str, Any]) -> NodeGroup:
        seen.append(str((obj.get("metadata") or {}).get("name")))
        return original(obj)

    monkeypatch.setattr(NodeGroup, "from_k8s", counting)
    return seen


def stored(w: World, name: str, rv: str, **spec: Any) -> Obj:
    obj = w.group(name, **spec)
    obj["metadata"]["resourceVersion"] = rv
    return obj


def new_version(w: World, obj: Obj, rv: str, **spec: Any) -> Obj:
    """What the informer stores after an update: a new object with a new resourceVersion."""
    updated = copy.deepcopy(obj)
    updated["metadata"]["resourceVersion"] = rv
    updated["spec"].update(spec)
    return w.add("nodegroups", updated)


def test_snapshots_of_unchanged_nodegroups_validate_them_once(parses: list[str]) -> None:
    w = World()
    web = stored(w, "web", "1", max_nodes=10)
    stored(w, "db", "1")
    builder = w.builder()
    first = builder.build(w.clock.now())
    assert sorted(parses) == ["db", "web"]
    parses.clear()
    for _ in range(3):  # the passes of an idle minute
        again = builder.build(w.clock.now())
        assert parses == []
        assert [g.name for g in again.groups] == [g.name for g in first.groups]
        assert again.nodegroups == first.nodegroups

    new_version(w, web, "2", maxNodes=3)  # the user edits one group: that one is read again
    snap = builder.build(w.clock.now())
    assert parses == ["web"]
    assert snap.nodegroups["web"].spec.max_nodes == 3
    group = snap.group("web")
    assert group is not None
    assert group.max_nodes == 3


def test_an_invalid_nodegroup_stays_reported_until_a_new_version_fixes_it(parses: list[str]) -> None:
    w = World()
    bad = stored(w, "bad", "7", min_nodes=5, max_nodes=1)
    builder = w.builder()
    for _ in range(2):
        snap = builder.build(w.clock.now())
        assert "minNodes must be less than or equal to maxNodes" in snap.group_errors["bad"]
    assert parses == ["bad"]
    new_version(w, bad, "8", minNodes=0)
    snap = builder.build(w.clock.now())
    assert "bad" not in snap.group_errors
    assert [g.name for g in snap.groups] == ["bad"]


def test_objects_without_a_resource_version_are_always_parsed(parses: list[str]) -> None:
    w = World()
    obj = w.group("web")  # never read from an API server: nothing tells its versions apart
    builder = w.builder()
    builder.build(w.clock.now())
    obj["spec"]["maxNodes"] = 4
    snap = builder.build(w.clock.now())
    assert parses == ["web", "web"]
    assert snap.nodegroups["web"].spec.max_nodes == 4


def test_a_deleted_and_recreated_nodegroup_is_parsed_anew(parses: list[str]) -> None:
    w = World()
    stored(w, "web", "5", max_nodes=10)
    builder = w.builder()
    builder.build(w.clock.now())
    w.stores["nodegroups"].objects.clear()
    assert builder.build(w.clock.now()).nodegroups == {}
    again = stored(w, "web", "5", max_nodes=2)  # same name and (unlikely) version, new uid
    again["metadata"]["uid"] = "ng-web-2"
    snap = builder.build(w.clock.now())
    assert parses == ["web", "web"]
    assert snap.nodegroups["web"].spec.max_nodes == 2


async def test_the_nodegroup_resync_parses_an_unchanged_group_once(parses: list[str]) -> None:
    lc = Lifecycle()
    lc.put(nodegroup("web", finalizer=True))
    reconciler = lc.nodegroups()
    await reconciler.reconcile(Request("web"))  # writes the first status: a new version
    await reconciler.reconcile(Request("web"))
    writes = len(lc.api.calls)
    parses.clear()
    for _ in range(3):  # the resync every scan_interval, nothing changed
        await reconciler.reconcile(Request("web"))
    assert (parses, len(lc.api.calls)) == ([], writes)
    stored_obj = lc.get("nodegroups", "web")
    assert stored_obj is not None
    updated = copy.deepcopy(stored_obj)
    updated["metadata"]["resourceVersion"] = "99"
    updated["spec"]["minNodes"] = 1
    lc.put(updated)
    await reconciler.reconcile(Request("web"))
    assert parses == ["web"]
    assert lc.api.writes("vpsienodes", "create")  # the new version's minNodes is acted on


async def test_a_resync_copies_no_condition(monkeypatch: pytest.MonkeyPatch) -> None:
    """The status a resync computes starts from the one read, without a deep copy of it: every group
    is resynced every scan_interval and copying its conditions was most of an idle resync's cost."""
    lc = Lifecycle()
    lc.put(nodegroup("web", finalizer=True))
    reconciler = lc.nodegroups()
    await reconciler.reconcile(Request("web"))  # the first status, with its conditions
    copies: list[str] = []
    original = Condition.__deepcopy__

    def counting(self: Condition, memo: dict[int, Any] | None = None) -> Condition:
        copies.append(self.type)
        return original(self, memo)

    monkeypatch.setattr(Condition, "__deepcopy__", counting)
    for _ in range(3):
        await reconciler.reconcile(Request("web"))
    assert copies == []


async def test_a_status_write_that_failed_is_made_by_the_next_resync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parsed group is shared between resyncs of one version: the status a resync computes must
    never leak into it, or a write that failed would look done to the next resync."""
    lc = Lifecycle()
    lc.put(nodegroup("web", finalizer=True))
    reconciler = lc.nodegroups()
    refused: list[str] = []
    patch = lc.api.merge_patch

    async def conflict_once(res: Resource, name: str, body: Obj, namespace: str | None = None, *,
                            subresource: str | None = None) -> Obj:  # fmt: skip
        if subresource == "status" and not refused:
            refused.append(name)
            raise errors.Conflict(name)
        return await patch(res, name, body, namespace, subresource=subresource)

    monkeypatch.setattr(lc.api, "merge_patch", conflict_once)
    await reconciler.reconcile(Request("web"))  # computes the first status; the write is refused
    assert refused == ["web"]
    assert not (lc.get("nodegroups", "web") or {}).get("status")
    await reconciler.reconcile(Request("web"))  # the same version again: the write is made
    written = (lc.get("nodegroups", "web") or {}).get("status") or {}
    assert {c["type"] for c in written.get("conditions") or []} >= {"Ready"}


SPECS = st.fixed_dictionaries(
    {"minNodes": st.integers(0, 3), "maxNodes": st.integers(0, 3), "uid": st.sampled_from(["a", "b"])}
)
STEPS = st.lists(st.tuples(st.sampled_from(["x", "y"]), st.none() | SPECS), max_size=16)


@given(STEPS)
def test_the_parser_answers_what_a_fresh_parse_answers(steps: list[tuple[str, Obj | None]]) -> None:
    """Whatever the informer delivers — a new version of a group (a new resourceVersion, as the API
    server guarantees for every change), or the same one read again by the next pass — the reused
    parse equals a fresh one, refusals included."""
    parser = NodeGroupParser()
    current: dict[str, Obj] = {}
    for rv, (name, spec) in enumerate(steps, start=1):
        if spec is not None or name not in current:
            obj = nodegroup(name)
            version = spec or {"minNodes": 0, "maxNodes": 1, "uid": "a"}
            obj["metadata"].update(uid=version["uid"], resourceVersion=str(rv))
            obj["spec"].update(minNodes=version["minNodes"], maxNodes=version["maxNodes"])
            current[name] = obj
        obj = current[name]
        try:
            expected: NodeGroup | str = parse_nodegroup(obj)
        except InvalidObject as exc:
            expected = str(exc)
        try:
            got: NodeGroup | str = parser.parse(obj)
        except InvalidObject as exc:
            got = str(exc)
        assert got == expected
