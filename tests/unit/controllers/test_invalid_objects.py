"""Invalid objects already stored never stop anything: they are reported (condition, Event once per
generation, ``vpsie_autoscaler_invalid_objects``) and skipped; the other groups keep scaling; an invalid
NodeGroup's deletion completes; an unparsable VPSieNode is never treated as absent (GC) nor released."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.controllers.fakes import VM, World
from vpsie_autoscaler.api.labels import INSTANCE_FINALIZER, NODEGROUP_FINALIZER, NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.controllers.cloud import Providers
from vpsie_autoscaler.controllers.cluster_state import InvalidObject, parse_nodegroup, parse_vpsienode
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.garbagecollection.collector import raw_identifiers
from vpsie_autoscaler.controllers.nodegroup.reconciler import (
    CONDITION_VALIDATION_FAILED,
    GROUP_INDEX,
    REASON_INVALID,
    NodeGroupReconciler,
)
from vpsie_autoscaler.controllers.scaledown import ScaleDownController, ScaleDownOptions
from vpsie_autoscaler.controllers.scaleup import ScaleUpController, ScaleUpOptions
from vpsie_autoscaler.controllers.vpsienode.reconciler import VPSieNodeReconciler
from vpsie_autoscaler.kube import KubeClient, Resource, errors
from vpsie_autoscaler.kube.resources import NODEGROUPS, VPSIENODES
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.runtime.store import Indexer
from vpsie_autoscaler.scaling import plan_scale_up
from vpsie_autoscaler.scaling.scaledown import plan_scale_down

Obj = dict[str, Any]
GAUGE = "vpsie_autoscaler_invalid_objects"
HOSTILE_CPU = "1e999999999"


# -- a tiny API server over real indexers (the reconcilers read informer stores with indexes) ------


@dataclass
class Informer:
    store: Indexer = field(default_factory=Indexer)

    def add_indexers(self, indexers: Any) -> None:
        self.store.add_indexers(indexers)


@dataclass
class Api:
    informers: dict[str, Informer]
    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)
    rv: int = 1

    def _bump(self, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.informers[self._plural(obj)].store.add(obj)
        return obj

    @staticmethod
    def _plural(obj: Obj) -> str:
        return {"NodeGroup": "nodegroups", "VPSieNode": "vpsienodes"}[obj["kind"]]

    async def create(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        self.calls.append(("create", res.plural, body["metadata"]["name"], body))
        return self._bump(copy.deepcopy(body))

    async def merge_patch(self, res: Resource, name: str, patch: Obj, namespace: str | None = None, *,
                          subresource: str | None = None) -> Obj:  # fmt: skip
        self.calls.append(("patch", res.plural, name, patch))
        current = self.informers[res.plural].store.get(name)
        if current is None:
            raise errors.NotFound(name)
        obj = copy.deepcopy(current)
        for key, value in patch.items():
            if isinstance(value, dict) and isinstance(obj.get(key), dict):
                obj[key].update({k: v for k, v in value.items() if k != "resourceVersion"})
            else:
                obj[key] = value
        return self._bump(obj)

    async def delete(self, res: Resource, name: str, namespace: str | None = None, **_: Any) -> None:
        self.calls.append(("delete", res.plural, name, None))
        current = self.informers[res.plural].store.get(name)
        if current is None:
            raise errors.NotFound(name)
        if current["metadata"].get("finalizers"):
            obj = copy.deepcopy(current)
            obj["metadata"]["deletionTimestamp"] = "2026-11-27T09:00:00Z"
            obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1
            self._bump(obj)
        else:
            self.informers[res.plural].store.delete(current)

    def writes(self, plural: str, verb: str | None = None) -> list[tuple[str, str, str, Any]]:
        return [c for c in self.calls if c[1] == plural and (verb is None or c[0] == verb)]


def nodegroup(name: str, *, cpu: str = "2", min_nodes: int = 0, finalizer: bool = False) -> Obj:
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {
            "name": name,
            "uid": f"ng-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "finalizers": [NODEGROUP_FINALIZER] if finalizer else [],
        },
        "spec": {
            "minNodes": min_nodes,
            "maxNodes": 5,
            "vm": VM,
            "template": {"resources": {"cpu": cpu, "memory": "4Gi"}},
        },
    }


def vpsienode(name: str, group: str, *, valid: bool = True) -> Obj:
    spec: Obj = {"nodeGroup": group, "hostname": name, "vm": VM}
    if not valid:
        spec["hostname"] = "Not A Hostname!"  # stored before a rule existed
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "VPSieNode",
        "metadata": {
            "name": name,
            "uid": f"vn-{name}",
            "generation": 1,
            "resourceVersion": "1",
            "labels": {NODEGROUP_LABEL: group},
            "finalizers": [INSTANCE_FINALIZER],
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        "status": {"phase": "Ready", "nodeName": name, "launch": {
            "requestedHostname": name, "sentAt": "2026-01-01T00:00:00Z", "boundHostname": f"{name}-vm"}},
    }  # fmt: skip


@dataclass
class Lifecycle:
    world: World = field(default_factory=World)
    informers: dict[str, Informer] = field(
        default_factory=lambda: {p: Informer() for p in ("nodegroups", "vpsienodes", "nodes")}
    )

    def __post_init__(self) -> None:
        self.api = Api(self.informers)

    def put(self, obj: Obj) -> Obj:
        self.informers[Api._plural(obj)].store.add(obj)
        return obj

    def get(self, plural: str, name: str) -> Obj | None:
        return self.informers[plural].store.get(name)

    def kw(self) -> dict[str, Any]:
        return {
            "client": cast(KubeClient, self.api),
            "recorder": self.world.events,
            "clock": self.world.clock,
            "providers": Providers(None),
            "vpsienodes": cast(SharedInformer, self.informers["vpsienodes"]),
            "nodes": cast(SharedInformer, self.informers["nodes"]),
            "nodegroups": cast(SharedInformer, self.informers["nodegroups"]),
            "metrics": self.world.metrics,
        }

    def deps(self) -> Deps:
        return Deps.build(
            client=cast(KubeClient, self.api),
            recorder=self.world.events,
            clock=self.world.clock,
            metrics=self.world.metrics,
        )

    def nodegroups(self, deps: Deps | None = None) -> NodeGroupReconciler:
        return NodeGroupReconciler(
            deps or self.deps(),
            providers=Providers(None),
            vpsienodes=cast(SharedInformer, self.informers["vpsienodes"]),
            nodes=cast(SharedInformer, self.informers["nodes"]),
            nodegroups=cast(SharedInformer, self.informers["nodegroups"]),
            rng=random.Random(1),
        )

    def vpsienodes(self) -> VPSieNodeReconciler:
        return VPSieNodeReconciler(**self.kw())

    def invalid(self, kind: str) -> float:
        return self.world.sample(GAUGE, {"kind": kind})


def condition(obj: Obj | None) -> Obj | None:
    assert obj is not None
    found = [
        c
        for c in (obj.get("status") or {}).get("conditions") or []
        if c["type"] == CONDITION_VALIDATION_FAILED
    ]
    return found[0] if found else None  # fmt: skip


# -- parsing ---------------------------------------------------------------------------------------


def test_parse_nodegroup_refuses_with_one_exception_type_and_a_bounded_message() -> None:
    for bad in (HOSTILE_CPU, "1e400000", "-1", "1" * 10000):
        obj = nodegroup("bad", cpu=bad)
        start = time.process_time()
        with pytest.raises(InvalidObject, match="cpu") as caught:
            parse_nodegroup(obj)
        assert len(str(caught.value)) <= 512
        assert time.process_time() - start < 0.05
    assert parse_nodegroup(nodegroup("ok")).metadata.name == "ok"


def test_raw_identifiers_are_read_even_when_the_model_refuses_the_record() -> None:
    obj = vpsienode("web-aaaaa", "web", valid=False)
    with pytest.raises(InvalidObject):
        parse_vpsienode(obj)
    assert raw_identifiers(obj) == {"web-aaaaa", "not a hostname!", "web-aaaaa-vm"}
    assert raw_identifiers({"metadata": {"name": 3}, "spec": [], "status": "x"}) == set()


# -- NodeGroup reconciler ----------------------------------------------------------------------------


async def test_an_invalid_group_is_reported_once_per_generation_and_never_scaled() -> None:
    env = Lifecycle()
    env.put(nodegroup("bad", cpu=HOSTILE_CPU, min_nodes=2))
    r = env.nodegroups()
    for _ in range(3):
        await r.reconcile(Request("bad"))
    cond = condition(env.get("nodegroups", "bad"))
    assert cond is not None
    assert (cond["status"], cond["reason"], cond["observedGeneration"]) == ("True", REASON_INVALID, 1)
    assert "spec.template.resources.cpu" in cond["message"]
    assert len(env.world.recorder.reasons(REASON_INVALID, "bad")) == 1
    assert env.invalid("NodeGroup") == 1
    assert not env.api.writes("vpsienodes", "create")  # minNodes is not enforced for it
    assert len(env.api.writes("nodegroups", "patch")) == 1  # the condition, once; no finalizer

    await env.nodegroups().reconcile(Request("bad"))  # a restart: the stored condition says it all
    assert len(env.world.recorder.reasons(REASON_INVALID, "bad")) == 1

    obj = copy.deepcopy(env.get("nodegroups", "bad"))
    assert obj is not None
    obj["metadata"]["generation"] = 2
    obj["spec"]["template"]["resources"]["memory"] = "1e400000"
    env.put(obj)
    await r.reconcile(Request("bad"))
    assert len(env.world.recorder.reasons(REASON_INVALID, "bad")) == 2  # a new generation, still bad

    fixed = copy.deepcopy(env.get("nodegroups", "bad"))
    assert fixed is not None
    fixed["metadata"]["generation"] = 3
    fixed["spec"]["template"]["resources"] = {"cpu": "2", "memory": "4Gi"}
    env.put(fixed)
    await r.reconcile(Request("bad"))
    assert env.invalid("NodeGroup") == 0
    cond = condition(env.get("nodegroups", "bad"))
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("False", "Valid")


async def test_deleting_an_invalid_group_deletes_its_members_from_the_raw_object_then_the_finalizer() -> None:
    env = Lifecycle()
    env.put(nodegroup("bad", cpu=HOSTILE_CPU, finalizer=True))
    env.put(vpsienode("bad-aaaaa", "bad"))
    env.put(vpsienode("bad-bbbbb", "bad", valid=False))
    r = env.nodegroups()
    await env.api.delete(NODEGROUPS, "bad")
    await r.reconcile(Request("bad"))
    assert sorted(c[2] for c in env.api.writes("vpsienodes", "delete")) == ["bad-aaaaa", "bad-bbbbb"]
    group = env.get("nodegroups", "bad")
    assert group is not None
    assert NODEGROUP_FINALIZER in group["metadata"]["finalizers"]

    for name in ("bad-aaaaa", "bad-bbbbb"):  # their own finalizers ran
        obj = env.get("vpsienodes", name)
        assert obj is not None
        env.informers["vpsienodes"].store.delete(obj)
    await r.reconcile(Request("bad"))
    group = env.get("nodegroups", "bad")
    assert group is not None
    assert group["metadata"]["finalizers"] == []


async def test_a_valid_group_keeps_its_finalizer_while_an_unparsable_member_is_left() -> None:
    env = Lifecycle()
    env.put(nodegroup("web", finalizer=True))
    env.put(vpsienode("web-bbbbb", "web", valid=False))
    r = env.nodegroups()
    assert env.informers["vpsienodes"].store.by_index(GROUP_INDEX, "web")
    await env.api.delete(NODEGROUPS, "web")
    await r.reconcile(Request("web"))
    group = env.get("nodegroups", "web")
    assert group is not None
    assert group["metadata"]["finalizers"] == [NODEGROUP_FINALIZER]
    assert [c[2] for c in env.api.writes("vpsienodes", "delete")] == ["web-bbbbb"]


# -- VPSieNode reconciler ------------------------------------------------------------------------------


async def test_an_unparsable_vpsienode_is_reported_once_and_never_released_while_deleted() -> None:
    env = Lifecycle()
    env.put(nodegroup("web"))
    env.put(vpsienode("web-bbbbb", "web", valid=False))
    r = env.vpsienodes()
    for _ in range(3):
        await r.reconcile(Request("web-bbbbb"))
    assert len(env.world.recorder.reasons(REASON_INVALID, "web-bbbbb")) == 1
    assert env.invalid("VPSieNode") == 1

    await env.api.delete(VPSIENODES, "web-bbbbb")
    for _ in range(3):
        await r.reconcile(Request("web-bbbbb"))
    events = env.world.recorder.reasons(REASON_INVALID, "web-bbbbb")
    assert len(events) == 2
    assert "finalizer kept" in events[1].note
    obj = env.get("vpsienodes", "web-bbbbb")
    assert obj is not None
    assert obj["metadata"]["finalizers"] == [INSTANCE_FINALIZER]
    assert env.api.writes("vpsienodes", "patch") == []

    env.informers["vpsienodes"].store.delete(obj)  # someone removed it by hand
    await r.reconcile(Request("web-bbbbb"))
    assert env.invalid("VPSieNode") == 0


# -- scale-up / scale-down skip invalid groups, the others keep scaling ---------------------------------


def with_invalid_group(w: World) -> None:
    w.group("web")
    bad = w.group("bad", cpu="2", min_nodes=1)
    bad["spec"]["template"]["resources"]["cpu"] = HOSTILE_CPU
    w.group("neg", cpu="-1")
    w.node("bad-aaaaa", "bad")  # an idle node of the invalid group: never a scale-down candidate


async def test_scale_up_and_scale_down_skip_invalid_groups_and_the_others_keep_scaling() -> None:
    w = World()
    with_invalid_group(w)
    w.pending_pod("p0", cpu="1500m", nodeSelector={"pool": "web"})  # not on the idle bad-aaaaa
    w.pending_pod("p1", cpu="3", nodeSelector={"pool": "bad"})  # more than bad-aaaaa holds
    up = ScaleUpController(w.deps(), builder=w.builder(), options=ScaleUpOptions(), rng=random.Random(1))
    plan = await up.scale_up_once()
    assert plan is not None
    assert [i.group for i in plan.increases] == ["web"]
    created = [c.body["metadata"]["labels"][NODEGROUP_LABEL] for c in w.kube.writes("create", "vpsienodes")]
    assert created == ["web"]
    (not_triggered,) = w.recorder.reasons("NotTriggerScaleUp", "p1")
    assert "bad: invalid NodeGroup: spec.template.resources.cpu" in not_triggered.note

    down = ScaleDownController(w.deps(), builder=w.builder(), options=ScaleDownOptions())
    for _ in range(2):
        await down.scale_down_once()
        await w.clock.advance(3600)
    assert all(c.name != "bad-aaaaa" for c in w.kube.writes("patch", "vpsienodes"))


def test_a_pod_with_an_unparsable_request_is_skipped_not_fatal() -> None:
    w = World()
    w.group("web")
    w.pending_pod("ok", cpu="1")
    w.pending_pod("huge", cpu=f"{2**63}")  # beyond int64 milli-units
    snap = w.builder().build(w.clock.now())
    assert [p.key for p in snap.pending_pods] == ["default/ok"]


# -- property: whatever the model accepts, the planners answer quickly and never raise -------------------

QUANTITY = st.one_of(
    st.integers(min_value=0, max_value=2**50),
    st.builds(
        lambda n, s: f"{n}{s}", st.integers(0, 1024), st.sampled_from(["", "m", "k", "Mi", "Gi", "Pi"])
    ),
    st.sampled_from(["1e3", "0.5", "1.5Gi", "100m", "0", "1Pi", "1e15", "1e-9", ".5", "2."]),
)
DURATION = st.sampled_from(["0s", "1s", "30s", "10m", "1h", "2h30m", "1ms"])
LABEL = st.sampled_from(["pool", "zone", "gpu", "example.com/tier"])


@st.composite
def nodegroups(draw: st.DrawFn, name: str) -> Obj:
    lo = draw(st.integers(0, 20))
    resources = draw(st.dictionaries(st.sampled_from(["cpu", "memory", "pods", "ephemeral-storage",
                                                      "nvidia.com/gpu"]), QUANTITY, max_size=5))  # fmt: skip
    spec: Obj = {
        "minNodes": lo,
        "maxNodes": draw(st.integers(max(lo, 1), 1000)),
        "vm": VM,
        "template": {
            "resources": resources,
            "reserved": draw(st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITY, max_size=2)),
            "labels": draw(st.dictionaries(LABEL, st.sampled_from(["a", "b", name]), max_size=3)),
            "taints": draw(
                st.lists(
                    st.builds(
                        lambda k, e: {"key": k, "value": "x", "effect": e},
                        LABEL,
                        st.sampled_from(["NoSchedule", "PreferNoSchedule"]),
                    ),
                    max_size=2,
                    unique_by=lambda t: t["key"],
                )
            ),
        },
        "scaleUp": {"priority": draw(st.integers(-100, 100)), "enabled": draw(st.booleans())},
        "scaleDown": {
            "enabled": draw(st.booleans()),
            "unneededTime": draw(DURATION),
            "delayAfterScaleUp": draw(DURATION),
            "utilizationThreshold": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
            "disruptionBudget": draw(st.one_of(st.integers(0, 50), st.sampled_from(["0%", "10%", "100%"]))),
        },
    }
    return {
        "apiVersion": "autoscaler.vpsie.com/v1alpha1",
        "kind": "NodeGroup",
        "metadata": {"name": name, "uid": f"ng-{name}", "generation": 1},
        "spec": spec,
    }


def accepted(obj: Obj) -> bool:
    try:
        NodeGroup.from_k8s(obj)
    except ValueError:
        return False
    return True


# A stall guard, not a speed claim (benchmarks make those): a group the schema accepts must never
# send a planner into a pathological loop (a huge exponent, a zero-sized plan). Generous enough for
# two loaded cores; a stall takes far longer.
CALL_BUDGET_S = 2.0
GROUPS = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.tuples(*(nodegroups(n) for n in names))
)


def timed(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    took = time.perf_counter() - start
    assert took < CALL_BUDGET_S, f"{what} took {took * 1000:.0f} ms"
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow]
)
@given(GROUPS, st.integers(0, 6), st.integers(0, 4))
def test_groups_the_model_accepts_never_break_or_stall_the_planners(
    groups: tuple[Obj, ...], pods: int, nodes: int
) -> None:
    w = World()
    for g in groups:
        if accepted(g):
            w.add("nodegroups", g)
    names = [g["metadata"]["name"] for g in groups]
    for i in range(nodes):
        group = names[i % len(names)]
        w.node(f"{group}-n{i}", group)
        w.vpsienode(f"{group}-v{i}", group, node_name=f"{group}-n{i}")
    for i in range(pods):
        w.pending_pod(f"p{i}", cpu=random.Random(i).choice(["100m", "1", "3", "64"]))
    builder = w.builder()
    now = w.clock.now()
    snap = timed("snapshot", builder.build, now)
    timed("scale-up", plan_scale_up, snap.pending_pods, snap.groups, in_flight_nodes=snap.in_flight_nodes,
          now=now, usage=snap.usage, rng=random.Random(0))  # fmt: skip
    timed("scale-down", plan_scale_down, snap.nodes, snap.groups, snap.pdbs, now=now)
