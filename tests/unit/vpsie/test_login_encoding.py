"""Login encoding: JSON as the official SDK sends it; the form-encoded body VPSie's Go autoscaler proved
against the real API when JSON is refused; the simulator's strict, lenient and form-only logins."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiohttp
import pytest

from tests.support.vpsie import CLIENT_ID, CLIENT_SECRET, drive, make_client, running_simulator, sim_config
from vpsie_autoscaler.cli import build_parser
from vpsie_autoscaler.cloudsim.cli import build_config
from vpsie_autoscaler.cloudsim.faults import FaultSpec
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.vpsie import errors
from vpsie_autoscaler.vpsie.auth import LoginEncodings, login_with_fallback
from vpsie_autoscaler.vpsie.retry import RetryPolicy

LOGIN = "/apps/v2/auth/from/api"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def logins(requests: Iterable[dict[str, Any]]) -> list[tuple[str, int]]:
    """(content type, status) of every login the simulator received, in order."""
    return [(r["content_type"], r["status"]) for r in requests if r["path"] == LOGIN]


# --- the simulator's login bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "login_body", "accepted"),
    [
        ("strict", None, {JSON}),  # as the official SDK sends it
        ("lenient", None, {JSON, FORM}),
        ("lenient", "form", {FORM}),  # the API as VPSie's Go autoscaler found it
        ("strict", "any", {JSON, FORM}),
    ],
)
async def test_the_simulator_accepts_the_login_bodies_of_its_mode(
    mode: str, login_body: str | None, accepted: set[str]
) -> None:
    creds = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    async with (
        running_simulator(sim_config(mode=mode, login_body=login_body)) as (sim, url),
        aiohttp.ClientSession() as http,
    ):
        for content_type in (JSON, FORM):
            sent = {"json": creds} if content_type == JSON else {"data": creds}
            async with http.post(url + LOGIN, json=sent.get("json"), data=sent.get("data")) as resp:
                body = await resp.json()
            if content_type in accepted:
                assert resp.status == 200
                assert body["error"] is False
            else:
                assert resp.status in (400, 401)
                assert body["error"] is True
        assert sim.state.logins == len(accepted)


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--login-body", "form"], "form")])
def test_the_login_body_is_a_cloudsim_option(flags: list[str], expected: str | None) -> None:
    args = build_parser().parse_args(["cloudsim", *flags])
    assert build_config(args).login_body == expected


# --- the client ---------------------------------------------------------------------------------------


async def test_a_json_login_is_the_only_request_when_json_is_accepted() -> None:
    async with (
        running_simulator(sim_config(mode="strict")) as (sim, url),
        make_client(url, FakeClock()) as client,
    ):
        assert await client.list_datacenters()
    assert logins(sim.requests) == [(JSON, 200)]


async def test_a_refused_json_login_falls_back_to_the_form_body_once_then_sends_form_first() -> None:
    async with (
        running_simulator(sim_config(login_body="form")) as (sim, url),
        make_client(url, FakeClock()) as client,
    ):
        assert await client.list_datacenters()
        assert logins(sim.requests) == [(JSON, 401), (FORM, 200)]
        sim.state.expire_tokens()  # the next call gets 401 and logs in again
        assert await client.list_datacenters()
    assert logins(sim.requests) == [(JSON, 401), (FORM, 200), (FORM, 200)]
    assert sim.state.logins == 2


async def test_the_form_body_is_url_encoded() -> None:
    """VPSie's Go autoscaler failed on secrets with special characters until it encoded them."""
    secret = "p&ss=w+rd %2F/?#é"
    async with (
        running_simulator(sim_config(login_body="form", client_secret=secret)) as (sim, url),
        make_client(url, FakeClock(), client_secret=secret) as client,
    ):
        assert await client.list_datacenters()
    assert sim.state.logins == 1


async def test_credentials_refused_in_every_encoding_are_unauthorized_without_the_secret() -> None:
    async with (
        running_simulator(sim_config(login_body="form")) as (sim, url),
        make_client(url, FakeClock(), client_secret="wrong-Kq81-secret") as client,
    ):
        with pytest.raises(errors.Unauthorized, match="refused the clientId/clientSecret") as exc:
            await client.list_datacenters()
    assert "wrong-Kq81" not in str(exc.value)
    assert exc.value.error_class is errors.ErrorClass.AUTH
    assert logins(sim.requests) == [(JSON, 401), (FORM, 401)]


async def test_a_server_error_on_login_is_retried_as_it_is_not_a_refusal() -> None:
    async with running_simulator(sim_config(mode="strict")) as (sim, url):
        sim.faults.add(FaultSpec(kind="error", path=LOGIN, status=503, times=1))
        clock = FakeClock()
        async with make_client(url, clock, retry=RetryPolicy(max_retries=1, initial=0.01)) as client:
            assert await drive(clock, client.list_datacenters())
    assert logins(sim.requests) == [(JSON, 503), (JSON, 200)]  # never the form body: JSON was not refused


async def test_the_fallback_order_follows_what_was_accepted() -> None:
    encodings = LoginEncodings()
    sent: list[str] = []

    async def send(encoding: str) -> bytes:
        sent.append(encoding)
        if encoding == "json":
            raise errors.BusinessRuleError("Unsupported Media Type", operation="auth_login", status=415)
        return b"{}"

    assert await login_with_fallback(send, encodings) == b"{}"
    assert encodings.order() == ("form", "json")
    assert await login_with_fallback(send, encodings) == b"{}"
    assert sent == ["json", "form", "form"]


async def test_errors_that_are_not_refusals_propagate_without_trying_another_body() -> None:
    sent: list[str] = []

    async def send(encoding: str) -> bytes:
        sent.append(encoding)
        raise errors.ServerError("bad gateway", operation="auth_login", status=502)

    with pytest.raises(errors.ServerError):
        await login_with_fallback(send, LoginEncodings())
    assert sent == ["json"]
