"""Opt-in Sentry: what is reported (errors, failed reconciles), how it is tagged (version, cluster,
controller), and that no credential ever leaves the process, checked on the envelopes a fake Sentry on
127.0.0.1 receives from the official sentry-sdk."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
import structlog
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.support.fake_sentry import FakeSentry
from tests.support.wait import eventually
from vpsie_autoscaler import __version__
from vpsie_autoscaler.kube import errors as kube_errors
from vpsie_autoscaler.logging import configure
from vpsie_autoscaler.observability import sentry
from vpsie_autoscaler.runtime import controller as runtime_controller
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.controller import Controller, FuncReconciler, Request, Result

CLIENT_SECRET = "s3cr3t-client-Vq8x-value"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjQyfQ.c2lnbmF0dXJl"
STATIC_TOKEN = "static-Zq81-api-token"
PASSWORD = "hunter2-account-pw"
WAIT_S = 10.0


@pytest.fixture
def reporting(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeSentry, io.StringIO]]:
    """Logging as ``run`` configures it, Sentry on a fake endpoint, the cluster tagged."""
    logs = io.StringIO()
    configure("info", "json", stream=logs)
    # A fresh module logger: one cached by an earlier test keeps that test's processor chain.
    monkeypatch.setattr(
        runtime_controller, "log", structlog.get_logger("vpsie_autoscaler.runtime.controller")
    )
    with FakeSentry() as fake:
        sentry.init_sentry(fake.dsn, version=__version__, environment="test", secrets=[CLIENT_SECRET])
        sentry.set_cluster("cluster-uid-1")
        try:
            yield fake, logs
        finally:
            sentry.shutdown()


async def received(fake: FakeSentry, count: int = 1) -> list[dict[str, Any]]:
    async def enough() -> bool:
        await asyncio.to_thread(sentry.flush, 1.0)
        return len(fake.events()) >= count

    await eventually(enough, within=WAIT_S, what=f"{count} Sentry event(s)")
    return fake.events()


async def test_an_error_is_reported_with_version_cluster_and_logger(
    reporting: tuple[FakeSentry, io.StringIO],
) -> None:
    fake, logs = reporting
    structlog.get_logger("vpsie_autoscaler.controllers.cloud").error(
        "vpsie.unconfigured", error="missing token"
    )
    [event] = await received(fake)
    assert event["message"] == "vpsie.unconfigured" or event["logentry"]["message"] == "vpsie.unconfigured"
    assert event["level"] == "error"
    assert event["release"] == f"vpsie-autoscaler@{__version__}"
    assert event["environment"] == "test"
    tags = event["tags"]
    assert (tags["version"], tags["cluster"], tags["service"]) == (
        __version__,
        "cluster-uid-1",
        "vpsie-autoscaler",
    )
    assert tags["logger"] == "vpsie_autoscaler.controllers.cloud"
    assert event["contexts"]["log"]["error"] == "missing token"
    assert "vpsie.unconfigured" in logs.getvalue()  # the log line is still written


async def test_info_and_ordinary_warnings_are_not_reported(reporting: tuple[FakeSentry, io.StringIO]) -> None:
    fake, _ = reporting
    log = structlog.get_logger("vpsie_autoscaler.test")
    log.info("all good")
    log.warning("vpsie.retry", attempt=1)
    log.error("the one")
    events = await received(fake)
    await asyncio.to_thread(sentry.flush, 1.0)
    assert [e.get("message") or e["logentry"]["message"] for e in fake.events()] == ["the one"]
    assert len(events) == 1


async def test_failed_reconciles_are_reported_with_their_controller(
    reporting: tuple[FakeSentry, io.StringIO],
) -> None:
    fake, _ = reporting

    async def reconcile(request: Request) -> Result:
        if request.name == "bug":
            raise RuntimeError(f"boom with {CLIENT_SECRET}")
        raise kube_errors.ServerError("etcd timeout")

    ctrl = Controller(
        "nodegroup", FuncReconciler(reconcile), workers=1, reconcile_timeout=None, clock=FakeClock(),
        registry=CollectorRegistry(),
    )  # fmt: skip
    task = asyncio.create_task(ctrl.run())
    try:
        ctrl.enqueue(Request("bug"))
        ctrl.enqueue(Request("api"))
        events = await received(fake, 2)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    by_level = {e["level"]: e for e in events}
    crash, failed = by_level["error"], by_level["warning"]
    assert crash["tags"]["controller"] == failed["tags"]["controller"] == "nodegroup"
    assert crash["tags"]["cluster"] == "cluster-uid-1"
    [exception] = crash["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert CLIENT_SECRET not in exception["value"]
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])
    assert (failed.get("message") or failed["logentry"]["message"]) == "reconcile failed"
    assert failed["contexts"]["log"]["name"] == "api"
    assert CLIENT_SECRET not in fake.raw()


async def test_credentials_are_scrubbed_from_every_part_of_an_event(
    reporting: tuple[FakeSentry, io.StringIO],
) -> None:
    fake, _ = reporting
    sentry_sdk.capture_event(
        {
            "message": f"login failed: Authorization: Bearer {JWT} Vpsie-Auth: {STATIC_TOKEN}",
            "level": "error",
            "request": {
                "url": f"https://user:{PASSWORD}@api.vpsie.com/apps/v2/auth/from/api?token={STATIC_TOKEN}",
                "headers": {"Authorization": f"Bearer {JWT}", "Vpsie-Auth": STATIC_TOKEN, "Accept": "json"},
                "data": f"clientId=abc&clientSecret={CLIENT_SECRET}",
            },
            "extra": {
                "body": f'{{"clientId": "abc", "clientSecret": "{CLIENT_SECRET}"}}',
                "settings": {"vpsie_api_token": STATIC_TOKEN, "account": {"password": PASSWORD}},
                "note": f"password={PASSWORD}; secret is {CLIENT_SECRET}",
            },
            "breadcrumbs": {
                "values": [{"message": f"GET with Bearer {JWT}", "data": {"token": STATIC_TOKEN}}]
            },
        }
    )
    [event] = await received(fake)
    raw = fake.raw()
    for secret in (JWT, STATIC_TOKEN, PASSWORD, CLIENT_SECRET):
        assert secret not in raw
    assert event["request"]["headers"]["Authorization"] == "[Filtered]"
    assert event["request"]["headers"]["Accept"] == "json"  # what is not a credential stays
    assert "api.vpsie.com/apps/v2/auth/from/api" in event["request"]["url"]
    assert event["extra"]["settings"]["vpsie_api_token"] == "[Filtered]"


async def test_logged_fields_carrying_credentials_in_text_are_scrubbed(
    reporting: tuple[FakeSentry, io.StringIO],
) -> None:
    fake, _ = reporting
    structlog.get_logger("vpsie_autoscaler.vpsie.client").error(
        "vpsie.call_failed",
        detail=f"sent Authorization: Bearer {JWT}",
        body=f"clientId=abc&clientSecret={CLIENT_SECRET}",
        proxy=f"http://me:{PASSWORD}@proxy:3128",
    )
    await received(fake)
    raw = fake.raw()
    for secret in (JWT, PASSWORD, CLIENT_SECRET):
        assert secret not in raw
    assert "proxy:3128" in raw


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: Bearer [Filtered]"),
        ('{"Vpsie-Auth": "tok123"}', '{"Vpsie-Auth": "[Filtered]"}'),
        ("clientSecret=x1&clientId=id", "clientSecret=[Filtered]&clientId=id"),
        ("password: hunter2", "password: [Filtered]"),
        (f"token is {JWT}!", "token is [Filtered]!"),
        ("https://k:pw@o1.ingest.sentry.io/42", "https://[Filtered]@o1.ingest.sentry.io/42"),
        ("nothing to hide: 3 nodes, group web", "nothing to hide: 3 nodes, group web"),
    ],
)
def test_credentials_inside_text(text: str, expected: str) -> None:
    assert sentry.scrub_text(text) == expected


@given(st.text(alphabet=st.characters(categories=["L", "N"], include_characters="-_.~+/="), min_size=1))
def test_no_bearer_or_vpsie_auth_value_survives(token: str) -> None:
    assert sentry.scrub_text(f"Authorization: Bearer {token}") == "Authorization: Bearer [Filtered]"
    assert sentry.scrub_text(f"Vpsie-Auth: {token}") == "Vpsie-Auth: [Filtered]"
    assert sentry.scrub_text(f'{{"token": "{token}"}}') == '{"token": "[Filtered]"}'


def test_nothing_is_reported_or_hooked_without_a_dsn() -> None:
    assert not sentry.enabled()
    assert sentry.report_to_sentry not in structlog.get_config()["processors"]
