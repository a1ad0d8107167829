"""A fake Sentry on 127.0.0.1: a DSN whose envelopes are recorded, so tests see exactly what the
official sentry-sdk would send (after ``before_send``), without any network.

    with FakeSentry() as sentry:
        init_sentry(sentry.dsn, ...)
        ...
        assert sentry.events()[0]["tags"]["controller"] == "nodegroup"

The server runs in its own thread and event loop, so synchronous end-to-end tests and asynchronous unit
tests use it alike. Envelopes are decoded (gzip or brotli, as sentry-sdk compresses them) and split
into items; :meth:`FakeSentry.raw` is every body received, decoded, for "this string was never sent"
assertions.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
import zlib
from types import TracebackType
from typing import Any

from aiohttp import web

PROJECT_ID = "42"
PUBLIC_KEY = "0123456789abcdef0123456789abcdef"


def _decode(body: bytes, encoding: str) -> bytes:
    """The envelope bytes: aiohttp already inflates gzip and deflate bodies, brotli needs a module."""
    if body.startswith(b"{"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found]  # only if sentry-sdk compressed with it

        return bytes(brotli.decompress(body))
    return body


def parse_envelope(data: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """The envelope header and its (item header, payload) pairs (Sentry's envelope format)."""
    header_line, _, rest = data.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item = json.loads(item_line)
        length = item.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:].removeprefix(b"\n")
        items.append((item, payload))
    return json.loads(header_line), items


class FakeSentry:
    """Records what sentry-sdk sends to :attr:`dsn`."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.items: list[tuple[dict[str, Any], bytes]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-sentry", daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.port}/{PROJECT_ID}"

    async def _envelope(self, request: web.Request) -> web.Response:
        data = _decode(await request.read(), request.headers.get("Content-Encoding", ""))
        _, items = parse_envelope(data)
        with self._lock:
            self.bodies.append(data)
            self.items.extend(items)
        return web.json_response({"id": "0" * 32})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post(f"/api/{PROJECT_ID}/envelope/", self._envelope)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the port picked for 0

    def __enter__(self) -> FakeSentry:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def events(self) -> list[dict[str, Any]]:
        """Every ``event`` item received so far, parsed."""
        with self._lock:
            return [json.loads(payload) for item, payload in self.items if item.get("type") == "event"]

    def raw(self) -> str:
        """Every envelope received so far, decoded, as one string."""
        with self._lock:
            return "\n".join(b.decode("utf-8", "replace") for b in self.bodies)
