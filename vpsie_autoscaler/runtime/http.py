"""The process's HTTP endpoints: ``/metrics`` on one listener, ``/healthz`` and ``/readyz`` on another.

Upstream analogue: controller-runtime's metrics server and ``pkg/healthz`` (a check is just a
function; ``/healthz`` is liveness, ``/readyz`` readiness; ``?verbose`` lists every check). Separate
listeners, as the scaffolding does (``:8080`` metrics, ``:8081`` probes), so a scrape can never
starve a probe. Probes only look at in-process state — never at the cloud or the apiserver — so a
VPSie outage cannot make Kubernetes restart a healthy autoscaler.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

Check = Callable[[], bool]

# A bind address of "0" disables the listener (controller-runtime's convention).
DISABLED = "0"
ANY_HOST = "0.0.0.0"  # noqa: S104 - a server in a pod must listen on the pod IP
SHUTDOWN_TIMEOUT_SECONDS = 1.0


class BindAddressError(ValueError):
    """A bind address is not ``[host]:port`` or ``0``."""


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """``":8080"`` → ``("0.0.0.0", 8080)``; ``"127.0.0.1:0"`` → any free port; ``"0"`` → disabled."""
    address = address.strip()
    if address == DISABLED:
        return None
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise BindAddressError(
            f"bind address {address!r} must look like ':8080' or 'host:8080' (or '0' to disable)"
        )
    try:
        port = int(port_text)
    except ValueError as exc:
        raise BindAddressError(f"bind address {address!r}: port {port_text!r} is not a number") from exc
    if not 0 <= port <= 65535:
        raise BindAddressError(f"bind address {address!r}: port {port} is out of range")
    host = host.strip("[]") or ANY_HOST
    return host, port


class HttpServer:
    """One aiohttp application on one listener."""

    def __init__(self, name: str, bind_address: str, app: web.Application) -> None:
        self.name = name
        self._bind = parse_bind_address(bind_address)
        self._app = app
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def enabled(self) -> bool:
        return self._bind is not None

    async def start(self) -> None:
        if self._bind is None:
            return
        host, port = self._bind
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"{self.name} server cannot listen on {host}:{port}: {exc.strerror}") from exc
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def metrics_app(registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app


def _check_handler(checks: Mapping[str, Check]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        lines = []
        failed = False
        for name, check in checks.items():
            try:
                ok = check()
            except Exception:
                ok = False
            failed |= not ok
            lines.append(f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed'}")
        verbose = "verbose" in request.query
        if failed:
            return web.Response(status=500, text="\n".join(lines) + "\nhealthz check failed\n")
        return web.Response(text=("\n".join(lines) + "\n" if verbose else "") + "ok\n")

    return handler


def probes_app(healthz: Mapping[str, Check], readyz: Mapping[str, Check]) -> web.Application:
    """``/healthz`` and ``/readyz`` over live views of the given check maps (checks may be added later)."""
    app = web.Application()
    app.router.add_get("/healthz", _check_handler(healthz))
    app.router.add_get("/readyz", _check_handler(readyz))
    return app
