"""A fault-injecting HTTP proxy in front of the real kube-apiserver, for the faults the real server
will not produce on demand: watch connections dropped mid-stream, watches that stall, and a forced
410 Expired on a watch.

The proxy speaks plain HTTP on 127.0.0.1 and talks TLS with the admin client certificate upstream,
so the client under test connects with ``KubeClient.connect(server=proxy.url)``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web

PASS_HEADERS = ("Content-Type", "Accept")


def ssl_context_from_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext]:
    """The server URL and an SSL context with the current context's CA and client certificate."""
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    ctx_name = doc["current-context"]
    context = next(c["context"] for c in doc["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in doc["users"] if u["name"] == context["user"])
    ctx = ssl.create_default_context(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    with tempfile.TemporaryDirectory(prefix="kube-proxy-") as tmp:
        cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
    return str(cluster["server"]), ctx


class KubeProxy:
    def __init__(self, kubeconfig: Path) -> None:
        self.upstream, self._ssl = ssl_context_from_kubeconfig(kubeconfig)
        self.url = ""
        self.lists: list[dict[str, str]] = []
        self.watches: list[dict[str, str]] = []
        self._gate = asyncio.Event()
        self._gate.set()
        self._gone_on_release = False
        self._active: set[asyncio.BaseTransport] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def open_watches(self) -> int:
        """Watches currently streaming from the apiserver (established, not just requested)."""
        return len(self._active)

    # -- fault switches ---------------------------------------------------------------------------

    def hold_watches(self) -> None:
        """New watch requests wait (silently, connection open) until :meth:`release_watches`."""
        self._gate.clear()

    def drop_watches(self) -> int:
        """Break every open watch connection (TCP close mid-stream); returns how many."""
        dropped = len(self._active)
        for transport in list(self._active):
            transport.close()
        self._active.clear()
        return dropped

    def release_watches(self, *, gone: bool = False) -> None:
        """Let held watches through; with ``gone`` they are answered with a 410 Expired event instead."""
        self._gone_on_release = gone
        self._gate.set()

    # -- server -----------------------------------------------------------------------------------

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        self._gate.set()
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("true", "1"):
            self.watches.append(dict(request.query))
            return await self._watch(request)
        if request.method == "GET":
            self.lists.append({"path": request.path, **request.query})
        assert self._session is not None
        body = await request.read()
        headers = {h: request.headers[h] for h in PASS_HEADERS if h in request.headers}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as up:
            data = await up.read()
            return web.Response(status=up.status, body=data, headers={"Content-Type": up.headers.get(
                "Content-Type", "application/json")})  # fmt: skip

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        await self._gate.wait()
        if self._gone_on_release:
            self._gone_on_release = False
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 410,
                "reason": "Expired",
                "message": "too old resource version (forced by the test proxy)",
            }
            await resp.write(orjson.dumps({"type": "ERROR", "object": status}) + b"\n")
            await resp.write_eof()
            return resp
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with self._session.get(self.upstream + request.path_qs, timeout=timeout) as up:
            resp = web.StreamResponse(status=up.status, headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            transport = request.transport
            if transport is not None:
                self._active.add(transport)
            try:
                async for chunk in up.content.iter_any():
                    if transport is None or transport.is_closing():
                        break
                    await resp.write(chunk)
            except (ConnectionError, aiohttp.ClientError):
                pass
            finally:
                if transport is not None:
                    self._active.discard(transport)
            return resp
