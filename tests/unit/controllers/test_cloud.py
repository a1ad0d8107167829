"""Providers from settings: the shared listing, fencing of mutations, the unconfigured stand-in, the
cluster identity in ownership tags, and credentials that appear or rotate (against the real simulator)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from tests.support.vpsie import API_TOKEN, running_simulator, sim_config
from vpsie_autoscaler.cloudsim.config import DEFAULT_DATACENTER, DEFAULT_OS, DEFAULT_PROJECT
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.controllers.cloud import (
    ClusterIdentity,
    CredentialsWatcher,
    ProviderConfigError,
    Providers,
    SharedListings,
    UnconfiguredProvider,
    build_client,
    client_config,
    ownership_tags,
    tagged_group,
)
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import NAMESPACES, Resource
from vpsie_autoscaler.runtime.clock import FakeClock, RealClock
from vpsie_autoscaler.runtime.fence import FenceReason, NotLeader
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.credentials import Credentials
from vpsie_autoscaler.vpsie.errors import Unauthorized
from vpsie_autoscaler.vpsie.provider import (
    DONE,
    CreateRequest,
    Instance,
    InstanceState,
    ManagedSource,
    MutationResult,
    NodeSource,
    Outcome,
    VMSource,
)
from vpsie_autoscaler.vpsie.vms import VMProvider

SOURCE = VMSource(
    hostname_prefix="web-",
    resource_identifier="r",
    os_identifier="o",
    dc_identifier="d",
    project_identifier="p",
)
OTHER = VMSource(
    hostname_prefix="db-",
    resource_identifier="r",
    os_identifier="o",
    dc_identifier="d",
    project_identifier="p",
)
MISSING = "no VPSie credentials: set VPSIE_AUTOSCALER_VPSIE_API_TOKEN"


def settings(**kw: Any) -> Settings:
    return Settings(leader_elect=False, **kw)


def instance(hostname: str, source: NodeSource = SOURCE) -> Instance:
    return Instance(
        hostname=hostname, source=source, state=InstanceState.RUNNING, identifier=f"id-{hostname}"
    )


# --- configuration -----------------------------------------------------------------------------------


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


def test_ownership_tags_name_the_cluster_and_the_group() -> None:
    tags = ownership_tags("uid-1", "web")
    assert tags == ("vpsie-autoscaler:cluster=uid-1", "vpsie-autoscaler:nodegroup=web")
    assert tagged_group(frozenset(tags)) == "web"
    assert tagged_group(frozenset({"k8s", "vpsie-autoscaler:cluster=uid-1"})) is None


# --- the unconfigured stand-in -----------------------------------------------------------------------


async def test_an_unconfigured_provider_sends_nothing_and_says_what_is_missing() -> None:
    provider = UnconfiguredProvider(MISSING)
    launched = await provider.launch(CreateRequest(hostname="web-abc12", source=SOURCE))
    deleted = await provider.delete(instance("web-abc12"))
    for result in (launched, deleted):
        assert result.outcome is Outcome.NOT_DONE
        assert not result.sent
        assert "no VPSie credentials" in result.detail
    with pytest.raises(Unauthorized, match="no VPSie credentials"):
        await provider.list(SOURCE)
    with pytest.raises(Unauthorized, match="no VPSie credentials"):
        await provider.owner_tags(instance("web-abc12"))


async def test_providers_without_a_client_report_mutations_not_done_with_the_reason() -> None:
    providers = Providers(None, unconfigured_reason=MISSING)
    result = await providers.launch(CreateRequest(hostname="web-abc12", source=SOURCE))
    assert result.outcome is Outcome.NOT_DONE
    assert MISSING in result.detail
    result = await providers.delete(
        instance("k8s-slave-1", ManagedSource(cluster_identifier="c", group_id=1))
    )
    assert result.outcome is Outcome.NOT_DONE
    with pytest.raises(Unauthorized, match="no VPSie credentials"):
        await providers.listing(SOURCE, max_age=10)


# --- shared listings ---------------------------------------------------------------------------------


class CountingProvider:
    """A NodeProvider that counts lists and mutations (and can hold a listing in flight)."""

    def __init__(self, calls: list[str] | None = None) -> None:
        self.lists = 0
        self.instances: list[Instance] = []
        self.gate: asyncio.Event | None = None
        self.calls = calls if calls is not None else []

    async def list(self, source: NodeSource) -> list[Instance]:
        self.lists += 1
        self.calls.append("list")
        snapshot = [i for i in self.instances if i.source == source]
        if self.gate is not None:
            await self.gate.wait()
        return snapshot

    async def launch(self, request: CreateRequest) -> MutationResult:
        self.calls.append("launch")
        self.instances.append(instance(request.hostname, request.source))
        return DONE

    async def delete(self, inst: Instance) -> MutationResult:
        self.calls.append("delete")
        return DONE

    async def owner_tags(self, inst: Instance) -> frozenset[str] | None:
        return None


async def test_concurrent_callers_share_one_listing() -> None:
    provider = CountingProvider()
    provider.instances = [instance("web-aaaaa")]
    gate = provider.gate = asyncio.Event()
    listings = SharedListings(monotonic=lambda: 0.0)
    callers = [asyncio.create_task(listings.list(provider, SOURCE, max_age=10)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*callers)
    assert provider.lists == 1
    assert listings.reads == 1
    assert all([i.hostname for i in r] == ["web-aaaaa"] for r in results)
    results[0].clear()  # a caller's list is its own copy
    assert len(await listings.list(provider, SOURCE, max_age=10)) == 1


async def test_each_caller_gets_a_listing_no_older_than_it_accepts() -> None:
    now = [0.0]
    provider = CountingProvider()
    listings = SharedListings(monotonic=lambda: now[0])
    await listings.list(provider, SOURCE, max_age=30)
    now[0] = 9.0
    await listings.list(provider, SOURCE, max_age=30)  # the scan interval: 9 s old is fine
    await listings.list(provider, SOURCE, max_age=10)
    assert listings.reads == 1
    provider.instances = [instance("web-new01")]
    fresh = await listings.list(provider, SOURCE, max_age=5)  # a more impatient caller: re-read
    assert [i.hostname for i in fresh] == ["web-new01"]
    assert listings.reads == 2
    assert [i.hostname for i in await listings.list(provider, SOURCE, max_age=30)] == ["web-new01"]
    assert listings.reads == 2


async def test_a_listing_ages_from_when_it_was_asked_for_and_sources_are_apart() -> None:
    now = [0.0]
    provider = CountingProvider()
    gate = provider.gate = asyncio.Event()
    listings = SharedListings(monotonic=lambda: now[0])
    slow = asyncio.create_task(listings.list(provider, SOURCE, max_age=5))
    await asyncio.sleep(0)
    now[0] = 4.0  # VPSie took 4 s to answer: what it said may predate writes in those 4 s
    gate.set()
    await slow
    provider.gate = None
    now[0] = 6.0
    await listings.list(provider, SOURCE, max_age=5)  # 6 s since asked, though 2 s since answered
    assert listings.reads == 2
    await listings.list(provider, OTHER, max_age=5)
    assert listings.reads == 3
    listings.invalidate(SOURCE)
    await listings.list(provider, SOURCE, max_age=60)
    assert listings.reads == 4


async def test_providers_listing_is_shared_per_source() -> None:
    providers = Providers(None)
    provider = CountingProvider()
    providers.vms = provider
    await asyncio.gather(*(providers.listing(SOURCE, max_age=10) for _ in range(5)))
    assert provider.lists == 1
    assert providers.listings.reads == 1


# --- fencing -----------------------------------------------------------------------------------------


class FakeFence:
    def __init__(self, calls: list[str], *, leader: bool) -> None:
        self.calls = calls
        self.leader = leader

    def check(self, operation: str) -> None:
        self.calls.append(f"fence:{operation}")
        if not self.leader:
            raise NotLeader(operation, FenceReason.LEASE_LOST)


async def test_mutations_pass_the_fence_first() -> None:
    calls: list[str] = []
    providers = Providers(None, fence=FakeFence(calls, leader=True))
    providers.vms = CountingProvider(calls)
    assert (
        await providers.launch(CreateRequest(hostname="web-abc12", source=SOURCE))
    ).outcome is Outcome.DONE
    assert (await providers.delete(instance("web-abc12"))).outcome is Outcome.DONE
    assert calls == ["fence:launch", "launch", "fence:delete", "delete"]


async def test_a_process_that_is_not_leader_sends_nothing() -> None:
    calls: list[str] = []
    providers = Providers(None, fence=FakeFence(calls, leader=False))
    providers.vms = CountingProvider(calls)
    with pytest.raises(NotLeader):
        await providers.launch(CreateRequest(hostname="web-abc12", source=SOURCE))
    with pytest.raises(NotLeader):
        await providers.delete(instance("web-abc12"))
    assert calls == ["fence:launch", "fence:delete"]
    await providers.listing(SOURCE, max_age=1)  # reading is not fenced
    assert calls[-1] == "list"


async def test_a_not_leader_process_sends_no_request_to_vpsie() -> None:
    clock = FakeClock()
    async with running_simulator(sim_config(), clock=clock) as (sim, url):
        client = VPSieClient(
            VPSieClientConfig(base_url=url, api_token=API_TOKEN),
            clock=RealClock(),
            registry=CollectorRegistry(),
        )
        async with client:
            providers = Providers(client, fence=FakeFence([], leader=False))
            source = VMSource(
                hostname_prefix="web-",
                resource_identifier="7d0c1f3e-9b2a-11ee-8c90-0050569c68dc",
                os_identifier=DEFAULT_OS,
                dc_identifier=DEFAULT_DATACENTER,
                project_identifier=DEFAULT_PROJECT,
            )
            with pytest.raises(NotLeader):
                await providers.launch(CreateRequest(hostname="web-abc12", source=source))
            assert [r for r in sim.requests if r["method"] != "GET"] == []
            assert sim.state.vms == {}


# --- cluster identity --------------------------------------------------------------------------------


class FakeNamespaces:
    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.reads.append((res.plural, name))
        return {"metadata": {"name": name, "uid": "4b7e0c2a-uid"}}


async def test_the_cluster_identity_is_the_configured_id() -> None:
    kube = FakeNamespaces()
    identity = ClusterIdentity(cast(KubeClient, kube), "prod-eu")
    assert await identity.get() == "prod-eu"
    assert kube.reads == []


async def test_the_cluster_identity_defaults_to_the_kube_system_namespace_uid_read_once() -> None:
    kube = FakeNamespaces()
    identity = ClusterIdentity(cast(KubeClient, kube), None)
    assert await identity.get() == "4b7e0c2a-uid"
    assert await identity.get() == "4b7e0c2a-uid"
    assert kube.reads == [(NAMESPACES.plural, "kube-system")]
    empty = ClusterIdentity(cast(KubeClient, FakeNamespaces()), "")
    assert await empty.get() == "4b7e0c2a-uid"  # an empty --cluster-id is no id
    with pytest.raises(RuntimeError):
        await ClusterIdentity(None).get()


def configured(providers: Providers) -> object:
    """The plain-VM provider once a client is configured, else None (the unconfigured stand-in)."""
    if providers.client is None:
        assert isinstance(providers.vms, UnconfiguredProvider)
        return None
    return providers.vms


# --- credentials -------------------------------------------------------------------------------------


async def test_credentials_that_appear_after_start_build_the_client_without_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_simulator(sim_config(), clock=clock) as (sim, url):
        cfg = settings(vpsie_base_url=url, vpsie_credentials_dir=str(tmp_path))
        with pytest.raises(ProviderConfigError):
            client_config(cfg)  # the Secret is not mounted yet
        providers = Providers(None, unconfigured_reason="no credentials yet")

        def build(creds: Credentials) -> VPSieClient:
            return build_client(cfg, clock=RealClock(), registry=CollectorRegistry(), credentials=creds)

        watcher = CredentialsWatcher(providers, str(tmp_path), build=build, clock=clock)
        assert await watcher.check() is False
        assert configured(providers) is None
        (tmp_path / "apiToken").write_text(API_TOKEN + "\n")
        assert await watcher.check() is True
        try:
            assert isinstance(configured(providers), VMProvider)
            assert await providers.listing(SOURCE, max_age=0) == []  # VPSie answers now
            assert any(r["status"] == 200 for r in sim.requests)
            assert await watcher.check() is False  # unchanged
        finally:
            if providers.client is not None:
                await providers.client.close()


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
        built: list[Credentials] = []

        def build(creds: Credentials) -> VPSieClient:
            built.append(creds)
            raise AssertionError("a configured client is rotated, never rebuilt")

        async with client:
            providers = Providers(client)
            watcher = CredentialsWatcher(providers, str(tmp_path), build=build, clock=clock)
            await watcher.check()  # first look: the mounted token is the one in use
            (tmp_path / "apiToken").write_text("rotated-token\n")
            assert await watcher.check() is True
            assert client.config.api_token is not None
            assert client.config.api_token.get_secret_value() == "rotated-token"
            (tmp_path / "apiToken").write_text("wrong-token")
            assert await watcher.check() is False
            assert client.config.api_token.get_secret_value() == "rotated-token"
            (tmp_path / "apiToken").unlink()
            assert await watcher.check() is False  # unreadable: keep what works
            assert client.config.api_token.get_secret_value() == "rotated-token"
            assert providers.client is client
            assert built == []


# --- the stock vpsie-secret ---------------------------------------------------------------------------


def test_the_secrets_url_is_the_base_url_when_present(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("stock-token\n")
    (tmp_path / "url").write_text("https://api2.vpsie.com/apps/v2\n")
    cfg = client_config(settings(vpsie_credentials_dir=str(tmp_path)))
    assert cfg.base_url == "https://api2.vpsie.com"
    assert cfg.api_token is not None
    assert cfg.api_token.get_secret_value() == "stock-token"
    (tmp_path / "url").unlink()
    cfg = client_config(settings(vpsie_credentials_dir=str(tmp_path), vpsie_base_url="https://x.example"))
    assert cfg.base_url == "https://x.example"


def test_a_refused_configuration_names_the_problem_never_the_token(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("tok-Kq81-never-shown")
    (tmp_path / "url").write_text("http://vpsie.example.com/apps/v2")  # plain http off loopback
    with pytest.raises(ProviderConfigError, match=r"plain http to vpsie\.example\.com") as exc:
        client_config(settings(vpsie_credentials_dir=str(tmp_path)))
    assert "tok-Kq81" not in str(exc.value)
    assert "input_value" not in str(exc.value)


async def test_a_secret_still_broken_reports_its_newest_problem(tmp_path: Path) -> None:
    providers = Providers(None, unconfigured_reason="missing clientId")

    def build(creds: Credentials) -> VPSieClient:
        return build_client(settings(), clock=RealClock(), registry=CollectorRegistry(), credentials=creds)

    watcher = CredentialsWatcher(providers, str(tmp_path), build=build, clock=FakeClock())
    (tmp_path / "token").write_text("")
    assert await watcher.check() is False
    with pytest.raises(Unauthorized, match="token is empty"):
        await providers.listing(SOURCE, max_age=0)
    (tmp_path / "token").write_text("tok-Kq81-never-shown")
    (tmp_path / "url").write_text("http://vpsie.example.com")
    assert await watcher.check() is False
    with pytest.raises(Unauthorized, match="plain http") as exc:
        await providers.listing(SOURCE, max_age=0)
    assert "tok-Kq81" not in str(exc.value)
    assert providers.client is None
