"""Authentication: token exchange in both shapes, static tokens, refresh before expiry, 401 re-login."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import API_TOKEN, CLIENT_ID, make_client
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.auth import ExchangedToken
from vpsie_autoscaler.vpsie.client import VPSieClient

TTL = 3600.0
MARGIN = 300.0


def logins(client: VPSieClient) -> int:
    assert isinstance(client.tokens, ExchangedToken)
    return client.tokens.logins


@pytest.mark.parametrize("shape", ["sdk", "as", "both"])
async def test_exchange_accepts_every_token_shape(server: TestServer, sim: Simulator, shape: str) -> None:
    sim.config.token_shape = shape  # type: ignore[assignment]
    sim.strict = False
    async with make_client(server, FakeClock()) as client:
        assert await client.list_datacenters()
        assert sim.state.logins == 1


async def test_static_token_needs_no_login(
    server: TestServer, sim: Simulator, client_clock: FakeClock
) -> None:
    async with make_client(
        server, client_clock, client_id=None, client_secret=None, api_token=API_TOKEN
    ) as c:
        assert await c.list_k8s_clusters()
    assert sim.state.logins == 0


async def test_wrong_static_token_is_unauthorized_without_retry(server: TestServer, sim: Simulator) -> None:
    async with make_client(server, FakeClock(), client_id=None, client_secret=None, api_token="wrong") as c:
        with pytest.raises(errors.Unauthorized) as exc:
            await c.list_k8s_clusters()
    assert exc.value.message == "Please authenticate"
    assert exc.value.error_class is errors.ErrorClass.AUTH
    assert len(sim.requests) == 1


async def test_wrong_client_secret_is_unauthorized_after_one_login_attempt_per_encoding(
    server: TestServer, sim: Simulator
) -> None:
    async with make_client(server, FakeClock(), client_secret="wrong-secret") as c:
        with pytest.raises(errors.Unauthorized, match="refused") as exc:
            await c.list_k8s_clusters()
    assert "wrong-secret" not in str(exc.value)
    assert [(r["path"], r["content_type"]) for r in sim.requests] == [
        ("/apps/v2/auth/from/api", "application/json"),
        ("/apps/v2/auth/from/api", "application/x-www-form-urlencoded"),
    ]


async def test_token_is_renewed_before_it_expires(
    client: VPSieClient, sim: Simulator, client_clock: FakeClock, sim_clock: FakeClock
) -> None:
    await client.list_datacenters()
    await client_clock.advance(TTL - MARGIN - 1)
    await client.list_datacenters()
    assert logins(client) == 1
    await client_clock.advance(2)
    await sim_clock.advance(TTL - MARGIN + 1)
    await client.list_datacenters()
    assert logins(client) == 2
    assert sim.state.logins == 2


async def test_a_401_causes_one_relogin_and_one_repeat(client: VPSieClient, sim: Simulator) -> None:
    await client.list_datacenters()
    sim.state.expire_tokens()
    assert await client.list_datacenters()
    assert logins(client) == 2
    statuses = [(r["path"], r["status"]) for r in sim.requests]
    assert statuses[-3:] == [
        ("/apps/v2/datacenter", 401),
        ("/apps/v2/auth/from/api", 200),
        ("/apps/v2/datacenter", 200),
    ]


async def test_a_401_even_after_relogin_is_reported_not_looped(client: VPSieClient, sim: Simulator) -> None:
    await client.list_datacenters()
    sim.state.token_valid = lambda token: False  # type: ignore[method-assign]
    with pytest.raises(errors.Unauthorized):
        await client.list_datacenters()
    assert logins(client) == 2


async def test_a_401_on_a_create_is_repeated_once_since_vpsie_did_not_act(
    client: VPSieClient, sim: Simulator
) -> None:
    [group] = await client.list_node_groups("a3f0c2d4-5b6e-11ef-9c1a-0050569c68dc")
    sim.state.expire_tokens()
    await client.add_node("a3f0c2d4-5b6e-11ef-9c1a-0050569c68dc", group.id)
    assert len([n for n in sim.state.nodes.values() if n.group_id == group.id]) == 1


async def test_concurrent_calls_share_one_login(client: VPSieClient, sim: Simulator) -> None:
    await asyncio.gather(*(client.list_datacenters() for _ in range(10)))
    assert sim.state.logins == 1


async def test_exchanged_token_is_sent_in_both_headers(server: TestServer, sim: Simulator) -> None:
    async with make_client(server, FakeClock()) as c:
        headers = await c.tokens.headers()
    token = headers["Vpsie-Auth"]
    assert headers["Authorization"] == f"Bearer {token}"
    assert sim.state.token_valid(token)
    assert CLIENT_ID not in repr(c.tokens)
    assert token not in repr(c.tokens)


async def test_credentials_rotate_only_when_the_new_ones_work(client: VPSieClient, sim: Simulator) -> None:
    await client.list_datacenters()
    with pytest.raises(errors.Unauthorized):
        await client.update_credentials(client_id=CLIENT_ID, client_secret="not-the-secret")
    assert await client.list_datacenters()  # the old credentials still serve
    assert await client.update_credentials(api_token=API_TOKEN) is True
    assert await client.update_credentials(api_token=API_TOKEN) is False
    logins_before = sim.state.logins
    sim.state.expire_tokens()
    assert await client.list_datacenters()
    assert sim.state.logins == logins_before  # a static token needs no login
    assert client.config.api_token is not None
