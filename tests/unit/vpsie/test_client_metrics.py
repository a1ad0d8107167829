"""The VPSie client's breaker and credential rotations are visible in metrics (the Go autoscaler
exported both): the breaker's state and every transition, rotations by result."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import API_TOKEN, CLIENT_ID, make_client
from tests.unit.vpsie.test_faults import DC_PATH, NO_RETRY
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.faults import FaultKind, FaultSpec
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.breaker import BreakerState, CircuitBreaker
from vpsie_autoscaler.vpsie.client import VPSieClient


def states(client: VPSieClient) -> dict[str, float]:
    return {s.value: client.metrics.circuit_state.labels(s.value)._value.get() for s in BreakerState}


def transitions(client: VPSieClient, old: str, new: str) -> float:
    return float(client.metrics.circuit_transitions.labels(old, new)._value.get())


def rotations(client: VPSieClient, result: str) -> float:
    return float(client.metrics.credential_rotations.labels(result=result)._value.get())


async def test_breaker_state_and_transitions(
    server: TestServer, sim: Simulator, client_clock: FakeClock
) -> None:
    async with make_client(server, client_clock, retry=NO_RETRY) as client:
        assert states(client) == {"closed": 1, "open": 0, "half_open": 0}
        await client.list_datacenters()
        fault = sim.faults.add(FaultSpec(kind=FaultKind.ERROR, path=DC_PATH, status=500))
        for _ in range(5):
            with pytest.raises(errors.ServerError):
                await client.list_datacenters()
        assert states(client) == {"closed": 0, "open": 1, "half_open": 0}
        assert transitions(client, "closed", "open") == 1
        await client_clock.advance(30)
        with pytest.raises(errors.ServerError):  # the half-open probe fails: open again
            await client.list_datacenters()
        assert transitions(client, "open", "half_open") == 1
        assert transitions(client, "half_open", "open") == 1
        sim.faults.remove(fault.id)
        await client_clock.advance(30)
        assert await client.list_datacenters()
        assert states(client) == {"closed": 1, "open": 0, "half_open": 0}
        assert transitions(client, "open", "half_open") == 2
        assert transitions(client, "half_open", "closed") == 1


def test_the_breaker_tells_only_changes() -> None:
    seen: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(FakeClock(), failure_threshold=2, on_transition=lambda a, b: seen.append((a, b)))
    breaker.record_success()
    breaker.record_failure()
    assert seen == []
    breaker.record_failure()
    breaker.record_failure()
    assert seen == [(BreakerState.CLOSED, BreakerState.OPEN)]


async def test_credential_rotations_by_result(client: VPSieClient) -> None:
    assert rotations(client, "success") == 0
    with pytest.raises(errors.Unauthorized):
        await client.update_credentials(client_id=CLIENT_ID, client_secret="not-the-secret")
    assert rotations(client, "failure") == 1
    assert await client.update_credentials(api_token=API_TOKEN) is True
    assert await client.update_credentials(api_token=API_TOKEN) is False  # unchanged: no rotation
    assert rotations(client, "success") == 1
