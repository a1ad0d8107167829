"""Which instance answers which launch: the pure rule (tables and properties) and the binding book.

Users care that a node is never given to two records, that a node that was already there when a
launch was sent never passes for that launch's answer, that the oldest launch is served first, and
that every node nobody waits for is reported for adoption rather than lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.controllers.fakes import VM
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.binding import (
    BindingBook,
    Waiting,
    assign,
    bound_key,
    instance_key,
    raw_owned_key,
    source_key,
    source_key_of_object,
    unowned,
    waiting_of,
)
from vpsie_autoscaler.vpsie.provider import Instance, InstanceState, ManagedSource, NodeSource, VMSource

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
MANAGED = ManagedSource(cluster_identifier="c-1", group_id=7, group_name="g")
VMS = VMSource(
    hostname_prefix="web-",
    resource_identifier="r",
    os_identifier="o",
    dc_identifier="d",
    project_identifier="p",
)


def node(hostname: str, minute: float | None, numeric_id: int = 0, source: NodeSource = MANAGED) -> Instance:
    created = None if minute is None else T0 + timedelta(minutes=minute)
    return Instance(
        hostname=hostname,
        source=source,
        state=InstanceState.RUNNING,
        identifier=f"id-{hostname.lower()}",
        numeric_id=numeric_id,
        created_at=created,
    )


def waiting(
    name: str, minute: float, baseline: tuple[str, ...] = (), requested: str | None = None
) -> Waiting:
    return Waiting(
        name=name,
        requested_hostname=(requested or name).lower(),
        sent_at=T0 + timedelta(minutes=minute),
        baseline=frozenset(baseline),
    )


def names(result: dict[str, Instance]) -> dict[str, str]:
    return {record: inst.hostname for record, inst in result.items()}


# --- assign / unowned: tables ------------------------------------------------------------------------


def test_the_oldest_launch_gets_the_oldest_new_node() -> None:
    launches = [waiting("web-bbbbb", 1), waiting("web-aaaaa", 0)]  # any order in
    nodes = [node("k-slave-2", 6, 2), node("k-slave-1", 5, 1)]
    assert names(assign(MANAGED, launches, nodes, [])) == {"web-aaaaa": "k-slave-1", "web-bbbbb": "k-slave-2"}
    assert unowned(MANAGED, launches, nodes, []) == []


def test_nodes_without_creation_time_come_after_dated_ones() -> None:
    launches = [waiting("web-aaaaa", 0)]
    nodes = [node("k-slave-x", None, 1), node("k-slave-y", 9, 2)]
    assert names(assign(MANAGED, launches, nodes, [])) == {"web-aaaaa": "k-slave-y"}
    assert [i.hostname for i in unowned(MANAGED, launches, nodes, [])] == ["k-slave-x"]


def test_a_node_in_a_launchs_baseline_is_never_given_to_it() -> None:
    launches = [waiting("web-aaaaa", 0, baseline=("k-slave-1",))]
    nodes = [node("K-Slave-1", 1, 1)]  # VPSie keeps mixed case; the baseline is lower case
    assert assign(MANAGED, launches, nodes, []) == {}
    assert [i.hostname for i in unowned(MANAGED, launches, nodes, [])] == ["K-Slave-1"]  # adopted instead


def test_a_node_in_one_baseline_may_answer_an_older_launch_that_did_not_see_it() -> None:
    launches = [waiting("web-older", 0), waiting("web-newer", 1, baseline=("k-slave-1",))]
    nodes = [node("k-slave-1", 0.5, 1), node("k-slave-2", 2, 2)]
    assert names(assign(MANAGED, launches, nodes, [])) == {"web-older": "k-slave-1", "web-newer": "k-slave-2"}


def test_an_owned_node_is_never_assigned_nor_unowned() -> None:
    launches = [waiting("web-aaaaa", 0)]
    nodes = [node("k-slave-1", 1, 1), node("k-slave-2", 2, 2)]
    assert names(assign(MANAGED, launches, nodes, ["k-slave-1"])) == {"web-aaaaa": "k-slave-2"}
    assert unowned(MANAGED, launches, nodes, ["k-slave-1"]) == []


def test_two_waiting_launches_never_get_the_same_node() -> None:
    launches = [waiting("web-aaaaa", 0), waiting("web-bbbbb", 0)]  # same second: name breaks the tie
    nodes = [node("k-slave-1", 1, 1)]
    assert names(assign(MANAGED, launches, nodes, [])) == {"web-aaaaa": "k-slave-1"}


def test_without_waiting_launches_every_unowned_node_is_reported_for_adoption() -> None:
    nodes = [node("k-slave-1", 1, 1), node("k-slave-2", 2, 2), node("k-slave-3", 3, 3)]
    assert assign(MANAGED, [], nodes, ["k-slave-2"]) == {}
    assert [i.hostname for i in unowned(MANAGED, [], nodes, ["k-slave-2"])] == ["k-slave-1", "k-slave-3"]


def test_a_vm_answers_only_the_launch_of_its_hostname() -> None:
    launches = [waiting("web-aaaaa", 0), waiting("web-bbbbb", 1), waiting("web-ddddd", 2)]
    vms = [
        node("WEB-BBBBB", 3, 1, VMS),  # case does not matter
        node("web-ccccc", 0, 2, VMS),  # the oldest, but nobody asked for it
        node("web-ddddd", 4, 3, VMS),
    ]
    assert names(assign(VMS, launches, vms, ["web-ddddd"])) == {"web-bbbbb": "WEB-BBBBB"}
    assert [i.hostname for i in unowned(VMS, launches, vms, ["web-ddddd"])] == ["web-ccccc"]


def test_a_vm_in_the_baseline_still_answers_its_own_hostname() -> None:
    launches = [waiting("web-aaaaa", 0, baseline=("web-aaaaa",))]
    assert names(assign(VMS, launches, [node("web-aaaaa", 1, 1, VMS)], [])) == {"web-aaaaa": "web-aaaaa"}


# --- assign / unowned: properties --------------------------------------------------------------------

POOL = [f"k-slave-{i:02d}" for i in range(12)]


@st.composite
def scenarios(draw: st.DrawFn, *, vm: bool = False, shared_baseline: bool = False) -> tuple[Any, ...]:
    source: NodeSource = VMS if vm else MANAGED
    pool = [f"web-{i:05d}" for i in range(12)] if vm else POOL
    hosts = draw(st.lists(st.sampled_from(pool), unique=True, max_size=10))
    instances = [
        node(
            draw(st.sampled_from([h, h.upper()])),
            draw(st.none() | st.integers(0, 20)),
            draw(st.integers(0, 5)),
            source,
        )
        for h in hosts
    ]
    bound = draw(st.lists(st.sampled_from(pool), unique=True, max_size=4))
    baseline = tuple(draw(st.lists(st.sampled_from(pool), unique=True, max_size=6)))
    names_ = draw(st.lists(st.sampled_from(pool if vm else [f"web-{i:05d}" for i in range(8)]), unique=True))
    launches = [
        waiting(
            name,
            draw(st.integers(0, 20)),
            baseline
            if shared_baseline
            else tuple(draw(st.lists(st.sampled_from(pool), unique=True, max_size=6))),
        )
        for name in names_
    ]
    return source, launches, instances, bound


@settings(max_examples=300, deadline=None)
@given(st.booleans().flatmap(lambda vm: scenarios(vm=vm)))
def test_assign_gives_each_instance_to_at_most_one_record_and_only_an_eligible_one(
    scenario: tuple[Any, ...],
) -> None:
    source, launches, instances, bound = scenario
    result = assign(source, launches, instances, bound)
    keys = [instance_key(i) for i in result.values()]
    assert len(keys) == len(set(keys))  # injective
    by_name = {w.name: w for w in launches}
    for record, inst in result.items():
        key = instance_key(inst)
        assert key not in bound
        assert inst in instances
        if isinstance(source, VMSource):
            assert key == by_name[record].requested_hostname
        else:
            assert key not in by_name[record].baseline


@settings(max_examples=300, deadline=None)
@given(st.booleans().flatmap(lambda vm: scenarios(vm=vm)))
def test_every_listed_instance_is_owned_assigned_or_unowned_exactly_once(scenario: tuple[Any, ...]) -> None:
    source, launches, instances, bound = scenario
    assigned = {instance_key(i) for i in assign(source, launches, instances, bound).values()}
    free = [instance_key(i) for i in unowned(source, launches, instances, bound)]
    owned = {instance_key(i) for i in instances} & set(bound)
    assert len(free) == len(set(free))
    parts = [assigned, set(free), owned]
    assert set().union(*parts) == {instance_key(i) for i in instances}
    assert sum(len(p) for p in parts) == len(instances)  # pairwise disjoint


@settings(max_examples=300, deadline=None)
@given(scenarios(shared_baseline=True))
def test_with_one_baseline_every_eligible_node_serves_a_waiting_launch_oldest_first(
    scenario: tuple[Any, ...],
) -> None:
    source, launches, instances, bound = scenario
    result = assign(source, launches, instances, bound)
    baseline = launches[0].baseline if launches else frozenset()
    eligible = [i for i in instances if instance_key(i) not in set(bound) | baseline]
    assert len(result) == min(len(launches), len(eligible))
    served = sorted(result, key=lambda n: next((w.sent_at, w.name) for w in launches if w.name == n))
    queue = sorted(launches, key=lambda w: (w.sent_at, w.name))
    assert served == [w.name for w in queue[: len(result)]]  # the oldest launches are the ones served


# --- records and the binding book --------------------------------------------------------------------


def record(
    name: str,
    *,
    sent: int | None = 0,
    baseline: tuple[str, ...] = (),
    bound: str | None = None,
    adopt: str | None = None,
    phase: str = "Provisioning",
    outcome: str | None = None,
    deleting: bool = False,
) -> VPSieNode:
    status: dict[str, Any] = {"phase": phase}
    if sent is not None:
        status["launch"] = {
            "requestedHostname": name,
            "sentAt": (T0 + timedelta(minutes=sent)).isoformat(),
            "baseline": list(baseline),
            **({"boundHostname": bound, "boundIdentifier": f"id-{bound}"} if bound else {}),
            **({"outcome": outcome} if outcome else {}),
        }
    spec: dict[str, Any] = {
        "nodeGroup": "g",
        "hostname": name,
        "managed": {"clusterIdentifier": "c-1", "nodeGroupId": 7, "sizeId": 3},
    }
    if adopt is not None:
        spec["adopt"] = {"identifier": f"id-{adopt}", "hostname": adopt}
    return VPSieNode.from_k8s(
        {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "VPSieNode",
            "metadata": {
                "name": name,
                "creationTimestamp": "2026-11-27T09:00:00Z",
                **({"deletionTimestamp": "2026-11-27T09:30:00Z"} if deleting else {}),
            },
            "spec": spec,
            "status": status,
        }
    )


def test_a_record_waits_from_its_launch_record_until_it_is_bound() -> None:
    assert waiting_of(record("web-aaaaa", sent=None)) is None  # nothing sent yet
    w = waiting_of(record("web-aaaaa", baseline=("K-Slave-1",)))
    assert w is not None
    assert (w.requested_hostname, w.baseline) == ("web-aaaaa", frozenset({"k-slave-1"}))
    assert waiting_of(record("web-aaaaa", bound="K-Slave-2")) is None
    assert bound_key(record("web-aaaaa", bound="K-Slave-2")) == "k-slave-2"
    assert bound_key(record("web-aaaaa", sent=None, adopt="K-Slave-3")) == "k-slave-3"
    assert bound_key(record("web-aaaaa")) is None


def test_the_book_applies_its_own_bindings_until_the_cache_shows_them() -> None:
    book = BindingBook()
    stale = [record("web-aaaaa"), record("web-bbbbb", sent=1), record("web-ccccc", bound="k-slave-1")]
    waiting_, bound = book.view(stale)
    assert [w.name for w in waiting_] == ["web-aaaaa", "web-bbbbb"]
    assert bound == {"k-slave-1"}
    book.expect("k-slave-2", "web-aaaaa")  # written, the cache still shows web-aaaaa unbound
    waiting_, bound = book.view(stale)
    assert [w.name for w in waiting_] == ["web-bbbbb"]
    assert bound == {"k-slave-1", "k-slave-2"}
    # So the next pass cannot give k-slave-2 to web-bbbbb:
    nodes = [node("k-slave-1", 1, 1), node("k-slave-2", 2, 2)]
    assert assign(MANAGED, waiting_, nodes, bound) == {}
    # The cache catches up: the expectation is dropped, the record itself says it now.
    fresh = [record("web-aaaaa", bound="k-slave-2"), stale[1], stale[2]]
    assert book.view(fresh)[1] == {"k-slave-1", "k-slave-2"}
    # Once dropped it no longer applies: with the record gone, k-slave-2 is free again.
    assert book.view([stale[1], stale[2]])[1] == {"k-slave-1"}


def test_an_expectation_of_a_record_that_is_gone_or_forgotten_does_not_apply() -> None:
    book = BindingBook()
    book.expect("k-slave-2", "web-zzzzz")  # that record was deleted meanwhile
    assert book.view([record("web-aaaaa")])[1] == set()
    book.expect("k-slave-3", "web-aaaaa")
    book.forget("web-aaaaa")
    waiting_, bound = book.view([record("web-aaaaa")])
    assert ([w.name for w in waiting_], bound) == (["web-aaaaa"], set())


def test_an_adopting_record_owns_its_node() -> None:
    waiting_, bound = BindingBook().view([record("web-aaaaa", sent=None, adopt="K-Slave-9")])
    assert (waiting_, bound) == ([], {"k-slave-9"})


def test_one_lock_per_source() -> None:
    book = BindingBook()
    assert book.lock(MANAGED) is book.lock(
        ManagedSource(cluster_identifier="c-1", group_id=7, group_name="g")
    )
    assert book.lock(MANAGED) is not book.lock(VMS)


@pytest.mark.parametrize(
    ("group", "managed", "key"),
    [
        ("g", {"clusterIdentifier": "c-1", "nodeGroupId": 7}, "managed/c-1/7"),
        ("g", {"clusterIdentifier": "c-1", "nodeGroupName": "pool"}, "managed/c-1/pool"),
        ("web", None, "vm/web"),
    ],
)
def test_records_of_one_vpsie_source_share_a_key(
    group: str, managed: dict[str, Any] | None, key: str
) -> None:
    assert source_key(group, managed) == key
    spec: dict[str, Any] = {"nodeGroup": group, **({"managed": managed} if managed else {"vm": VM})}
    assert source_key_of_object({"spec": spec}) == [key]
    assert source_key_of_object({"spec": None}) == []


@pytest.mark.parametrize(
    ("obj", "owned"),
    [
        ({"status": {"launch": {"boundHostname": "HEL-slave-1a2b"}, "nodeName": "x"}}, "hel-slave-1a2b"),
        ({"spec": {"adopt": {"hostname": "HEL-slave-9f9f"}}}, "hel-slave-9f9f"),
        ({"status": {"nodeName": "web-abc12", "phase": 7}}, "web-abc12"),
        ({"status": "garbage", "spec": ["not", "a", "map"]}, None),
        ({}, None),
    ],
)
def test_a_record_that_cannot_be_parsed_still_owns_the_instance_its_raw_fields_name(
    obj: dict[str, object], owned: str | None
) -> None:
    assert raw_owned_key(obj) == owned


def test_a_refused_or_failed_launch_never_waits_so_it_cannot_take_a_newer_launchs_node() -> None:
    refused = record("web-refus", sent=0, phase="Failed", outcome="NotDone")
    timed_out = record("web-timed", sent=1, phase="Failed")
    live = record("web-livee", sent=2)
    assert waiting_of(refused) is None
    assert waiting_of(timed_out) is None
    book = BindingBook()
    waiting_, owned = book.view([refused, timed_out, live])
    assert [w.name for w in waiting_] == ["web-livee"]
    new = node("K-Slave-9", 3)
    assert assign(MANAGED, waiting_, [new], owned) == {"web-livee": new}


def test_a_record_being_deleted_is_served_after_every_live_launch() -> None:
    leaving = waiting_of(record("web-going", sent=0, deleting=True))
    live = waiting_of(record("web-livee", sent=5))
    assert leaving is not None
    assert leaving.leaving
    assert live is not None
    first, second = node("K-Slave-1", 6), node("K-Slave-2", 7)
    assert assign(MANAGED, [leaving, live], [first, second], set()) == {
        "web-livee": first,
        "web-going": second,
    }
    assert assign(MANAGED, [leaving, live], [first], set()) == {"web-livee": first}


def test_a_failed_vm_record_still_waits_for_the_vm_of_its_own_hostname() -> None:
    """A VM answers only the record of its hostname: a Failed VM record can take nothing else, and
    must still find (and delete) its own late VM."""
    vm = {"resourceIdentifier": "r", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "p"}
    managed = record("web-abc12", sent=0, phase="Failed")
    failed = VPSieNode.from_k8s(
        {
            **managed.model_dump(mode="json", by_alias=True),
            "spec": {"nodeGroup": "g", "hostname": "web-abc12", "vm": vm},
        }
    )
    w = waiting_of(failed)
    assert w is not None
    late = node("web-abc12", 5, source=VMS)
    other = node("web-zzzzz", 4, source=VMS)
    assert assign(VMS, [w], [other, late], set()) == {"web-abc12": late}
