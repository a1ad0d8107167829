"""One malformed VPSie list item never poisons a list: it is skipped and reported, the rest is used.

A tiny server answers fixed bodies, so each test says exactly what VPSie sent. ``data: null`` (or no
``data``) on a list call is an error, never an empty list: an empty list decides creations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer

from vpsie_autoscaler.vpsie import errors, models
from vpsie_autoscaler.vpsie.client import PENDING_VMS_PATH, VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.retry import RetryPolicy

CLUSTER = "a3f0c2d4-5b6e-11ef-9c1a-0050569c68dc"
VMS_PATH = "/apps/v2/vm"
CLUSTERS_PATH = "/apps/v2/k8s/cluster/all"
DETAIL_PATH = f"/apps/v2/k8s/cluster/byId/{CLUSTER}"
GROUPS_PATH = f"/apps/v2/k8s/node/groups/byClusterId/{CLUSTER}"
SECRET = "hunter2-do-not-log"
NOW = datetime(2026, 3, 1, tzinfo=UTC)

Bodies = dict[str, Any]


def vm(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": 90000 + n,
        "identifier": f"vm-{n}",
        "hostname": f"asg-general-{n:05d}",
        "is_active": 1,
        "power": 1,
        "created_on": "2026-02-03T08:41:02.000Z",
        "password": SECRET,  # a field the models ignore must never reach a log line either
        **fields,
    }


def node(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "id": 80000 + n,
        "identifier": f"node-{n}",
        "hostname": f"HEL-Kubernetes-49ab-slave-{n:04x}",
        "node_type": 2,
        "cpu": 4,
        "ram": 8192,
        "disk": 160,
        "created_on": "2026-02-01T17:03:10.000Z",
        **fields,
    }


def group(n: int, **fields: Any) -> dict[str, Any]:
    return {"id": 300 + n, "identifier": f"group-{n}", "group_name": f"GRP-{n}", "nodes_count": 1, **fields}


def cluster(n: int, **fields: Any) -> dict[str, Any]:
    return {
        "identifier": f"cluster-{n}",
        "cluster_name": f"HEL-{n}",
        "created_on": "2026-01-08 09:12:44",
        **fields,
    }


def pending(n: int, **data: Any) -> dict[str, Any]:
    return {"id": str(n), "data": {"hostname": f"asg-general-p{n:04d}", "processId": f"p-{n}", **data}}


@pytest.fixture
def bodies() -> Bodies:
    return {}


@pytest.fixture
async def client(bodies: Bodies) -> AsyncIterator[VPSieClient]:
    async def answer(request: web.Request) -> web.Response:
        body = bodies.get(request.path)
        if body is None:
            return web.json_response({"error": True, "code": 404, "message": "Not found"}, status=404)
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(body=raw, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    config = VPSieClientConfig(
        base_url=str(server.make_url("")).rstrip("/"), api_token="t", retry=RetryPolicy(max_retries=0)
    )
    async with VPSieClient(config) as c:
        yield c
    await server.close()


def skipped(client: VPSieClient, operation: str) -> float:
    value: float = client.metrics.malformed_items.labels(operation=operation)._value.get()
    return value


def malformed_events(events: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in events if e["event"] == "vpsie.malformed_item"]


# --- plain VMs --------------------------------------------------------------------------------------

BAD_VMS: dict[str, dict[str, Any]] = {
    "hostname null": vm(10, hostname=None),
    "hostname missing": {k: v for k, v in vm(11).items() if k != "hostname"},
    "hostname blank": vm(12, hostname="  "),
    "hostname with a newline": vm(13, hostname="asg-general-00013\n--anonymous-auth=true"),
    "hostname with a unicode line separator": vm(14, hostname="asg-general\u202800014"),
    "is_active null": vm(15, is_active=None),
    "power not a number": vm(16, power="on"),
    "non-numeric id": vm(17, id="ninety"),
    "identifier null": vm(18, identifier=None),
    "timestamp in no known form": vm(19, created_on="yesterday"),
    "cpu not a number": vm(20, cpu="four"),
}


async def test_malformed_vms_are_skipped_and_the_rest_is_used(client: VPSieClient, bodies: Bodies) -> None:
    good = [
        vm(1),
        vm(2, created_on="0000-00-00 00:00:00"),  # MySQL's zero date: "never", not an error
        vm(3, created_on="2026-02-03T08:41:02"),  # no offset: UTC
        vm(4, created_on="2026-02-03 08:41:02"),
        vm(5, id="90005", is_active="1", power="0", created_on=""),
        vm(6, state=5, category=None),  # text as a number, null in an optional field
    ]
    bodies[VMS_PATH] = {"error": False, "data": [good[0], *BAD_VMS.values(), *good[1:], None, "vm-7", 7]}
    with structlog.testing.capture_logs() as events:
        vms = await client.list_vms()
    assert [v.identifier for v in vms] == [f"vm-{n}" for n in range(1, 7)]
    assert [v.created_on for v in vms[:4]] == [
        datetime(2026, 2, 3, 8, 41, 2, tzinfo=UTC),
        None,
        datetime(2026, 2, 3, 8, 41, 2, tzinfo=UTC),
        datetime(2026, 2, 3, 8, 41, 2, tzinfo=UTC),
    ]
    assert (vms[4].id, vms[4].is_active, vms[4].power, vms[4].created_on) == (90005, 1, 0, None)
    assert vms[5].state == "5"
    reported = malformed_events(events)
    assert skipped(client, "list_vms") == len(BAD_VMS) + 3 == len(reported)
    assert all(e["operation"] == "list_vms" and e["log_level"] == "warning" for e in reported)
    # Each report names the item (identifier and id when they look like ids) and the field.
    by_identifier = {e.get("identifier"): e for e in reported}
    assert by_identifier["vm-10"]["id"] == "90010"
    assert "hostname" in by_identifier["vm-10"]["problem"]
    assert "is_active" in by_identifier["vm-15"]["problem"]
    assert "created_on" in by_identifier["vm-19"]["problem"]
    assert "id" not in by_identifier["vm-17"], "a non-numeric id is not an id to show"
    assert not any("identifier" in e for e in reported if e["problem"].startswith("item is a"))
    # No other value of the item reaches the log: not the secret, not the hostile hostname.
    blob = repr(reported)
    assert SECRET not in blob
    assert "anonymous-auth" not in blob
    assert "yesterday" not in blob
    assert "ninety" not in blob


async def test_a_well_formed_list_reports_nothing(client: VPSieClient, bodies: Bodies) -> None:
    bodies[VMS_PATH] = {"error": False, "data": [vm(1), vm(2)]}
    with structlog.testing.capture_logs() as events:
        assert len(await client.list_vms()) == 2
    assert not malformed_events(events)
    assert skipped(client, "list_vms") == 0


async def test_an_identifier_that_does_not_look_like_one_is_not_echoed(
    client: VPSieClient, bodies: Bodies
) -> None:
    bodies[VMS_PATH] = {"error": False, "data": [vm(1, identifier="x\n--flag $(curl evil)", hostname=None)]}
    with structlog.testing.capture_logs() as events:
        assert await client.list_vms() == []
    [event] = malformed_events(events)
    assert "identifier" not in event
    assert event["id"] == "90001"
    assert "curl" not in repr(event)


async def test_malformed_pending_vms_are_skipped(client: VPSieClient, bodies: Bodies) -> None:
    bodies[PENDING_VMS_PATH] = {
        "error": False,
        "data": [
            pending(1),
            {"id": "2", "data": None},
            {"id": "3"},
            pending(4, hostname=None),
            pending(5, hostname=""),
            {"id": "6", "data": {"hostname": 17}},
            pending(7),
        ],
    }
    assert [p.data.hostname for p in await client.list_pending_vms()] == [
        "asg-general-p0001",
        "asg-general-p0007",
    ]
    assert skipped(client, "list_pending_vms") == 5


# --- managed Kubernetes -----------------------------------------------------------------------------


async def test_malformed_cluster_nodes_are_skipped(client: VPSieClient, bodies: Bodies) -> None:
    nodes = [
        node(1),
        node(2, hostname=None),
        node(3, hostname=""),
        node(4, id="x12"),
        node(5, cpu="lots"),
        node(6, created_on="0000-00-00 00:00:00"),
        node(7, created_on="2026-02-01T17:03:10.000"),
        node(8, identifier=None),  # the SDK shape has no identifier: not an error
        "not-a-node",
    ]
    bodies[DETAIL_PATH] = {"error": False, "data": {**cluster(1, identifier=CLUSTER), "nodes": nodes}}
    with structlog.testing.capture_logs() as events:
        detail = await client.get_k8s_cluster(CLUSTER)
    assert detail.identifier == CLUSTER
    assert [n.id for n in detail.nodes] == [80001, 80006, 80007, 80008]
    assert detail.nodes[1].created_on is None
    assert detail.nodes[2].created_on == datetime(2026, 2, 1, 17, 3, 10, tzinfo=UTC)
    assert skipped(client, "get_k8s_cluster") == 5
    reported = malformed_events(events)
    assert {e.get("identifier") for e in reported} == {"node-2", "node-3", "node-4", "node-5", None}


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, errors.InvalidResponse),
        (False, errors.NotFound),
        ({**cluster(1, identifier=CLUSTER)}, errors.InvalidResponse),  # no nodes: nothing is known
        ({**cluster(1, identifier=CLUSTER), "nodes": None}, errors.InvalidResponse),
        ({**cluster(1, identifier=None), "nodes": [node(1)]}, errors.InvalidResponse),
        (
            {**cluster(1, identifier=CLUSTER), "nodes": [node(1, hostname=None)], "count": "x"},
            errors.InvalidResponse,
        ),
    ],
    ids=[
        "data null",
        "data false",
        "nodes missing",
        "nodes null",
        "cluster malformed",
        "cluster and node malformed",
    ],
)
async def test_a_cluster_detail_that_says_nothing_about_nodes_is_an_error(
    client: VPSieClient, bodies: Bodies, data: Any, error: type[Exception]
) -> None:
    bodies[DETAIL_PATH] = {"error": False, "data": data}
    with pytest.raises(error):
        await client.get_k8s_cluster(CLUSTER)


async def test_malformed_node_groups_are_skipped(client: VPSieClient, bodies: Bodies) -> None:
    bodies[GROUPS_PATH] = {
        "error": False,
        "data": [
            group(1),
            group(2, id="abc"),
            group(3, id=None),
            group(4, nodes_count=None),
            group(5, nodes_count="three"),
            group(6, group_name=None),  # names are cosmetic: kept as ""
            group(7, created_on="0000-00-00 00:00:00", is_active=None),
        ],
    }
    groups = await client.list_node_groups(CLUSTER)
    assert [(g.id, g.group_name) for g in groups] == [(301, "GRP-1"), (306, ""), (307, "GRP-7")]
    assert groups[2].created_on is None
    assert skipped(client, "list_node_groups") == 4


async def test_malformed_clusters_are_skipped(client: VPSieClient, bodies: Bodies) -> None:
    bodies[CLUSTERS_PATH] = {
        "error": False,
        "data": [
            cluster(1),
            cluster(2, identifier=None),
            cluster(3, identifier=""),
            cluster(4, cluster_name=None),
        ],
    }
    clusters = await client.list_k8s_clusters()
    assert [(c.identifier, c.cluster_name) for c in clusters] == [("cluster-1", "HEL-1"), ("cluster-4", "")]
    assert clusters[0].created_on == datetime(2026, 1, 8, 9, 12, 44, tzinfo=UTC)
    assert skipped(client, "list_k8s_clusters") == 2


# --- data: null is never an empty list ----------------------------------------------------------------

LIST_CALLS: dict[str, tuple[str, Callable[[VPSieClient], Awaitable[object]]]] = {
    "list_vms": (VMS_PATH, lambda c: c.list_vms()),
    "list_pending_vms": (PENDING_VMS_PATH, lambda c: c.list_pending_vms()),
    "list_node_groups": (GROUPS_PATH, lambda c: c.list_node_groups(CLUSTER)),
    "list_k8s_clusters": (CLUSTERS_PATH, lambda c: c.list_k8s_clusters()),
    "list_datacenters": ("/apps/v2/datacenter", lambda c: c.list_datacenters()),
}


@pytest.mark.parametrize("operation", list(LIST_CALLS))
@pytest.mark.parametrize(
    "body",
    [
        {"error": False, "data": None},
        {"error": False},
        {"error": False, "data": False},
        {"error": False, "data": {"rows": []}},
        b"[]",
    ],
    ids=["data null", "data missing", "data false", "data an object", "no envelope"],
)
async def test_a_list_call_without_a_list_is_an_error_not_an_empty_list(
    client: VPSieClient, bodies: Bodies, operation: str, body: Any
) -> None:
    path, call = LIST_CALLS[operation]
    bodies[path] = body
    with pytest.raises(errors.InvalidResponse) as exc:
        await call(client)
    assert exc.value.operation == operation
    assert skipped(client, operation) == 0


@pytest.mark.parametrize("operation", list(LIST_CALLS))
async def test_an_empty_list_is_an_empty_list(client: VPSieClient, bodies: Bodies, operation: str) -> None:
    path, call = LIST_CALLS[operation]
    bodies[path] = {"error": False, "data": []}
    assert await call(client) == []


# --- every datetime is timezone-aware ------------------------------------------------------------------

TIMESTAMPS = [
    "2026-02-03T08:41:02.000Z",
    "2026-02-03T08:41:02",
    "2026-02-03T08:41:02.123456",
    "2026-02-03 08:41:02",
    "2026-02-03 08:41:02.5",
    "2026-02-03T10:41:02+02:00",
    "2026-02-03",
    1770108062,
    "1770108062",
]


@pytest.mark.parametrize("created_on", TIMESTAMPS)
async def test_every_timestamp_is_aware_and_compares_with_the_clock(
    client: VPSieClient, bodies: Bodies, created_on: object
) -> None:
    bodies[VMS_PATH] = {"error": False, "data": [vm(1, created_on=created_on)]}
    bodies[DETAIL_PATH] = {"error": False, "data": {**cluster(1), "nodes": [node(1, created_on=created_on)]}}
    bodies[GROUPS_PATH] = {"error": False, "data": [group(1, created_on=created_on)]}
    bodies[CLUSTERS_PATH] = {"error": False, "data": [cluster(1, created_on=created_on)]}
    stamps = [
        (await client.list_vms())[0].created_on,
        (await client.get_k8s_cluster(CLUSTER)).nodes[0].created_on,
        (await client.get_k8s_cluster(CLUSTER)).created_on,
        (await client.list_node_groups(CLUSTER))[0].created_on,
        (await client.list_k8s_clusters())[0].created_on,
    ]
    for stamp in stamps:
        assert stamp is not None
        assert stamp.tzinfo is not None
        assert NOW - stamp > (NOW - NOW)  # subtracting from an aware "now" never raises TypeError
        assert stamp.utcoffset() is not None


async def test_providers_age_instances_from_naive_vpsie_timestamps(
    client: VPSieClient, bodies: Bodies
) -> None:
    from vpsie_autoscaler.vpsie.provider import VMSource
    from vpsie_autoscaler.vpsie.vms import VMProvider

    bodies[PENDING_VMS_PATH] = {"error": False, "data": []}
    bodies[VMS_PATH] = {
        "error": False,
        "data": [
            vm(1, created_on="2026-02-03 08:41:02"),
            vm(2, created_on="2026-02-03T08:41:02"),
            vm(3, hostname=None),
        ],
    }
    source = VMSource(
        hostname_prefix="asg-general-",
        suffix_length=5,
        resource_identifier="r",
        os_identifier="o",
        dc_identifier="d",
        project_identifier="p",
    )
    instances = await VMProvider(client).list(source)
    assert len(instances) == 2
    for instance in instances:
        assert instance.created_at is not None
        assert (NOW - instance.created_at).days == 25


def test_models_never_produce_a_naive_datetime() -> None:
    stamped: list[
        tuple[type[models.VM | models.K8sNode | models.K8sNodeGroup | models.K8sCluster], dict[str, object]]
    ] = [
        (models.VM, {"identifier": "v", "hostname": "h"}),
        (models.K8sNode, {"hostname": "h"}),
        (models.K8sNodeGroup, {"id": 1, "group_name": "g"}),
        (models.K8sCluster, {"identifier": "c"}),
    ]
    for model, base in stamped:
        for created_on in TIMESTAMPS:
            stamp = model.model_validate({**base, "created_on": created_on}).created_on
            assert stamp is not None, (model.__name__, created_on)
            assert stamp.tzinfo is not None, (model.__name__, created_on)
