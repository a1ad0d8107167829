"""Neither the client secret, the static API token nor any issued token may ever reach a log line,
an exception message or a repr, whatever path the client takes (login, 401 re-login, retries, errors)."""

from __future__ import annotations

import logging

import pytest
import structlog
from aiohttp.test_utils import TestServer

from tests.unit.vpsie.conftest import API_TOKEN, CLIENT_SECRET, drive, make_client
from vpsie_autoscaler.cloudsim.app import Simulator
from vpsie_autoscaler.cloudsim.faults import FaultKind, FaultSpec
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors


async def test_no_secret_or_token_in_any_output(
    server: TestServer,
    sim: Simulator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    issued: list[str] = []
    original = sim.state.issue_token

    def spy() -> tuple[str, float]:
        token, expires = original()
        issued.append(token)
        return token, expires

    sim.state.issue_token = spy  # type: ignore[method-assign]
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    with structlog.testing.capture_logs() as events:
        async with make_client(server, clock) as client:
            texts.append(repr(client.config))
            texts.append(repr(client.tokens))
            await client.list_datacenters()
            sim.state.expire_tokens()  # forces a 401 and a re-login
            await client.list_datacenters()
            sim.faults.add(FaultSpec(kind=FaultKind.HTML_502, path="/apps/v2/datacenter", times=2))
            await drive(clock, client.list_datacenters())  # retries
            sim.faults.add(FaultSpec(kind=FaultKind.ERROR, path="/apps/v2/auth/from/api", status=500))
            sim.state.expire_tokens()
            with pytest.raises(errors.VPSieError) as failure:
                await drive(clock, client.list_datacenters())
            texts.extend([str(failure.value), repr(failure.value)])
        async with make_client(server, FakeClock(), client_secret=CLIENT_SECRET + "-wrong") as bad:
            sim.faults.clear()
            with pytest.raises(errors.Unauthorized) as refused:
                await bad.list_datacenters()
            texts.extend([str(refused.value), repr(refused.value)])
        async with make_client(
            server, FakeClock(), client_id=None, client_secret=None, api_token=API_TOKEN
        ) as st:
            await st.list_datacenters()
            texts.append(repr(st.tokens))
    assert len(issued) >= 2
    captured = capsys.readouterr()
    texts.extend([repr(events), caplog.text, captured.out, captured.err])
    blob = "\n".join(texts)
    assert "vpsie.login" in blob  # the logs were really captured
    for secret in [CLIENT_SECRET, API_TOKEN, *issued]:
        assert secret not in blob, "a secret or token leaked into logs, errors or reprs"
