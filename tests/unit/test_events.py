"""The events.k8s.io/v1 recorder: series dedup and a send queue that never blocks a reconcile."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.fake_apiserver import FakeApiServer, obj
from tests.support.wait import eventually
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.events import EventRecorder

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u-1", "resourceVersion": "5"}}
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u-2"}}
EVENTS_DEFAULT = "/apis/events.k8s.io/v1/namespaces/default/events"


@pytest.fixture
async def client(fake_apiserver: FakeApiServer) -> AsyncIterator[KubeClient]:
    async def echo(request: Any) -> Any:
        return obj(await request.json(), 201)

    for ns in ("default", "ns"):
        fake_apiserver.on("POST", f"/apis/events.k8s.io/v1/namespaces/{ns}/events", echo)
    async with await KubeClient.connect(server=fake_apiserver.url) as c:
        yield c


def sent(server: FakeApiServer, method: str) -> list[Any]:
    return [r for r in server.requests if r.method == method and "/events" in r.path]


async def test_first_event_is_created_with_the_new_api_fields(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    clock = FakeClock()
    rec = EventRecorder(client, "vpsie-autoscaler", "vpsie-autoscaler-host", clock=clock)
    rec.start()
    rec.event(NODE, "Normal", "ScaleUp", "added 2 nodes", "Provision")
    await eventually(lambda: len(sent(fake_apiserver, "POST")) == 1)
    body = sent(fake_apiserver, "POST")[0].body
    assert sent(fake_apiserver, "POST")[0].path == EVENTS_DEFAULT, "cluster-scoped objects: namespace default"
    assert body["metadata"]["name"].startswith("n1.")
    assert body["regarding"] == {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "u-1",
                                 "resourceVersion": "5"}  # fmt: skip
    assert (body["type"], body["reason"], body["action"], body["note"]) == (
        "Normal", "ScaleUp", "Provision", "added 2 nodes",
    )  # fmt: skip
    assert body["reportingController"] == "vpsie-autoscaler"
    assert body["reportingInstance"] == "vpsie-autoscaler-host"
    assert body["eventTime"].endswith("Z")
    await rec.stop()


async def test_isomorphic_events_become_one_series(fake_apiserver: FakeApiServer, client: KubeClient) -> None:
    clock = FakeClock()
    rec = EventRecorder(client, "c", "i", clock=clock)
    name_holder: dict[str, str] = {}

    async def patch(request: Any) -> Any:
        return obj({"kind": "Event"})

    rec.start()
    rec.event(POD, "Warning", "FailedScaleUp", "quota exceeded", "Provision")
    await eventually(lambda: len(sent(fake_apiserver, "POST")) == 1)
    name_holder["n"] = sent(fake_apiserver, "POST")[0].body["metadata"]["name"]
    path = f"/apis/events.k8s.io/v1/namespaces/ns/events/{name_holder['n']}"
    fake_apiserver.on("PATCH", path, patch)
    rec.event(POD, "Warning", "FailedScaleUp", "quota exceeded again (note differs)", "Provision")
    await eventually(lambda: len(sent(fake_apiserver, "PATCH")) == 1)
    assert sent(fake_apiserver, "PATCH")[0].body["series"]["count"] == 2
    for _ in range(5):
        rec.event(POD, "Warning", "FailedScaleUp", "again", "Provision")
    await rec.stop(flush_timeout=0.5)
    assert len(sent(fake_apiserver, "POST")) == 1, "note changes do not create new events"
    assert len(sent(fake_apiserver, "PATCH")) == 1, "later occurrences are only counted locally"
    rec.start()
    await clock.advance(30 * 60)  # the refresher writes the running series
    await eventually(lambda: len(sent(fake_apiserver, "PATCH")) == 2)
    assert sent(fake_apiserver, "PATCH")[1].body["series"]["count"] == 7
    rec.event(POD, "Warning", "OtherReason", "x", "Provision")
    await eventually(lambda: len(sent(fake_apiserver, "POST")) == 2, what="a different reason is a new event")
    await rec.stop()


async def test_a_finished_series_starts_over(fake_apiserver: FakeApiServer, client: KubeClient) -> None:
    clock = FakeClock()
    rec = EventRecorder(client, "c", "i", clock=clock)
    rec.start()
    rec.event(POD, "Normal", "R", "n", "A")
    await eventually(lambda: len(sent(fake_apiserver, "POST")) == 1)
    await clock.advance(7 * 60)
    rec.event(POD, "Normal", "R", "n", "A")
    await eventually(lambda: len(sent(fake_apiserver, "POST")) == 2)
    await rec.stop()


async def test_a_full_queue_drops_events_without_blocking(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    registry = CollectorRegistry()
    rec = EventRecorder(client, "c", "i", clock=FakeClock(), registry=registry, queue_size=3)
    # Not started: nothing drains the queue, as with an apiserver that hangs.
    for i in range(10):
        rec.event({"kind": "Pod", "metadata": {"name": f"p{i}", "namespace": "ns"}}, "Normal", "R", "n", "A")
    assert rec.queued == 3
    assert registry.get_sample_value("events_dropped_total") == 7


async def test_a_failing_apiserver_never_reaches_the_caller(fake_apiserver: FakeApiServer) -> None:
    async with await KubeClient.connect(server=fake_apiserver.url, request_timeout=0.2) as c:
        fake_apiserver.on("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", fake_apiserver.stall)
        clock = FakeClock()
        rec = EventRecorder(c, "c", "i", clock=clock)
        rec.start()
        rec.event(POD, "Normal", "R", "n", "A")  # returns at once although the server hangs
        rec.event({"bogus": object()}, "Normal", "R", "n", "A")  # even a broken object does not raise
        await eventually(lambda: clock.sleepers >= 1, what="retry scheduled after the timeout")
        await rec.stop(flush_timeout=0.1)
