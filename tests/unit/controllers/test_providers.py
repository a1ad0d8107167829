"""Providers from settings, the shared listing, and credential rotation (against the real simulator)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.providers import (
    CachedProvider,
    CredentialsWatcher,
    ProviderConfigError,
    UnconfiguredProvider,
    client_config,
)
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.errors import Unauthorized
from vpsie_autoscaler.vpsie.provider import CreateRequest, Instance, InstanceState, NodeSource, VMSource

SOURCE = VMSource(
    hostname_prefix="web-",
    resource_identifier="r",
    os_identifier="o",
    dc_identifier="d",
    project_identifier="p",
)


def settings(**kw: Any) -> Settings:
    return Settings(leader_elect=False, **kw)


def test_credentials_come_from_env_or_the_mounted_directory(tmp_path: Path) -> None:
    assert client_config(settings(vpsie_api_token="t")).api_token is not None
    cfg = client_config(settings(vpsie_client_id="id", vpsie_client_secret="s", vpsie_rate_limit=30))
    assert (cfg.client_id, cfg.rate_limit_per_minute) == ("id", 30.0)
    (tmp_path / "apiToken").write_text("from-file\n")
    cfg = client_config(settings(vpsie_credentials_dir=str(tmp_path)))
    assert cfg.api_token is not None
    assert cfg.api_token.get_secret_value() == "from-file"


def test_missing_or_broken_credentials_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="no VPSie credentials"):
        client_config(settings())
    with pytest.raises(ProviderConfigError, match="does not exist"):
        client_config(settings(vpsie_credentials_dir=str(tmp_path / "nope")))
    with pytest.raises(ProviderConfigError, match="plain http"):
        client_config(settings(vpsie_api_token="t", vpsie_base_url="http://vpsie.example.com"))


async def test_an_unconfigured_provider_says_why_on_every_call() -> None:
    provider = UnconfiguredProvider("no VPSie credentials: set ...")
    with pytest.raises(Unauthorized, match="no VPSie credentials"):
        await provider.list(SOURCE)
    with pytest.raises(Unauthorized):
        await provider.create(CreateRequest(hostname="web-abc12", source=SOURCE))


class CountingProvider:
    def __init__(self) -> None:
        self.lists = 0
        self.instances: list[Instance] = []
        self.gate: asyncio.Event | None = None

    async def list(self, source: NodeSource) -> list[Instance]:
        self.lists += 1
        snapshot = list(self.instances)
        if self.gate is not None:
            await self.gate.wait()
        return snapshot

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        return next((i for i in await self.list(source) if i.answers_to(hostname)), None)

    async def create(self, request: CreateRequest) -> None:
        self.instances.append(
            Instance(hostname=request.hostname, source=request.source, state=InstanceState.PENDING)
        )

    async def delete(self, instance: Instance) -> None:
        self.instances = [i for i in self.instances if i.hostname != instance.hostname]


async def test_one_listing_serves_every_caller_until_a_write() -> None:
    now = [0.0]
    inner = CountingProvider()
    cached = CachedProvider(inner, ttl=2.0, monotonic=lambda: now[0])
    await asyncio.gather(*(cached.get(SOURCE, f"web-{i:05d}") for i in range(10)))
    assert inner.lists == 1
    await cached.create(CreateRequest(hostname="web-abc12", source=SOURCE))
    assert await cached.get(SOURCE, "web-abc12") is not None  # our own write is visible at once
    assert inner.lists == 2
    now[0] = 2.5
    await cached.list(SOURCE)
    assert inner.lists == 3


async def test_a_listing_that_started_before_a_write_is_not_kept() -> None:
    inner = CountingProvider()
    cached = CachedProvider(inner, ttl=60.0, monotonic=lambda: 0.0)
    gate = inner.gate = asyncio.Event()
    slow = asyncio.create_task(cached.list(SOURCE))
    await asyncio.sleep(0)  # the listing is in flight, parked on the gate
    await cached.create(CreateRequest(hostname="web-abc12", source=SOURCE))
    inner.gate = None
    gate.set()
    assert await slow == []
    assert await cached.get(SOURCE, "web-abc12") is not None


async def test_rotated_credentials_are_used_once_proven_and_bad_ones_are_refused(tmp_path: Path) -> None:
    clock = FakeClock()
    config = sim_config(api_tokens=[API_TOKEN, "rotated-token"])
    async with running_simulator(config, clock=clock) as (_, url):
        (tmp_path / "apiToken").write_text(API_TOKEN)
        client = VPSieClient(
            VPSieClientConfig(base_url=url, api_token=API_TOKEN),
            clock=RealClock(),
            registry=CollectorRegistry(),
        )
        async with client:
            watcher = CredentialsWatcher(client, str(tmp_path), clock=clock)
            assert await watcher.check() is False  # unchanged
            (tmp_path / "apiToken").write_text("rotated-token\n")
            assert await watcher.check() is True
            assert client.config.api_token is not None
            assert client.config.api_token.get_secret_value() == "rotated-token"
            (tmp_path / "apiToken").write_text("wrong-token")
            assert await watcher.check() is False
            assert client.config.api_token.get_secret_value() == "rotated-token"
            (tmp_path / "apiToken").unlink()
            assert await watcher.check() is False  # unreadable: keep what works
