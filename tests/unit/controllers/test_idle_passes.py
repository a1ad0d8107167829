"""An idle controller re-reads unchanged objects every ``scan_interval``: what it already parsed is
reused for as long as the object's resourceVersion stays the same, and nothing else changes."""

from __future__ import annotations

import copy
import dataclasses
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.controllers.fakes import Store, World
from tests.unit.controllers.test_invalid_objects import Lifecycle, nodegroup
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.times import rfc3339
from vpsie_autoscaler.api.types import Condition
from vpsie_autoscaler.controllers.catalogue import PlanFacts
from vpsie_autoscaler.controllers.cluster_state import (
    FRESH_NODE_SECONDS,
    InvalidObject,
    NodeGroupParser,
    SnapshotBuilder,
    parse_nodegroup,
)
from vpsie_autoscaler.kube import Resource, errors
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.runtime.store import Indexer

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


# -- snapshots: an idle pass builds no new one ------------------------------------------------------


class CountingStore(Indexer):
    """The informer's store (it counts its changes), with the fake stores' ``put``."""

    def put(self, obj: Obj) -> Obj:
        self.add(obj)
        return obj


def counted_world() -> tuple[World, SnapshotBuilder]:
    kinds = ("pods", "nodes", "nodegroups", "vpsienodes", "poddisruptionbudgets", "daemonsets", "pvcs", "pvs")
    counting = {k: CountingStore() for k in kinds}
    w = World(stores=cast(dict[str, Store], counting))
    return w, builder_over(w)


def builder_over(w: World) -> SnapshotBuilder:
    return w.builder(daemonsets=w.stores["daemonsets"], pvcs=w.stores["pvcs"], pvs=w.stores["pvs"])


def ready_since(node: Obj, at: datetime) -> Obj:
    node["status"]["conditions"][0]["lastTransitionTime"] = rfc3339(at)
    return node


async def test_an_idle_pass_builds_no_new_snapshot(parses: list[str]) -> None:
    w, builder = counted_world()
    stored(w, "web", "1")
    w.member("web-1", "web")
    w.bound_pod("p", "web-1")
    first = builder.build(w.clock.now())
    parses.clear()
    await w.clock.advance(10)
    again = builder.build(w.clock.now())
    assert again.now == w.clock.now()  # the pass's own time
    assert again.groups is first.groups  # and nothing else built again
    assert again.nodes is first.nodes
    assert parses == []


CHANGES: dict[str, Any] = {
    "pods": lambda w: w.pending_pod("new"),
    "nodes": lambda w: w.node("new", "web"),
    "nodegroups": lambda w: stored(w, "other", "1"),
    "vpsienodes": lambda w: w.vpsienode("new", "web", phase="Pending"),
    "poddisruptionbudgets": lambda w: w.add(
        "poddisruptionbudgets", {"metadata": {"name": "pdb", "namespace": "default"}, "spec": {}}
    ),
    "daemonsets": lambda w: w.add(
        "daemonsets", {"metadata": {"name": "ds", "namespace": "kube-system"}, "spec": {"template": {}}}
    ),
    "pvcs": lambda w: w.add("pvcs", {"metadata": {"name": "c", "namespace": "default"}}),
    "pvs": lambda w: w.add("pvs", {"metadata": {"name": "v"}}),
}


@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_any_change_to_a_store_builds_a_new_snapshot(kind: str) -> None:
    w, builder = counted_world()
    stored(w, "web", "1")
    first = builder.build(w.clock.now())
    CHANGES[kind](w)
    again = builder.build(w.clock.now())
    assert again.groups is not first.groups
    assert builder.build(w.clock.now()).groups is again.groups  # and then idle again


async def test_a_node_leaving_the_fresh_window_builds_a_new_snapshot() -> None:
    """Time alone changes one thing: a node Ready for less than FRESH_NODE_SECONDS is arriving
    capacity, afterwards one of the Ready nodes."""
    w, builder = counted_world()
    stored(w, "web", "1")
    w.vpsienode("web-1", "web", node_name="web-1")
    w.add("nodes", ready_since(copy.deepcopy(w.node("web-1", "web", vpsienode="web-1")), w.clock.now()))
    assert [n.name for n in builder.build(w.clock.now()).in_flight_nodes] == ["web-1"]
    await w.clock.advance(FRESH_NODE_SECONDS / 2)
    assert [n.name for n in builder.build(w.clock.now()).in_flight_nodes] == ["web-1"]
    await w.clock.advance(FRESH_NODE_SECONDS)
    snap = builder.build(w.clock.now())
    assert snap.in_flight_nodes == ()
    assert [n.name for n in snap.ready_nodes] == ["web-1"]


def test_new_plan_facts_and_settings_build_a_new_snapshot() -> None:
    w, builder = counted_world()
    obj = stored(w, "web", "1", cpu=None)  # capacity from the VPSie plan only
    snap = builder.build(w.clock.now())
    assert "web" in snap.group_errors
    assert w.catalogue is not None
    w.catalogue.put(parse_nodegroup(obj), PlanFacts({"cpu": 4, "memory": "8192Mi"}))
    snap = builder.build(w.clock.now())
    assert [g.name for g in snap.groups] == ["web"]
    builder.scale_down_defaults = {"utilization_threshold": 0.9}
    defaulted = builder.build(w.clock.now())
    assert defaulted.groups is not snap.groups
    assert defaulted.nodegroups["web"].spec.scale_down.utilization_threshold == 0.9


def test_records_not_in_the_cache_yet_are_always_built_in() -> None:
    w, builder = counted_world()
    stored(w, "web", "1")
    builder.build(w.clock.now())
    created = w.vpsienode("made", "web", phase="Pending")
    cast(CountingStore, w.stores["vpsienodes"]).delete(created)  # created by us, not watched yet
    snap = builder.build(w.clock.now(), extra_vpsienodes=[created])
    assert [n.name for n in snap.virtual_nodes] == ["made"]
    assert builder.build(w.clock.now()).virtual_nodes == ()


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("pending"), st.integers(0, 3)),
        st.tuples(st.just("bind"), st.integers(0, 3)),
        st.tuples(st.just("node"), st.integers(0, 2), st.integers(0, 60)),
        st.tuples(st.just("delete-node"), st.integers(0, 2)),
        st.tuples(st.just("group"), st.integers(1, 4)),
        st.tuples(st.just("vpsienode"), st.integers(0, 2)),
        st.tuples(st.just("wait"), st.integers(0, 40)),
    ),
    max_size=14,
)


@given(OPS)
def test_a_reused_snapshot_is_the_one_a_fresh_build_makes(ops: list[tuple[Any, ...]]) -> None:
    """Whatever happens between passes (pods, nodes, groups, records, time), every pass sees what a
    builder that never reuses anything would build."""
    w, builder = counted_world()
    stored(w, "web", "1", max_nodes=4)
    now, rv = w.clock.now(), 1
    for op in ops:
        kind = op[0]
        if kind == "pending":
            w.pending_pod(f"p{op[1]}")
        elif kind == "bind" and w.stores["nodes"].get("n0") is not None:
            w.bound_pod(f"p{op[1]}", "n0")
        elif kind == "node":
            node = w.node(f"n{op[1]}", "web")
            ready_since(node, now - timedelta(seconds=op[2]))
            w.add("nodes", copy.deepcopy(node))
        elif kind == "delete-node" and w.stores["nodes"].get(f"n{op[1]}") is not None:
            cast(CountingStore, w.stores["nodes"]).delete_key(f"n{op[1]}")
        elif kind == "group":
            rv += 1
            current = w.stores["nodegroups"].get("web")
            assert current is not None
            new_version(w, current, str(rv), maxNodes=op[1])
        elif kind == "vpsienode":
            w.vpsienode(f"v{op[1]}", "web", phase="Pending")
        elif kind == "wait":
            now += timedelta(seconds=op[1])
        got = builder.build(now)
        fresh = builder_over(w).build(now)  # reuses nothing
        for field in ("now", "nodes", "groups", "nodegroups", "group_errors", "in_flight_nodes",
                      "virtual_nodes", "pending_pods", "pdbs"):  # fmt: skip
            assert plain(getattr(got, field)) == plain(getattr(fresh, field)), field


def plain(value: Any) -> Any:
    """Compares by value what the planners' types compare by identity (``GroupTemplate``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, *(plain(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, list | tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
