"""The Kubernetes adapter against a fake apiserver: what it sends, how it maps failures, that it
never waits forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from tests.support.fake_apiserver import FakeApiServer, obj, status
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import LEASES, NODEGROUPS, NODES, PODS

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "resourceVersion": "7"}}


@pytest.fixture
async def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def client(fake_apiserver: FakeApiServer, registry: CollectorRegistry) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(
        server=fake_apiserver.url,
        token="s3cret",
        registry=registry,
        request_timeout=2.0,
        watch_read_grace=0.3,
    ) as c:
        yield c


async def test_get_returns_the_json_object_and_sends_the_token(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.reply("GET", "/api/v1/nodes/n1", lambda: obj(NODE))
    assert await client.get(NODES, "n1") == NODE
    sent = fake_apiserver.requests[-1]
    assert sent.headers["Authorization"] == "Bearer s3cret"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("vpsie-autoscaler/")


async def test_list_sends_selectors_pagination_and_resource_version(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.reply("GET", "/api/v1/namespaces/ns/pods", lambda: obj({"kind": "PodList", "items": []}))
    out = await client.list(
        PODS,
        "ns",
        label_selector="a=b",
        field_selector="spec.nodeName=n1",
        limit=500,
        continue_="tok",
        resource_version="0",
    )
    assert out["kind"] == "PodList"
    assert fake_apiserver.requests[-1].query == {
        "labelSelector": "a=b",
        "fieldSelector": "spec.nodeName=n1",
        "limit": "500",
        "continue": "tok",
        "resourceVersion": "0",
    }


async def test_merge_patch_uses_the_merge_patch_content_type(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    path = "/apis/autoscaler.vpsie.com/v1alpha1/nodegroups/g1/status"
    fake_apiserver.reply("PATCH", path, lambda: obj({"kind": "NodeGroup"}))
    patch = {"metadata": {"resourceVersion": "5"}, "status": {"desired": 3}}
    await client.merge_patch(NODEGROUPS, "g1", patch, subresource="status")
    sent = fake_apiserver.requests[-1]
    assert sent.headers["Content-Type"] == "application/merge-patch+json"
    assert sent.body == patch


async def test_apply_sends_field_manager_and_force(fake_apiserver: FakeApiServer, client: KubeClient) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l1"
    fake_apiserver.reply("PATCH", path, lambda: obj({"kind": "Lease"}))
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l1", "namespace": "ns"},
    }
    await client.apply(LEASES, body, field_manager="me")
    sent = fake_apiserver.requests[-1]
    assert sent.headers["Content-Type"] == "application/apply-patch+yaml"
    assert sent.query == {"fieldManager": "me", "force": "true"}


async def test_evict_posts_a_policy_v1_eviction(fake_apiserver: FakeApiServer, client: KubeClient) -> None:
    path = "/api/v1/namespaces/ns/pods/p1/eviction"
    fake_apiserver.reply("POST", path, lambda: obj({"kind": "Status", "status": "Success"}, 201))
    await client.evict("p1", "ns", grace_period_seconds=30)
    assert fake_apiserver.requests[-1].body == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "p1", "namespace": "ns"},
        "deleteOptions": {"gracePeriodSeconds": 30},
    }


async def test_evict_blocked_by_a_disruption_budget_is_too_many_requests(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    def blocked() -> web.Response:
        r = status(
            429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."
        )
        r.headers["Retry-After"] = "7"
        return r

    fake_apiserver.reply("POST", "/api/v1/namespaces/ns/pods/p1/eviction", blocked)
    with pytest.raises(errors.TooManyRequests) as exc:
        await client.evict("p1", "ns")
    assert exc.value.retry_after == 7.0
    assert errors.is_too_many_requests(exc.value)
    assert errors.is_retriable(exc.value)


async def test_delete_sends_preconditions_and_returns_none_when_gone_at_once(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.reply("DELETE", "/api/v1/nodes/n1", lambda: obj({"kind": "Status", "status": "Success"}))
    assert (
        await client.delete(NODES, "n1", preconditions={"uid": "u1"}, propagation_policy="Background") is None
    )
    assert fake_apiserver.requests[-1].body == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": "u1"},
        "propagationPolicy": "Background",
    }


async def test_delete_returns_the_object_while_deletion_is_pending(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    pending = {"kind": "Pod", "metadata": {"name": "p", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    fake_apiserver.reply("DELETE", "/api/v1/namespaces/ns/pods/p", lambda: obj(pending))
    assert await client.delete(PODS, "p", "ns") == pending


@pytest.mark.parametrize(
    ("response", "expected", "predicate"),
    [
        (lambda: status(404, "NotFound"), errors.NotFound, errors.is_not_found),
        (lambda: status(409, "AlreadyExists"), errors.AlreadyExists, errors.is_already_exists),
        (
            lambda: status(409, "Conflict", "the object has been modified"),
            errors.Conflict,
            errors.is_conflict,
        ),
        (lambda: status(410, "Expired", "too old resource version"), errors.Gone, errors.is_gone),
        (lambda: status(403, "Forbidden"), errors.Forbidden, errors.is_forbidden),
        (lambda: status(401, "Unauthorized"), errors.Unauthorized, errors.is_unauthorized),
        (lambda: status(500, "InternalError"), errors.ServerError, errors.is_retriable),
        (lambda: status(504, "Timeout"), errors.KubeTimeout, errors.is_timeout),
        (
            lambda: web.Response(status=502, text="<html>bad gateway</html>"),
            errors.ServerError,
            errors.is_retriable,
        ),
        (lambda: status(415, "UnsupportedMediaType"), errors.UnsupportedMediaType, None),
    ],
)
async def test_non_2xx_answers_become_typed_errors(
    fake_apiserver: FakeApiServer,
    client: KubeClient,
    response: object,
    expected: type[errors.KubeError],
    predicate: object,
) -> None:
    fake_apiserver.reply("GET", "/api/v1/nodes/n1", response)  # type: ignore[arg-type]
    with pytest.raises(expected) as exc:
        await client.get(NODES, "n1")
    if callable(predicate):
        assert predicate(exc.value)
    assert not errors.is_not_found(exc.value) or expected is errors.NotFound


async def test_invalid_carries_the_field_causes(fake_apiserver: FakeApiServer, client: KubeClient) -> None:
    causes = [{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.minNodes"}]
    fake_apiserver.reply(
        "POST",
        "/apis/autoscaler.vpsie.com/v1alpha1/nodegroups",
        lambda: status(422, "Invalid", "NodeGroup is invalid", details={"causes": causes}),
    )
    with pytest.raises(errors.Invalid) as exc:
        await client.create(NODEGROUPS, {"metadata": {"name": "g"}})
    assert exc.value.causes == causes
    assert "422 Invalid: NodeGroup is invalid" in str(exc.value)


async def test_too_large_resource_version_is_recognised(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.reply(
        "GET",
        "/api/v1/nodes",
        lambda: status(
            504,
            "Timeout",
            "Too large resource version",
            details={
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
            },
        ),
    )
    with pytest.raises(errors.KubeError) as exc:
        await client.list(NODES, resource_version="999999")
    assert errors.is_too_large_resource_version(exc.value)


async def test_a_stalled_request_times_out_instead_of_hanging(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.on("GET", "/api/v1/nodes/n1", fake_apiserver.stall)
    with pytest.raises(errors.KubeTimeout):
        await client.get(NODES, "n1", request_timeout=0.2)


async def test_a_refused_connection_is_a_connection_error(registry: CollectorRegistry) -> None:
    server = FakeApiServer()
    url = await server.start()
    await server.stop()  # the port is now closed
    async with await KubeClient.connect(server=url, registry=registry) as c:
        with pytest.raises(errors.KubeConnectionError):
            await c.get(NODES, "n1")
    assert (
        registry.get_sample_value(
            "rest_client_requests_total",
            {"code": "<error>", "method": "GET", "host": url.removeprefix("http://")},
        )
        == 1.0
    )


async def test_requests_are_counted_by_code_and_method(
    fake_apiserver: FakeApiServer, client: KubeClient, registry: CollectorRegistry
) -> None:
    fake_apiserver.reply("GET", "/api/v1/nodes/n1", lambda: obj(NODE))
    await client.get(NODES, "n1")
    with pytest.raises(errors.NotFound):
        await client.get(NODES, "absent")
    labels = {"method": "GET", "host": client.host}
    assert registry.get_sample_value("rest_client_requests_total", {"code": "200", **labels}) == 1.0
    assert registry.get_sample_value("rest_client_requests_total", {"code": "404", **labels}) == 1.0


def _watch_stream(
    events: list[bytes], *, chunk: int = 7, hold: asyncio.Event | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        data = b"".join(events)
        for i in range(0, len(data), chunk):  # split events across chunks on purpose
            await resp.write(data[i : i + chunk])
        if hold is not None:
            await hold.wait()
        await resp.write_eof()
        return resp

    return handler


async def _collect(client: KubeClient, seen: list[str], *, timeout_seconds: int) -> None:
    async with aclosing(client.watch(NODES, resource_version="5", timeout_seconds=timeout_seconds)) as stream:
        async for e in stream:
            seen.append(e["type"])


def _event(kind: str, o: Mapping[str, object]) -> bytes:
    return orjson.dumps({"type": kind, "object": o}) + b"\n"


async def test_watch_streams_events_across_chunk_boundaries_and_sends_the_options(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    events = [
        _event("ADDED", NODE),
        _event("BOOKMARK", {"kind": "Node", "metadata": {"resourceVersion": "9"}}),
        _event("DELETED", NODE),
    ]
    fake_apiserver.on("GET", "/api/v1/nodes", _watch_stream(events))
    got = [e async for e in client.watch(NODES, resource_version="5", timeout_seconds=300)]
    assert [e["type"] for e in got] == ["ADDED", "BOOKMARK", "DELETED"]
    assert got[0]["object"] == NODE
    assert fake_apiserver.requests[-1].query == {
        "watch": "true",
        "resourceVersion": "5",
        "timeoutSeconds": "300",
        "allowWatchBookmarks": "true",
    }


async def test_watch_error_event_410_raises_gone(fake_apiserver: FakeApiServer, client: KubeClient) -> None:
    expired = {
        "kind": "Status",
        "code": 410,
        "reason": "Expired",
        "message": "too old resource version: 5 (9)",
    }
    fake_apiserver.on(
        "GET", "/api/v1/nodes", _watch_stream([_event("ADDED", NODE), _event("ERROR", expired)])
    )
    seen: list[str] = []
    with pytest.raises(errors.Gone):
        await _collect(client, seen, timeout_seconds=300)
    assert seen == ["ADDED"]


async def test_watch_on_a_silent_connection_times_out(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    # The server sends one event and then nothing, without closing: a half-open connection.
    fake_apiserver.on(
        "GET", "/api/v1/nodes", _watch_stream([_event("ADDED", NODE)], hold=fake_apiserver.release)
    )
    seen: list[str] = []
    with pytest.raises(errors.KubeTimeout):
        await _collect(client, seen, timeout_seconds=0)
    assert seen == ["ADDED"]


async def test_watch_refused_at_open_raises_the_typed_error(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.reply("GET", "/api/v1/nodes", lambda: status(403, "Forbidden"))
    with pytest.raises(errors.Forbidden):
        async for _ in client.watch(NODES, resource_version="1", timeout_seconds=300):
            pass


async def test_missing_kubeconfig_is_a_clear_error(tmp_path: object) -> None:
    from vpsie_autoscaler.kube.config import KubeConfigError

    with pytest.raises(KubeConfigError, match="does not exist"):
        await KubeClient.connect(kubeconfig="/nonexistent/kubeconfig")


async def test_delete_collection_sends_selectors_and_grace(
    fake_apiserver: FakeApiServer, client: KubeClient
) -> None:
    fake_apiserver.reply(
        "DELETE", "/api/v1/namespaces/ns/pods", lambda: obj({"kind": "PodList", "items": []})
    )
    await client.delete_collection(PODS, "ns", label_selector="app=x", grace_period_seconds=0)
    sent = fake_apiserver.requests[-1]
    assert sent.query == {"labelSelector": "app=x"}
    assert sent.body == {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
