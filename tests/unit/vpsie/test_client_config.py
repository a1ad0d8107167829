"""Bad client configuration fails at construction with a message that says what to fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from vpsie_autoscaler.vpsie.client import VMCreate, VPSieClientConfig


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "credentials missing"),
        ({"client_id": "id"}, "credentials missing"),
        ({"api_token": "t", "client_id": "id", "client_secret": "s"}, "not both"),
        ({"api_token": "t", "base_url": "ftp://x"}, "http"),
        ({"api_token": "t", "base_url": "http://api.example.com"}, "plain http"),
        ({"api_token": "t", "vm_path": "apps/v2/vm"}, "VM path"),
        ({"api_token": "t", "request_timeout": 0}, "positive"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        VPSieClientConfig(**settings)


def test_plain_http_to_loopback_and_https_anywhere_are_fine() -> None:
    VPSieClientConfig(api_token="t", base_url="http://127.0.0.1:8080")
    VPSieClientConfig(api_token="t", base_url="https://api2.vpsie.com")


def test_secrets_never_show_in_repr() -> None:
    config = VPSieClientConfig(client_id="id", client_secret="very-secret")
    assert "very-secret" not in repr(config)
    assert "very-secret" not in str(config.model_dump())


def test_vm_create_body_uses_the_live_verified_types() -> None:
    body = VMCreate(
        resource_identifier="r",
        os_identifier="o",
        dc_identifier="d",
        hostname="h",
        project_identifier="p",
        add_public_ipv6=True,
        tags=("k8s",),
    ).body("pid")
    assert body["projectId"] == "p"
    assert (body["addPublicIpV4"], body["addPublicIpV6"], body["addPrivateIp"], body["backupEnabled"]) == (
        "1",
        "1",
        "1",
        "0",
    )
    assert body["processId"] == "pid"
    assert body["tags"] == ["k8s"]
    assert "sshKeyIdentifier" not in body
