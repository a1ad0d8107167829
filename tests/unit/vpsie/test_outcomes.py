"""Typed outcomes of failed calls: did the request reach VPSie?

``request_may_have_reached_vpsie`` decides whether a non-idempotent call (add-node, create, reduce) may
have happened after all. The rule: a cloud call whose answer was lost may have happened, unknown counts
as sent. These tests pin the verdict for every failure, first on exception values, then against real
aiohttp behaviour: a local server that drops the connection, answers an HTML 502, a 504, an HTTP 200
with ``error: true``, a 429, a 200 that is not JSON, never answers; and a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from tests.support.vpsie import drive
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors as vpsie_errors
from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.errors import request_may_have_reached_vpsie
from vpsie_autoscaler.vpsie.retry import RetryPolicy

CLUSTER = "c-1"
GROUP_ID = 7
ADD_NODE_PATH = f"/apps/v2/k8s/cluster/byId/{CLUSTER}/add/slave/group/{GROUP_ID}"
OK = b'{"error": false, "data": []}'


def cancelled(sent: bool | None) -> asyncio.CancelledError:
    exc = asyncio.CancelledError()
    if sent is not None:
        vpsie_errors.mark_request_sent(exc, sent)
    return exc


def timeout_from(cause: BaseException) -> TimeoutError:
    exc = TimeoutError()
    exc.__cause__ = cause
    return exc


def retried(exc: vpsie_errors.VPSieError) -> vpsie_errors.VPSieError:
    """A refusal that ended a retried call an earlier attempt of which may have reached VPSie."""
    exc.sent = True
    return exc


# --- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        # provably not acted on
        (vpsie_errors.CircuitOpen("open", retry_after=3), False),
        (cancelled(sent=False), False),  # cancelled while waiting for the rate limiter
        (timeout_from(cancelled(sent=False)), False),  # asyncio.timeout() around that wait
        (vpsie_errors.ConnectionFailed("cannot connect: ClientConnectorError"), False),
        (vpsie_errors.Unauthorized("please authenticate", status=401), False),
        (vpsie_errors.Unauthorized("forbidden", status=403), False),
        (vpsie_errors.RateLimited("slow down", retry_after=5, status=429), False),
        (vpsie_errors.NotFound("not found", status=404), False),
        (
            vpsie_errors.BusinessRuleError("Resource is locked", status=200),
            False,
        ),  # HTTP 200 with error: true
        (vpsie_errors.BusinessRuleError("Worker nodes count exceeds the allowed limit", status=422), False),
        (vpsie_errors.DuplicateGroupSize("Group G has same selected Size", status=200), False),
        (vpsie_errors.InstanceNotReady("still pending"), False),
        # unknown: counts as sent
        (vpsie_errors.InvalidResponse("response is not the JSON envelope", status=200), True),
        (vpsie_errors.VPSieTimeout("no answer within 30s"), True),
        (vpsie_errors.ServerError("HTTP 502 with a non-JSON body", status=502), True),
        (vpsie_errors.ServerError("HTTP 504 with a non-JSON body", status=504), True),
        (vpsie_errors.ServerError("transport error: ServerDisconnectedError"), True),
        (vpsie_errors.VPSieError("something"), True),
        (cancelled(sent=None), True),  # cancelled, nobody knows where
        (cancelled(sent=True), True),  # cancelled while the request was in flight
        (timeout_from(cancelled(sent=None)), True),
        (TimeoutError(), True),
        (RuntimeError("a bug"), True),
        (retried(vpsie_errors.RateLimited("slow down", status=429)), True),
        (retried(vpsie_errors.CircuitOpen("open", retry_after=1)), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_verdict_table(exc: BaseException, verdict: bool) -> None:
    assert request_may_have_reached_vpsie(exc) is verdict


def test_connection_failed_is_a_transient_server_error() -> None:
    exc = vpsie_errors.ConnectionFailed("x")
    assert vpsie_errors.is_server_error(exc)
    assert vpsie_errors.is_transient(exc)
    assert exc.sent is False


def test_the_docstring_names_the_rule() -> None:
    doc = request_may_have_reached_vpsie.__doc__ or ""
    assert "a cloud call whose answer was lost may have happened: unknown counts as sent" in doc


# --- real aiohttp behaviour ------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakeVPSie:
    """A local HTTP server whose answer each test chooses; records every request it read."""

    behaviours: list[Handler] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.requests.append(f"{request.method} {request.path}")
        self.arrived.set()
        index = min(len(self.requests), len(self.behaviours)) - 1
        if index < 0:
            return web.Response(body=OK, content_type="application/json")
        return await self.behaviours[index](request)


def json_answer(status: int, body: bytes = OK, headers: dict[str, str] | None = None) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)

    return answer


def html_answer(status: int) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        page = f"<html><body><h1>{status} Gateway error</h1></body></html>"
        return web.Response(status=status, text=page, content_type="text/html")

    return answer


async def never_answer(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def close_after_reading(request: web.Request) -> web.StreamResponse:
    """The request was read completely, then the connection goes away without an answer."""
    assert request.transport is not None
    request.transport.close()
    await asyncio.Event().wait()  # the handler is cancelled when the connection closes
    raise AssertionError("unreachable")


async def reset_after_reading(request: web.Request) -> web.StreamResponse:
    """As above, but with a TCP reset (SO_LINGER 0) instead of an orderly close."""
    assert request.transport is not None
    sock = request.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    request.transport.abort()
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.fixture
async def vpsie() -> AsyncIterator[tuple[FakeVPSie, str]]:
    fake = FakeVPSie()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def make_client(base_url: str, clock: FakeClock | None = None, **overrides: Any) -> VPSieClient:
    settings: dict[str, Any] = {"base_url": base_url, "api_token": "t0ken"}
    settings.update(overrides)
    return VPSieClient(
        VPSieClientConfig(**settings),
        clock=clock or FakeClock(),
        rng=random.Random(1),
        registry=CollectorRegistry(),
    )


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("behaviour", "raised", "verdict"),
    [
        pytest.param(close_after_reading, vpsie_errors.ServerError, True, id="closed-after-reading"),
        pytest.param(reset_after_reading, vpsie_errors.ServerError, True, id="reset-after-reading"),
        pytest.param(html_answer(502), vpsie_errors.ServerError, True, id="html-502"),
        pytest.param(html_answer(504), vpsie_errors.ServerError, True, id="html-504"),
        pytest.param(
            json_answer(504, b'{"error": true, "message": "Gateway Timeout"}'), vpsie_errors.ServerError, True
        ),
        pytest.param(
            json_answer(500, b'{"error": true, "message": "boom"}'), vpsie_errors.ServerError, True, id="500"
        ),
        pytest.param(
            json_answer(200, b'{"error": true, "message": "Resource is locked"}'),
            vpsie_errors.BusinessRuleError,
            False,
            id="200-error-true",
        ),
        pytest.param(
            json_answer(429, b'{"error": true, "message": "Too many"}', {"Retry-After": "2"}),
            vpsie_errors.RateLimited,
            False,
            id="429",
        ),
        pytest.param(
            json_answer(401, b'{"error": true, "message": "nope"}'),
            vpsie_errors.Unauthorized,
            False,
            id="401",
        ),
        pytest.param(
            json_answer(404, b'{"error": true, "message": "no"}'), vpsie_errors.NotFound, False, id="404"
        ),
        pytest.param(
            json_answer(200, b"<html>ok</html>"), vpsie_errors.InvalidResponse, True, id="200-not-json"
        ),
    ],
)
async def test_add_node_failure_type_and_verdict(
    vpsie: tuple[FakeVPSie, str], behaviour: Handler, raised: type[vpsie_errors.VPSieError], verdict: bool
) -> None:
    fake, url = vpsie
    fake.behaviours = [behaviour]
    async with make_client(url) as client:
        with pytest.raises(raised) as exc:
            await client.add_node(CLUSTER, GROUP_ID)
    assert type(exc.value) is raised
    assert request_may_have_reached_vpsie(exc.value) is verdict
    assert fake.requests == [f"POST {ADD_NODE_PATH}"]  # reached the server once, never repeated


async def test_connection_refused_is_connection_failed_and_not_sent() -> None:
    async with make_client(f"http://127.0.0.1:{unused_port()}") as client:
        with pytest.raises(vpsie_errors.ConnectionFailed) as exc:
            await client.add_node(CLUSTER, GROUP_ID)
    assert request_may_have_reached_vpsie(exc.value) is False
    assert client.metrics.requests.labels(operation="add_node", code="transport")._value.get() == 1


async def test_no_answer_within_the_timeout_may_have_reached_vpsie(vpsie: tuple[FakeVPSie, str]) -> None:
    fake, url = vpsie
    fake.behaviours = [never_answer]
    async with make_client(url, request_timeout=0.05) as client:
        with pytest.raises(vpsie_errors.VPSieTimeout) as exc:
            await client.add_node(CLUSTER, GROUP_ID)
    assert request_may_have_reached_vpsie(exc.value) is True


async def test_an_open_circuit_refuses_without_calling(vpsie: tuple[FakeVPSie, str]) -> None:
    fake, url = vpsie
    async with make_client(url, breaker_failure_threshold=1) as client:
        client.breaker.record_failure()
        with pytest.raises(vpsie_errors.CircuitOpen) as exc:
            await client.add_node(CLUSTER, GROUP_ID)
    assert request_may_have_reached_vpsie(exc.value) is False
    assert fake.requests == []


class RaisingSession:
    """An aiohttp session stand-in whose request fails with a given aiohttp exception."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def request(self, *args: object, **kwargs: object) -> RaisingSession:
        return self

    async def __aenter__(self) -> None:
        raise self.exc

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def close(self) -> None:
        return None


_KEY: Any = SimpleNamespace(host="api.vpsie.com", port=443, ssl=True)


@pytest.mark.parametrize(
    ("aiohttp_error", "raised", "verdict"),
    [
        (
            aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "refused")),
            vpsie_errors.ConnectionFailed,
            False,
        ),
        (
            aiohttp.ClientConnectorDNSError(_KEY, OSError(-2, "Name or service not known")),
            vpsie_errors.ConnectionFailed,
            False,
        ),
        (aiohttp.ConnectionTimeoutError("connect"), vpsie_errors.ConnectionFailed, False),
        (aiohttp.ServerDisconnectedError(), vpsie_errors.ServerError, True),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), vpsie_errors.ServerError, True),
        (aiohttp.ClientPayloadError("Response payload is not completed"), vpsie_errors.ServerError, True),
        (aiohttp.SocketTimeoutError("read"), vpsie_errors.VPSieTimeout, True),
        (TimeoutError(), vpsie_errors.VPSieTimeout, True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else getattr(v, "__name__", str(v)),
)
async def test_aiohttp_failures_map_to_typed_errors(
    aiohttp_error: BaseException, raised: type[vpsie_errors.VPSieError], verdict: bool
) -> None:
    config = VPSieClientConfig(api_token="t0ken")
    client = VPSieClient(
        config,
        clock=FakeClock(),
        registry=CollectorRegistry(),
        session=RaisingSession(aiohttp_error),  # type: ignore[arg-type]
    )
    with pytest.raises(raised) as exc:
        await client.add_node(CLUSTER, GROUP_ID)
    assert type(exc.value) is raised
    assert request_may_have_reached_vpsie(exc.value) is verdict


# --- cancellation ----------------------------------------------------------------------------------


async def parked(clock: FakeClock) -> None:
    """Wait (in real time, briefly) until the code under test sleeps on ``clock``."""
    for _ in range(2000):
        if clock.sleepers:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("nothing sleeps on the clock")


async def verdict_of_cancel(call: Awaitable[object]) -> bool:
    """Run ``call``; once cancelled, the verdict on the CancelledError as a caller in the task sees it."""
    try:
        await call
    except asyncio.CancelledError as exc:
        return request_may_have_reached_vpsie(exc)  # the task ends here: the test cancelled it
    raise AssertionError("the call was not cancelled")


async def test_cancel_while_waiting_for_the_rate_limiter_was_not_sent(vpsie: tuple[FakeVPSie, str]) -> None:
    fake, url = vpsie
    clock = FakeClock()
    async with make_client(url, clock, rate_limit_per_minute=1, rate_limit_burst=1) as client:
        await client.add_node(CLUSTER, GROUP_ID)  # takes the only token
        task = asyncio.ensure_future(verdict_of_cancel(client.add_node(CLUSTER, GROUP_ID)))
        await parked(clock)
        task.cancel()
        assert await task is False
    assert fake.requests == [f"POST {ADD_NODE_PATH}"]


async def test_cancel_while_the_request_is_in_flight_may_have_reached_vpsie(
    vpsie: tuple[FakeVPSie, str],
) -> None:
    fake, url = vpsie
    fake.behaviours = [never_answer]
    async with make_client(url) as client:
        task = asyncio.ensure_future(verdict_of_cancel(client.add_node(CLUSTER, GROUP_ID)))
        await fake.arrived.wait()
        task.cancel()
        assert await task is True
        assert client.breaker.state.value == "closed"  # a cancel says nothing about VPSie's health


async def test_cancel_during_a_retry_back_off_after_a_5xx_may_have_reached_vpsie(
    vpsie: tuple[FakeVPSie, str],
) -> None:
    fake, url = vpsie
    fake.behaviours = [html_answer(502)]
    clock = FakeClock()
    async with make_client(url, clock) as client:
        task = asyncio.ensure_future(verdict_of_cancel(client.list_datacenters()))
        await parked(clock)
        task.cancel()
        assert await task is True


async def test_a_retried_read_that_ends_refused_keeps_the_earlier_attempts_verdict(
    vpsie: tuple[FakeVPSie, str],
) -> None:
    fake, url = vpsie
    too_long = {"Retry-After": "600"}  # beyond the retry policy: handed to the caller
    fake.behaviours = [html_answer(502), json_answer(429, b'{"error": true, "message": "x"}', too_long)]
    clock = FakeClock()
    async with make_client(url, clock) as client:
        with pytest.raises(vpsie_errors.RateLimited) as exc:
            await drive(clock, client.list_datacenters())
    assert request_may_have_reached_vpsie(exc.value) is True
    assert len(fake.requests) == 2


# --- non-idempotent calls are never retried --------------------------------------------------------


VM = VMCreate(
    resource_identifier="r",
    os_identifier="o",
    dc_identifier="d",
    hostname="asg-1",
    project_identifier="p",
)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda c: c.add_node(CLUSTER, GROUP_ID), f"POST {ADD_NODE_PATH}"),
        (lambda c: c.create_vm(VM), "POST /apps/v2/vm"),
        (
            lambda c: c.reduce_group(CLUSTER, GROUP_ID),
            f"DELETE /apps/v2/k8s/cluster/byId/{CLUSTER}/reduce/slave",
        ),
        (lambda c: c.create_node_group(CLUSTER, "g", 3), "POST /apps/v2/k8s/cluster/add/group"),
    ],
    ids=["add_node", "create_vm", "reduce_group", "create_node_group"],
)
@pytest.mark.parametrize(
    "failure",
    [
        html_answer(502),
        json_answer(429, b'{"error": true, "message": "x"}', {"Retry-After": "1"}),
        close_after_reading,
    ],
    ids=["502", "429", "closed"],
)
async def test_non_idempotent_calls_are_sent_once(
    vpsie: tuple[FakeVPSie, str],
    call: Callable[[VPSieClient], Awaitable[object]],
    expected: str,
    failure: Handler,
) -> None:
    fake, url = vpsie
    fake.behaviours = [failure, json_answer(200)]
    clock = FakeClock()
    async with make_client(url, clock, retry=RetryPolicy(max_retries=5)) as client:
        with pytest.raises(vpsie_errors.VPSieError):
            await drive(clock, call(client))
    assert fake.requests == [expected]
