"""A tiny in-process HTTP server speaking the apiserver's shapes, for faults the real one cannot
produce on demand: stalled connections, 429/5xx answers, forced 410s, malformed bodies.

Each test registers handlers for ``(method, path)``; every request is recorded (method, path,
query, headers, body) so tests can assert what the client actually sent.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVER_KEY: web.AppKey[FakeApiServer] = web.AppKey("server")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def status(code: int, reason: str, message: str = "", **extra: Any) -> web.Response:
    """A ``Status`` error body as kube-apiserver sends it."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason}
    body["message"] = message or reason
    body.update(extra)
    return web.Response(status=code, body=orjson.dumps(body), content_type="application/json")


def obj(data: dict[str, Any], code: int = 200) -> web.Response:
    return web.Response(status=code, body=orjson.dumps(data), content_type="application/json")


@dataclass
class FakeApiServer:
    handlers: dict[tuple[str, str], Handler] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    # Set to release every handler that is stalling on it (lets tests end cleanly).
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.handlers[(method, path)] = handler

    def reply(self, method: str, path: str, response: Callable[[], web.StreamResponse]) -> None:
        async def handler(_: web.Request) -> web.StreamResponse:
            return response()

        self.on(method, path, handler)

    async def stall(self, _: web.Request) -> web.StreamResponse:
        """A handler that never answers until the test ends."""
        await self.release.wait()
        return web.Response(status=503)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        self.requests.append(
            Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        handler = self.handlers.get((request.method, request.path))
        if handler is None:
            return status(404, "NotFound", f"no handler for {request.method} {request.path}")
        return await handler(request)

    async def start(self) -> str:
        app = web.Application()
        app[SERVER_KEY] = self
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


def list_body(items: list[dict[str, Any]], rv: str, continue_: str | None = None) -> web.Response:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if continue_:
        meta["continue"] = continue_
    return obj({"kind": "List", "apiVersion": "v1", "metadata": meta, "items": items})


WatchScript = Callable[[web.Request], Awaitable[web.StreamResponse]]


def watch_events(events: list[tuple[str, dict[str, Any]]], *, then: str = "close") -> WatchScript:
    """A watch answer: stream ``events`` then ``close`` (server timeout), ``drop`` (broken TCP)
    or ``hold`` (silent, open connection until the test ends)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for kind, o in events:
            await resp.write(orjson.dumps({"type": kind, "object": o}) + b"\n")
        if then == "drop":
            assert request.transport is not None
            request.transport.close()
            return resp
        if then == "hold":
            server = request.app[SERVER_KEY]
            await server.release.wait()
        await resp.write_eof()
        return resp

    return handler


class ListWatch:
    """Scripted LIST and WATCH answers for one collection path, consumed in order.

    When the scripts run out, LISTs and WATCHes stall (an idle but healthy connection).
    """

    def __init__(self, server: FakeApiServer, path: str) -> None:
        self.server = server
        self.lists: list[Callable[[web.Request], Awaitable[web.StreamResponse]] | web.Response] = []
        self.watches: list[WatchScript | web.Response] = []
        self.list_queries: list[dict[str, str]] = []
        self.watch_queries: list[dict[str, str]] = []
        server.on("GET", path, self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        is_watch = request.query.get("watch") == "true"
        (self.watch_queries if is_watch else self.list_queries).append(dict(request.query))
        scripts = self.watches if is_watch else self.lists
        if not scripts:
            return await self.server.stall(request)
        script = scripts.pop(0)
        if isinstance(script, web.Response):
            return script
        return await script(request)


class FakeLeases:
    """An in-memory ``coordination.k8s.io/v1`` Lease endpoint with resourceVersion checks (409),
    plus switches to fail requests, for leader-election tests."""

    def __init__(self, server: FakeApiServer, namespace: str) -> None:
        self.server = server
        self.namespace = namespace
        self.leases: dict[str, dict[str, Any]] = {}
        self.rv = 0
        self.fail_with: int | None = None  # answer every request with this status
        self.conflicts_to_inject = 0  # answer the next N PUTs with 409
        self.puts: list[dict[str, Any]] = []
        base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        server.on("POST", base, self._create)
        server.on("GET", base, server.stall)  # the standby's watch: idle
        self._base = base

    def watch_path(self, name: str) -> str:
        return f"{self._base}/{name}"

    def register(self, name: str) -> None:
        path = f"{self._base}/{name}"
        self.server.on("GET", path, self._get)
        self.server.on("PUT", path, self._put)

    def put_lease(self, name: str, spec: dict[str, Any]) -> None:
        self.rv += 1
        self.leases[name] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": self.namespace, "resourceVersion": str(self.rv)},
            "spec": spec,
        }
        self.register(name)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        if self.fail_with:
            return status(self.fail_with, "InternalError")
        body = await request.json()
        name = body["metadata"]["name"]
        if name in self.leases:
            return status(409, "AlreadyExists")
        self.put_lease(name, body["spec"])
        return obj(self.leases[name], 201)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if self.fail_with:
            return status(self.fail_with, "InternalError")
        name = request.match_info.get("tail", "").rsplit("/", 1)[-1]
        if name not in self.leases:
            return status(404, "NotFound")
        return obj(self.leases[name])

    async def _put(self, request: web.Request) -> web.StreamResponse:
        if self.fail_with:
            return status(self.fail_with, "InternalError")
        body = await request.json()
        self.puts.append(body)
        name = body["metadata"]["name"]
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            return status(409, "Conflict", "the object has been modified")
        current = self.leases.get(name)
        if current is None:
            return status(404, "NotFound")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return status(409, "Conflict", "the object has been modified")
        self.put_lease(name, body["spec"])
        return obj(self.leases[name])
