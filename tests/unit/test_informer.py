"""Reflector and informer behaviour against a scripted apiserver (runtime-semantics §1.1-1.3, §3.6)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_apiserver import FakeApiServer, ListWatch, list_body, status, watch_events
from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import NODES, PODS
from vpsie_autoscaler.runtime.backoff import ExponentialBackoff
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.informer import InformerFactory, SharedInformer
from vpsie_autoscaler.runtime.reflector import ListMode, VeryShortWatchError
from vpsie_autoscaler.runtime.store import DeletedFinalStateUnknown


def node(name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "resourceVersion": rv,
            "labels": labels,
            "managedFields": [{"manager": "kubelet"}],
        }
    }


@pytest.fixture
async def client(fake_apiserver: FakeApiServer) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(server=fake_apiserver.url) as c:
        yield c


@pytest.fixture
def nodes_api(fake_apiserver: FakeApiServer) -> ListWatch:
    return ListWatch(fake_apiserver, "/api/v1/nodes")


class Recorder:
    def __init__(self, informer: SharedInformer) -> None:
        self.events: list[tuple[str, str]] = []
        self.tombstones: list[DeletedFinalStateUnknown] = []
        informer.add_event_handler(self.on_add, self.on_update, self.on_delete)

    def on_add(self, obj: dict[str, Any]) -> None:
        self.events.append(("add", obj["metadata"]["name"]))

    def on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.events.append(("update", new["metadata"]["name"]))

    def on_delete(self, obj: dict[str, Any] | DeletedFinalStateUnknown) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            self.tombstones.append(obj)
            self.events.append(("tombstone", obj.key))
        else:
            self.events.append(("delete", obj["metadata"]["name"]))


def make_informer(client: KubeClient, clock: FakeClock | None = None, **kw: Any) -> SharedInformer:
    """client-go's list semantics unless a test asks for another mode."""
    kw.setdefault("list_mode", ListMode.CLIENT_GO)
    return SharedInformer(client, NODES, clock=clock or FakeClock(), registry=CollectorRegistry(), **kw)


async def test_initial_list_uses_rv_0_then_watches_from_the_list_rv(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    nodes_api.lists.append(list_body([node("a", "10")], "100"))
    nodes_api.watches.append(
        watch_events(
            [("ADDED", node("b", "101")), ("MODIFIED", node("a", "102")), ("DELETED", node("b", "103"))],
            then="hold",
        )
    )
    informer = make_informer(client)
    rec = Recorder(informer)
    task = informer.start()
    await eventually(lambda: len(rec.events) == 4, what="four events")
    assert rec.events == [("add", "a"), ("add", "b"), ("update", "a"), ("delete", "b")]
    assert nodes_api.list_queries[0] == {"limit": "500", "resourceVersion": "0"}
    watch_q = nodes_api.watch_queries[0]
    assert watch_q["resourceVersion"] == "100"
    assert watch_q["allowWatchBookmarks"] == "true"
    assert 300 <= int(watch_q["timeoutSeconds"]) <= 600
    assert informer.last_sync_resource_version == "103"
    cached = informer.store.get("a")
    assert cached is not None
    assert "managedFields" not in cached["metadata"], "managedFields are stripped before caching"
    assert cached["kind"] == "Node"
    assert cached["apiVersion"] == "v1"
    task.cancel()


async def test_has_synced_only_after_the_first_full_list(client: KubeClient, nodes_api: ListWatch) -> None:
    gate = asyncio.Event()

    async def slow_second_page(request: Any) -> Any:
        await gate.wait()
        return list_body([node("b", "2")], "100")

    nodes_api.lists += [list_body([node("a", "1")], "100", continue_="page2"), slow_second_page]
    informer = make_informer(client)
    task = informer.start()
    await eventually(lambda: len(nodes_api.list_queries) == 2, what="second page requested")
    assert not informer.has_synced()
    assert len(informer.store) == 0, "a partial list is not delivered"
    gate.set()
    await eventually(informer.has_synced, what="sync")
    assert sorted(o["metadata"]["name"] for o in informer.store.list()) == ["a", "b"]
    assert nodes_api.list_queries[1] == {"limit": "500", "continue": "page2"}
    task.cancel()


async def test_bookmark_advances_the_rv_without_touching_the_store(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    nodes_api.lists.append(list_body([node("a", "10")], "100"))
    bookmark = {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": "150"}}
    nodes_api.watches.append(watch_events([("BOOKMARK", bookmark)], then="close"))
    informer = make_informer(client)
    rec = Recorder(informer)
    task = informer.start()
    await eventually(lambda: len(nodes_api.watch_queries) == 2, what="re-watch after a normal close")
    assert rec.events == [("add", "a")]
    assert nodes_api.watch_queries[1]["resourceVersion"] == "150"
    assert len(nodes_api.list_queries) == 1, "a normal watch end re-watches, it does not relist"
    task.cancel()


async def test_watch_410_relists_with_the_last_rv_and_tombstones_what_vanished(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    clock = FakeClock()
    expired = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
    nodes_api.lists += [
        list_body([node("a", "10"), node("b", "11")], "100"),
        list_body([node("a", "10"), node("c", "120")], "130"),
    ]
    nodes_api.watches.append(watch_events([("MODIFIED", node("a", "105")), ("ERROR", expired)]))
    informer = make_informer(client, clock)
    rec = Recorder(informer)
    task = informer.start()
    await eventually(lambda: clock.sleepers == 1, what="back-off before relisting")
    await clock.advance(60)
    await eventually(lambda: ("add", "c") in rec.events, what="relist delivered")
    assert nodes_api.list_queries[1]["resourceVersion"] == "105", "relist uses the last RV seen, not 0"
    assert "limit" not in nodes_api.list_queries[1], "a relist at a specific RV is not paginated"
    assert [t.key for t in rec.tombstones] == ["b"]
    assert rec.tombstones[0].obj["metadata"]["resourceVersion"] == "11", "tombstone carries the last state"
    assert informer.store.get("b") is None
    assert ("update", "a") in rec.events
    task.cancel()


async def test_list_410_relists_at_once_with_a_consistent_read(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    informer = make_informer(client)
    informer._reflector.last_sync_resource_version = "50"  # as after an earlier cycle
    nodes_api.lists += [status(410, "Expired", "too old"), list_body([node("a", "1")], "300")]
    task = informer.start()
    await eventually(informer.has_synced, what="sync after the consistent relist")
    assert [q.get("resourceVersion") for q in nodes_api.list_queries] == ["50", ""]
    assert nodes_api.list_queries[1].get("limit") == "500"
    task.cancel()


async def test_expired_continue_token_restarts_the_list_in_full(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    nodes_api.lists += [
        list_body([node("a", "1")], "100", continue_="tok"),
        status(410, "Expired", "The provided continue parameter is too old"),
        list_body([node("a", "1"), node("b", "2")], "140"),
    ]
    informer = make_informer(client)
    task = informer.start()
    await eventually(informer.has_synced, what="sync")
    assert len(informer.store) == 2
    assert nodes_api.list_queries[2] == {"resourceVersion": "0"}, "full list: no limit, no token"
    task.cancel()


async def test_a_watch_that_closes_at_once_with_no_events_backs_off(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    clock = FakeClock()
    nodes_api.lists.append(list_body([], "100"))
    nodes_api.watches.append(watch_events([], then="close"))
    informer = make_informer(client, clock)
    with pytest.raises(VeryShortWatchError):
        await informer._reflector.list_and_watch()


async def test_broken_watch_connection_resumes_from_the_last_rv_without_relisting(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    nodes_api.lists.append(list_body([], "100"))
    nodes_api.watches += [
        watch_events([("ADDED", node("a", "101"))], then="drop"),
        watch_events([("ADDED", node("b", "102"))], then="hold"),
    ]
    informer = make_informer(client)
    rec = Recorder(informer)
    task = informer.start()
    await eventually(lambda: ("add", "b") in rec.events, what="second watch delivered")
    assert nodes_api.watch_queries[1]["resourceVersion"] == "101"
    assert len(nodes_api.list_queries) == 1
    task.cancel()


async def test_watch_refused_with_429_backs_off_then_rewatches(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    clock = FakeClock()
    nodes_api.lists.append(list_body([], "100"))
    nodes_api.watches.append(status(429, "TooManyRequests", "slow down"))
    informer = make_informer(client, clock)
    task = informer.start()
    await eventually(lambda: clock.sleepers == 1, what="back-off sleep")
    assert len(nodes_api.watch_queries) == 1
    await clock.advance(2)
    await eventually(lambda: len(nodes_api.watch_queries) == 2, what="re-watch")
    assert nodes_api.watch_queries[1]["resourceVersion"] == "100"
    assert len(nodes_api.list_queries) == 1
    task.cancel()


async def test_failed_list_backs_off_and_retries(client: KubeClient, nodes_api: ListWatch) -> None:
    clock = FakeClock()
    nodes_api.lists += [status(500, "InternalError"), list_body([node("a", "1")], "100")]
    informer = make_informer(client, clock)
    task = informer.start()
    await eventually(lambda: clock.sleepers == 1, what="back-off")
    assert not informer.has_synced()
    await clock.advance(1.7)  # first back-off is within [0.8, 1.6)
    await eventually(informer.has_synced, what="sync after retry")
    task.cancel()


def test_backoff_doubles_from_0_8s_to_30s_with_jitter_and_resets_after_2_minutes() -> None:
    clock = FakeClock()
    b = ExponentialBackoff(initial=0.8, cap=30, factor=2, jitter=1, reset_after=120, clock=clock,
                           rng=random.Random(1))  # fmt: skip
    delays = [b.next() for _ in range(10)]
    bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30, 30, 30, 30]
    for d, base in zip(delays, bases, strict=True):
        assert base <= d < 2 * base
    asyncio.run(clock.advance(121))
    assert 0.8 <= b.next() < 1.6


async def test_a_handler_added_late_sees_the_cache_and_a_failing_handler_does_not_stop_others(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    nodes_api.lists.append(list_body([node("a", "1"), node("b", "2")], "100"))
    nodes_api.watches.append(watch_events([("ADDED", node("c", "101"))], then="hold"))
    informer = make_informer(client)

    def boom(obj: dict[str, Any]) -> None:
        raise RuntimeError("handler bug")

    informer.add_event_handler(on_add=boom)
    task = informer.start()
    await eventually(lambda: len(informer.store) == 3, what="watch event cached despite the failing handler")
    late = Recorder(informer)
    assert sorted(late.events) == [("add", "a"), ("add", "b"), ("add", "c")]
    task.cancel()


async def test_factory_shares_one_informer_per_resource_and_selector(client: KubeClient) -> None:
    factory = InformerFactory(client, clock=FakeClock(), registry=CollectorRegistry())
    a = factory.informer_for(PODS)
    assert factory.informer_for(PODS) is a
    assert factory.informer_for(PODS, label_selector="x=y") is not a
    assert factory.informer_for(NODES) is not a
    assert len(factory.informers) == 3
    assert not factory.has_synced()


async def test_factory_waits_for_all_caches(client: KubeClient, nodes_api: ListWatch) -> None:
    nodes_api.lists.append(list_body([node("a", "1")], "100"))
    factory = InformerFactory(
        client, clock=FakeClock(), registry=CollectorRegistry(), list_mode=ListMode.CLIENT_GO
    )
    factory.informer_for(NODES)
    factory.start()
    assert await factory.wait_for_cache_sync(5)
    assert factory.has_synced()
    assert factory.alive()
    late = factory.informer_for(PODS)  # requested after start: starts at once, stalls on LIST
    assert not await factory.wait_for_cache_sync(0.2)
    assert late.running
    await factory.stop()


async def test_paginated_mode_lists_consistently_in_pages_every_time(
    client: KubeClient, nodes_api: ListWatch
) -> None:
    clock = FakeClock()
    expired = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
    nodes_api.lists += [
        list_body([node("a", "10")], "100", continue_="p2"),
        list_body([node("b", "11")], "100"),
        list_body([node("a", "10")], "130"),
    ]
    nodes_api.watches.append(watch_events([("ERROR", expired)]))
    informer = make_informer(client, clock, list_mode=ListMode.PAGINATED)
    rec = Recorder(informer)
    task = informer.start()
    await eventually(lambda: clock.sleepers == 1, what="back-off before relisting")
    await clock.advance(60)
    await eventually(lambda: ("tombstone", "b") in rec.events, what="relist delivered")
    assert nodes_api.list_queries == [
        {"limit": "500", "resourceVersion": ""},
        {"limit": "500", "continue": "p2"},
        {"limit": "500", "resourceVersion": ""},
    ]
    task.cancel()


async def test_a_transform_trims_objects_before_caching(client: KubeClient, nodes_api: ListWatch) -> None:
    def drop_labels(obj: dict[str, Any]) -> dict[str, Any]:
        obj["metadata"].pop("labels", None)
        return obj

    nodes_api.lists.append(list_body([node("a", "1", pool="p")], "100"))
    factory = InformerFactory(client, clock=FakeClock(), registry=CollectorRegistry())
    informer = factory.informer_for(NODES, transform=drop_labels)
    assert factory.informer_for(NODES) is informer
    with pytest.raises(ValueError, match="different transform"):
        factory.informer_for(NODES, transform=lambda o: o)
    factory.start()
    assert await factory.wait_for_cache_sync(5)
    cached = informer.store.get("a")
    assert cached is not None
    assert "labels" not in cached["metadata"]
    assert "managedFields" not in cached["metadata"], "managedFields are stripped as well"
    await factory.stop()
