"""Managed NodeGroups with several plans: a node on a size other than its VPSie node group's carries the
size (``spec.planSizeId``), and the lifecycle controller adds it to the cluster's VPSie node group of
that size, found by size or created once (VPSie keeps one group per size); records of one size bind
within that group; a size that is another NodeGroup's own VPSie group is never chosen."""

from __future__ import annotations

import random
from typing import Any

from tests.unit.controllers.fakes import World
from tests.unit.controllers.test_discovery import (
    ADVANCED,
    OURS,
    STANDARD,
    cluster,
    created_records,
    managed_group,
    simulated,
)
from vpsie_autoscaler.api.labels import INSTANCE_FINALIZER, NODEGROUP_LABEL
from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.binding import source_key_of_object, source_key_of_spec
from vpsie_autoscaler.controllers.catalogue import PlanFacts
from vpsie_autoscaler.controllers.cloud import Providers
from vpsie_autoscaler.controllers.flexible import plan_shapes, record_plan, reserved_sizes, with_plan
from vpsie_autoscaler.controllers.new_vpsienode import new_vpsienode
from vpsie_autoscaler.controllers.scaleup import ScaleUpController, ScaleUpOptions
from vpsie_autoscaler.controllers.vpsienode.reconciler import VPSieNodeReconciler
from vpsie_autoscaler.runtime.controller import Request
from vpsie_autoscaler.scaling.scaleup import TRIGGERED

Obj = dict[str, Any]
PROFESSIONAL = 58
CREATE_GROUP = "/apps/v2/k8s/cluster/add/group"
SMALL = PlanFacts({"cpu": 2, "memory": "4096Mi"}, 20 / 730, "Standard", identifier=str(STANDARD))
BIG = PlanFacts({"cpu": 8, "memory": "16384Mi"}, 80 / 730, "Professional", identifier=str(PROFESSIONAL))


def managed_source(group: str = "GRP-Standard", size: int = STANDARD) -> Obj:
    return {"clusterIdentifier": OURS, "nodeGroupName": group, "sizeId": size}


def flexible_managed(w: World, name: str = "flex", **spec: Any) -> NodeGroup:
    obj = w.group(name, cpu=None, managed=managed_source(), plans={"sizes": ["56", "58"]}, **spec)
    del obj["spec"]["vm"]
    ng = NodeGroup.from_k8s(obj)
    assert w.catalogue is not None
    w.catalogue.put(ng, SMALL)
    w.catalogue.put_options(ng, [SMALL, BIG])
    return ng


def record(name: str, size: int | None, *, group: str = "flex") -> Obj:
    spec: Obj = {"nodeGroup": group, "hostname": name, "managed": managed_source()}
    if size is not None:
        spec["planSizeId"] = size
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
    }


# --- the plan on the record (pure) ---------------------------------------------------------------------


def test_a_size_other_than_the_groups_own_goes_into_plan_size_id_and_the_own_size_does_not() -> None:
    w = World()
    ng = flexible_managed(w)
    shapes = {p.name: p for p in plan_shapes(ng, w.catalogue, ())}  # type: ignore[arg-type]
    assert set(shapes) == {"56", "58"}
    big = with_plan(new_vpsienode(ng, rng=random.Random(1)), shapes["58"])
    own = with_plan(new_vpsienode(ng, rng=random.Random(2)), shapes["56"])
    assert (big.spec.plan_size_id, big.spec.instance_type) == (PROFESSIONAL, "Professional")
    assert (own.spec.plan_size_id, own.spec.instance_type) == (None, "Standard")
    assert record_plan(big.to_k8s()) == "58"  # the capacity the record brings while it is on its way
    assert record_plan(own.to_k8s()) == "56"


def test_records_of_one_size_share_a_source_whichever_group_asked_and_apart_from_the_own_group() -> None:
    a, b, own = (VPSieNode.from_k8s(record("a-1", 58)), VPSieNode.from_k8s(record("b-1", 58, group="other")),
                 VPSieNode.from_k8s(record("a-2", None)))  # fmt: skip
    assert source_key_of_spec(a.spec) == source_key_of_spec(b.spec) == f"managed/{OURS}/size/58"
    assert source_key_of_spec(own.spec) == f"managed/{OURS}/GRP-Standard"
    for vn in (a, own):  # the index over raw objects agrees with the parsed spec
        assert source_key_of_object(vn.to_k8s()) == [source_key_of_spec(vn.spec)]


def test_a_size_that_is_another_nodegroups_own_vpsie_group_is_never_chosen() -> None:
    w = World()
    ng = flexible_managed(w)
    big_obj = w.group("big", managed=managed_source("GRP-Professional", PROFESSIONAL))
    del big_obj["spec"]["vm"]
    reserved = reserved_sizes([ng, NodeGroup.from_k8s(big_obj)])
    assert w.catalogue is not None
    assert [p.name for p in plan_shapes(ng, w.catalogue, (), reserved)] == ["56"]  # its own size stays


async def test_scale_up_puts_the_big_size_on_the_record_of_a_managed_flexible_group() -> None:
    w = World()
    flexible_managed(w)
    w.pending_pod("big", cpu="7500m")
    w.pending_pod("small", cpu="1")
    c = ScaleUpController(w.deps(), builder=w.builder(), options=ScaleUpOptions(), rng=random.Random(3))
    plan = await c.scale_up_once()
    assert plan is not None
    assert {o.status for o in plan.pods} == {TRIGGERED}
    made = {c.body["spec"]["instanceType"]: c.body["spec"].get("planSizeId")
            for c in w.kube.writes("create", "vpsienodes")}  # fmt: skip
    assert made == {"Standard": None, "Professional": PROFESSIONAL}


# --- the launch against the simulator ------------------------------------------------------------------


async def test_the_launch_creates_the_size_group_once_and_adds_every_node_of_that_size_to_it() -> None:
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 0)])) as env:
        now = [0.0]  # the shared listings' clock: the binding pass reads a listing newer than the launch
        providers = Providers(env.providers.client, monotonic=lambda: now[0])
        lifecycle = VPSieNodeReconciler(**{**env.env.kw(), "providers": providers})
        for name in ("flex-aaaaa", "flex-bbbbb"):
            env.env.put(record(name, PROFESSIONAL))
            await lifecycle.reconcile(Request(name))
        env.env.put(record("flex-ccccc", None))  # the group's own size: its own VPSie group
        await lifecycle.reconcile(Request("flex-ccccc"))
        groups = {g.name: g for g in env.sim.state.groups.values()}
        assert set(groups) == {"GRP-Standard", "flex-size-58"}
        assert groups["flex-size-58"].size == PROFESSIONAL
        assert len([r for r in env.sim.requests if r["path"] == CREATE_GROUP]) == 1
        adds = [r["path"] for r in env.sim.requests if "/add/slave/group/" in r["path"]]
        big, own = groups["flex-size-58"].id, groups["GRP-Standard"].id
        assert sorted(p.rsplit("/", 1)[1] for p in adds) == sorted([str(big), str(big), str(own)])
        now[0] += 60
        for name in ("flex-aaaaa", "flex-bbbbb", "flex-ccccc"):  # the nodes boot at once: each binds one
            await lifecycle.reconcile(Request(name))
        bound = {}
        for name in ("flex-aaaaa", "flex-bbbbb", "flex-ccccc"):
            obj = env.env.get("vpsienodes", name)
            assert obj is not None
            bound[name] = obj["status"]["launch"].get("boundHostname")
        by_host = {n.hostname: n.group_id for n in env.sim.state.nodes.values()}
        assert [by_host[bound[n]] for n in ("flex-aaaaa", "flex-bbbbb", "flex-ccccc")] == [big, big, own]
        assert len(set(bound.values())) == 3


async def test_an_existing_group_of_the_size_is_used_whatever_its_name() -> None:
    groups = [("GRP-Standard", STANDARD, 0), ("GRP-Professional", PROFESSIONAL, 0)]
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", groups)) as env:
        lifecycle = VPSieNodeReconciler(**{**env.env.kw(), "providers": env.providers})
        env.env.put(record("flex-aaaaa", PROFESSIONAL))
        await lifecycle.reconcile(Request("flex-aaaaa"))
        assert [r for r in env.sim.requests if r["path"] == CREATE_GROUP] == []
        (pro,) = [g for g in env.sim.state.groups.values() if g.name == "GRP-Professional"]
        adds = [r["path"] for r in env.sim.requests if "/add/slave/group/" in r["path"]]
        assert [p.rsplit("/", 1)[1] for p in adds] == [str(pro.id)]


async def test_a_size_vpsie_refuses_fails_the_record_with_vpsies_words_and_adds_nothing() -> None:
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", [("GRP-Standard", STANDARD, 0)])) as env:
        lifecycle = VPSieNodeReconciler(**{**env.env.kw(), "providers": env.providers})
        env.env.put(record("flex-aaaaa", 999999))
        await lifecycle.reconcile(Request("flex-aaaaa"))
        obj = env.env.get("vpsienodes", "flex-aaaaa")
        assert obj is not None
        assert obj["status"]["phase"] == "Failed"
        assert obj["status"]["lastError"].startswith("CreateFailed: ")
        assert "Invalid KubeSizeID" in obj["status"]["lastError"]
        assert [r for r in env.sim.requests if "/add/slave/group/" in r["path"]] == []


# --- adoption in the size groups -------------------------------------------------------------------------


def failed(obj: Obj) -> Obj:
    """A record whose launch was sent and that failed: a node arriving for it now is nobody's."""
    launch = {
        "requestedHostname": obj["spec"]["hostname"],
        "sentAt": "2026-01-01T00:00:00Z",
        "outcome": "Done",
    }
    obj["status"] = {"phase": "Failed", "launch": launch}
    return obj


async def test_a_late_node_in_the_group_made_for_a_size_is_adopted_and_one_in_a_foreign_group_is_not() -> (
    None
):
    groups = [("GRP-Standard", STANDARD, 0), ("GRP-Advanced", ADVANCED, 0)]
    async with simulated(cluster(OURS, "HEL-Kubernetes-49ab", groups)) as env:
        state = env.sim.state
        made = state.create_group(OURS, "flex-size-58", PROFESSIONAL)
        (advanced,) = [g for g in state.groups.values() if g.name == "GRP-Advanced"]
        late = state.add_node(OURS, made.id)
        foreign = state.add_node(OURS, advanced.id)
        flex = managed_group("flex", managed_source())
        flex["spec"]["plans"] = {"sizes": ["56", "57", "58"]}
        env.env.put(flex)
        env.env.put(failed(record("flex-aaaaa", PROFESSIONAL)))
        env.env.put(failed(record("flex-bbbbb", ADVANCED)))
        await env.reconciler().reconcile(Request("flex"))
        adopted = [vn for vn in created_records(env) if vn.spec.adopt is not None]
        assert [(vn.spec.adopt.hostname, vn.spec.plan_size_id) for vn in adopted if vn.spec.adopt] == [
            (late.hostname, PROFESSIONAL)
        ]
        assert foreign.hostname not in {vn.spec.adopt.hostname for vn in adopted if vn.spec.adopt}
        assert env.env.world.recorder.reasons("AdoptedInstance", "flex")
