"""Metrics and probe endpoints."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from vpsie_autoscaler.runtime.http import (
    BindAddressError,
    HttpServer,
    metrics_app,
    parse_bind_address,
    probes_app,
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9", ("::1", 9)), ("0", None)],
)
def test_bind_addresses(address: str, expected: tuple[str, int] | None) -> None:
    assert parse_bind_address(address) == expected


@pytest.mark.parametrize("address", ["8080", ":http", ":70000", ""])
def test_bad_bind_addresses(address: str) -> None:
    with pytest.raises(BindAddressError):
        parse_bind_address(address)


async def test_metrics_serves_the_given_registry_only() -> None:
    registry = CollectorRegistry()
    Counter("vpsie_test_total", "t", registry=registry).inc()
    server = HttpServer("metrics", "127.0.0.1:0", metrics_app(registry))
    await server.start()
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{server.port}/metrics") as r:
            body = await r.text()
        assert r.status == 200
        assert "vpsie_test_total 1.0" in body
        assert "python_gc" not in body, "the global registry is never exposed"
    finally:
        await server.stop()


async def test_probes_report_failing_checks() -> None:
    state = {"synced": False}
    server = HttpServer(
        "probes", "127.0.0.1:0", probes_app({"ping": lambda: True}, {"caches": lambda: state["synced"]})
    )
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/healthz") as r:
                assert (r.status, await r.text()) == (200, "ok\n")
            async with s.get(f"{base}/readyz") as r:
                assert r.status == 500
                assert "[-]caches failed" in await r.text()
            state["synced"] = True
            async with s.get(f"{base}/readyz?verbose") as r:
                assert r.status == 200
                assert "[+]caches ok" in await r.text()
    finally:
        await server.stop()


async def test_a_taken_port_is_a_clear_error() -> None:
    first = HttpServer("metrics", "127.0.0.1:0", metrics_app(CollectorRegistry()))
    await first.start()
    try:
        second = HttpServer("metrics", f"127.0.0.1:{first.port}", metrics_app(CollectorRegistry()))
        with pytest.raises(OSError, match="metrics server cannot listen"):
            await second.start()
    finally:
        await first.stop()


async def test_address_0_disables_the_listener() -> None:
    server = HttpServer("metrics", "0", metrics_app(CollectorRegistry()))
    await server.start()
    assert not server.enabled
    assert server.port is None
    await server.stop()
