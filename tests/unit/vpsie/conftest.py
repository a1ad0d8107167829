"""Fixtures: the real simulator served on 127.0.0.1 and the real client pointed at it (helpers shared
with other test packages live in ``tests/support/vpsie.py``).

Two fake clocks: ``sim_clock`` moves the simulated cloud (boots, deletions, token expiry on the
server), ``client_clock`` moves the client (rate limiter, breaker, retry back-off, token refresh).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.support import vpsie as support
from tests.support.vpsie import API_TOKEN, CLIENT_ID, CLIENT_SECRET, drive, server_url
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.config import SimConfig
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie.client import VPSieClient


@pytest.fixture(params=["lenient", "strict"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim_config(mode: str) -> SimConfig:
    return support.sim_config(mode=mode, token_shape="as" if mode == "lenient" else "sdk")


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
    return server_url(server)


def make_client(server: TestServer, clock: FakeClock, **overrides: Any) -> VPSieClient:
    return support.make_client(server_url(server), clock, **overrides)


@pytest.fixture
async def client(server: TestServer, client_clock: FakeClock) -> AsyncIterator[VPSieClient]:
    async with make_client(server, client_clock) as c:
        yield c


__all__ = ["API_TOKEN", "CLIENT_ID", "CLIENT_SECRET", "base_url", "drive", "make_client"]
