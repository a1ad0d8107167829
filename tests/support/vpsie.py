"""Test support for anything that talks to VPSie: the real simulator in-process and a client for it.

    async with running_simulator(SimConfig(...), clock=sim_clock) as (sim, base_url):
        async with make_client(base_url, client_clock) as client: ...

``drive(clock, awaitable)`` runs code that sleeps on a :class:`FakeClock` (retry back-off, rate
limiter) to completion by advancing the clock whenever the code is parked on it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import SimConfig
from vpsie_autoscaler.runtime.clock import Clock, FakeClock
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig

CLIENT_ID = "4f1c9a7e-2d3b-4c55-9e0a-6b7f1d2e3c4a"
CLIENT_SECRET = "s3cr3t-9X2kL0pQ-never-log-me"
API_TOKEN = "static-token-Zq81-never-log-me"
T = TypeVar("T")


def sim_config(**overrides: Any) -> SimConfig:
    """A simulator configuration accepting :data:`CLIENT_ID`/:data:`CLIENT_SECRET` and :data:`API_TOKEN`."""
    settings: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "api_tokens": [API_TOKEN],
    }
    settings.update(overrides)
    return SimConfig(**settings)


def server_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@asynccontextmanager
async def running_simulator(
    config: SimConfig, *, clock: Clock | None = None, seed: int = 7
) -> AsyncIterator[tuple[Simulator, str]]:
    """The simulator served on a free port of 127.0.0.1; yields it and its base URL."""
    sim = Simulator(config, clock=clock, seed=seed)
    server = TestServer(sim.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield sim, server_url(server)
    finally:
        await server.close()


def make_client(base_url: str, clock: FakeClock, **overrides: Any) -> VPSieClient:
    """A client of the simulator at ``base_url`` with exchanged credentials unless overridden."""
    settings: dict[str, Any] = {"base_url": base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    settings.update(overrides)
    return VPSieClient(
        VPSieClientConfig(**settings), clock=clock, rng=random.Random(1), registry=CollectorRegistry()
    )


async def drive(clock: FakeClock, aw: Awaitable[T], *, step: float = 0.05, max_turns: int = 20_000) -> T:
    """Run ``aw`` to completion, moving ``clock`` forward whenever the code under test sleeps on it."""
    task = asyncio.ensure_future(aw)
    for _ in range(max_turns):
        done, _ = await asyncio.wait({task}, timeout=0.002)
        if done:
            return task.result()
        if clock.sleepers:
            await clock.advance(step)
    task.cancel()
    raise AssertionError("the call did not finish")
