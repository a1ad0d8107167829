"""Fixtures: the real simulator served on 127.0.0.1 and the real client pointed at it.

Two fake clocks: ``sim_clock`` moves the simulated cloud (boots, deletions, token expiry on the
server), ``client_clock`` moves the client (rate limiter, breaker, retry back-off, token refresh).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.sim.app import Simulator
from vpsie_autoscaler.vpsie.sim.config import SimConfig

CLIENT_ID = "4f1c9a7e-2d3b-4c55-9e0a-6b7f1d2e3c4a"
CLIENT_SECRET = "s3cr3t-9X2kL0pQ-never-log-me"
API_TOKEN = "static-token-Zq81-never-log-me"
T = TypeVar("T")


@pytest.fixture(params=["lenient", "strict"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim_config(mode: str) -> SimConfig:
    return SimConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        api_tokens=[API_TOKEN],
        mode=mode,
        token_shape="as" if mode == "lenient" else "sdk",
    )


@pytest.fixture
def sim_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(sim_config: SimConfig, sim_clock: FakeClock) -> Simulator:
    return Simulator(sim_config, clock=sim_clock, seed=7)


@pytest.fixture
async def server(sim: Simulator) -> AsyncIterator[TestServer]:
    srv = TestServer(sim.app(), host="127.0.0.1")
    await srv.start_server()
    yield srv
    await srv.close()


def base_url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def make_client(server: TestServer, clock: FakeClock, **overrides: Any) -> VPSieClient:
    settings: dict[str, Any] = {
        "base_url": base_url(server),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    settings.update(overrides)
    return VPSieClient(
        VPSieClientConfig(**settings), clock=clock, rng=random.Random(1), registry=CollectorRegistry()
    )


@pytest.fixture
async def client(server: TestServer, client_clock: FakeClock) -> AsyncIterator[VPSieClient]:
    async with make_client(server, client_clock) as c:
        yield c


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
