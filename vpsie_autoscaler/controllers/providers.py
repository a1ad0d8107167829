"""The VPSie client and the NodeProviders the controllers use, built once from :class:`Settings`.

Every VPSie call of the controllers goes through a :class:`~vpsie_autoscaler.vpsie.provider.NodeProvider`
(Karpenter's cloud-provider shape). :class:`Providers` holds one client and one provider per source kind
and turns the source copied into a VPSieNode (or read from a NodeGroup) into the provider's
:data:`~vpsie_autoscaler.vpsie.provider.NodeSource`:

- managed groups are named by VPSie group name or id; the numeric id VPSie uses in its paths is
  resolved once per (cluster, name) and cached;
- plain-VM groups are "every VM whose hostname starts with ``<group>-``": the same prefix
  :func:`~vpsie_autoscaler.api.vpsienode.hostname_for` gives every new VPSieNode of the group.

**Claims survive restarts.** The managed provider binds the hostname we chose to the node VPSie names
itself, through claims it writes *before* add-node (see :mod:`vpsie_autoscaler.vpsie.managed`).
:class:`VPSieNodeClaimStore` persists each claim in an annotation of the VPSieNode of that hostname, so
a crash between add-node and the node's appearance is resumed by the next leader: it loads the claim,
sees the request was sent, and binds the node when it appears instead of adding a second one. A claim
that cannot be written fails the create (write-ahead: no cloud call without a durable record).

**Credential rotation.** With ``--vpsie-credentials-dir`` (a mounted Secret) :class:`CredentialsWatcher`
re-reads the files every few seconds; a change is handed to
:meth:`~vpsie_autoscaler.vpsie.client.VPSieClient.update_credentials`, which switches only once the new
credentials are proven to work (the old ones stay otherwise). Kubernetes updates mounted Secrets in
place (an atomic symlink swap), so polling sees every rotation without a watch on the Secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final, NoReturn

import orjson
import structlog
from prometheus_client import CollectorRegistry

from vpsie_autoscaler.api import nodegroup as api
from vpsie_autoscaler.api.labels import GROUP
from vpsie_autoscaler.api.vpsienode import HOSTNAME_SUFFIX_LENGTH, VPSieNode, hostname_for
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.errors import NotFound as KubeNotFound
from vpsie_autoscaler.kube.resources import VPSIENODES
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.credentials import Credentials, CredentialsError, read_credentials_dir
from vpsie_autoscaler.vpsie.errors import NotFound, Unauthorized, VPSieError
from vpsie_autoscaler.vpsie.managed import Claim, ManagedKubernetesProvider
from vpsie_autoscaler.vpsie.provider import (
    CreateRequest,
    Instance,
    ManagedSource,
    NodeProvider,
    NodeSource,
    VMSource,
)
from vpsie_autoscaler.vpsie.vms import VMProvider

log = structlog.get_logger("vpsie_autoscaler.controllers.providers")

CLAIM_ANNOTATION: Final = f"{GROUP}/claim"
"""On VPSieNodes of managed groups: the provider's claim (JSON), written before add-node."""

LIST_CACHE_SECONDS: Final = 2.0
"""How long one VPSie listing of a source answers every ``get``/``list`` (see :class:`CachedProvider`)."""

CREDENTIALS_POLL_SECONDS: Final = 10.0
"""How often the mounted credentials are re-read. The kubelet refreshes mounted Secrets about once a
minute, so 10 s adds little delay and costs one small file read."""


class ProviderConfigError(ValueError):
    """The VPSie connection cannot be configured from the settings; the message says which setting."""


def client_config(settings: Settings) -> VPSieClientConfig:
    """The VPSie client configuration from settings (credentials from env or the mounted directory)."""
    creds = Credentials()
    if settings.vpsie_credentials_dir:
        try:
            creds = read_credentials_dir(settings.vpsie_credentials_dir)
        except CredentialsError as exc:
            raise ProviderConfigError(str(exc)) from None
    elif settings.vpsie_api_token is not None:
        creds = Credentials(api_token=settings.vpsie_api_token.get_secret_value())
    elif settings.vpsie_client_id and settings.vpsie_client_secret is not None:
        creds = Credentials(
            client_id=settings.vpsie_client_id, client_secret=settings.vpsie_client_secret.get_secret_value()
        )
    else:
        raise ProviderConfigError(
            "no VPSie credentials: set VPSIE_AUTOSCALER_VPSIE_API_TOKEN, or VPSIE_AUTOSCALER_VPSIE_CLIENT_ID "
            "and VPSIE_AUTOSCALER_VPSIE_CLIENT_SECRET, or --vpsie-credentials-dir"
        )
    try:
        return VPSieClientConfig.model_validate(
            {
                "base_url": settings.vpsie_base_url,
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "api_token": creds.api_token,
                "rate_limit_per_minute": float(settings.vpsie_rate_limit),
            }
        )
    except ValueError as exc:
        raise ProviderConfigError(f"VPSie client configuration: {exc}") from None


def build_client(settings: Settings, *, clock: Clock, registry: CollectorRegistry) -> VPSieClient:
    """The process's VPSie client (its metrics on the manager's registry)."""
    return VPSieClient(client_config(settings), clock=clock, registry=registry)


# --- claims -----------------------------------------------------------------------------------------


def claim_to_json(claim: Claim) -> str:
    return orjson.dumps(
        {
            "requested": claim.requested,
            "clusterIdentifier": claim.source.cluster_identifier,
            "groupId": claim.source.group_id,
            "groupName": claim.source.group_name,
            "baseline": sorted(claim.baseline),
            "created": claim.created.isoformat(),
            "bound": claim.bound,
            "sent": claim.sent,
        }
    ).decode()


def claim_from_json(text: str) -> Claim:
    """Parse a persisted claim; raises ``ValueError`` (with the reason) for a malformed one."""
    try:
        raw = orjson.loads(text)
        return Claim(
            requested=str(raw["requested"]),
            source=ManagedSource(
                cluster_identifier=str(raw["clusterIdentifier"]),
                group_id=int(raw["groupId"]),
                group_name=str(raw.get("groupName") or ""),
            ),
            baseline=frozenset(str(h) for h in raw["baseline"]),
            created=datetime.fromisoformat(str(raw["created"])),
            bound=None if raw.get("bound") is None else str(raw["bound"]),
            sent=bool(raw.get("sent", True)),  # claims written before "sent" existed were all sent
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed claim annotation: {exc}") from None


class VPSieNodeClaimStore:
    """A :class:`~vpsie_autoscaler.vpsie.managed.ClaimStore` in the VPSieNodes' annotations.

    The VPSieNode named after the requested hostname holds its claim, so the claim lives exactly as
    long as the record of the node: it is loaded by the next leader and goes with the object.
    """

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def load(self) -> list[Claim]:
        listed = await self._kube.list(VPSIENODES)
        claims = []
        for obj in listed.get("items") or []:
            text = ((obj.get("metadata") or {}).get("annotations") or {}).get(CLAIM_ANNOTATION)
            if not text:
                continue
            try:
                claims.append(claim_from_json(text))
            except ValueError as exc:
                log.error("claim.malformed", vpsienode=obj["metadata"]["name"], error=str(exc))
        return claims

    async def put(self, claim: Claim) -> None:
        # No VPSieNode, no claim, no add-node: KubeNotFound propagates and fails the create.
        await self._kube.merge_patch(
            VPSIENODES,
            claim.key,
            {"metadata": {"annotations": {CLAIM_ANNOTATION: claim_to_json(claim)}}},
        )

    async def remove(self, requested: str) -> None:
        with contextlib.suppress(KubeNotFound):  # the record is gone, and its claim with it
            await self._kube.merge_patch(
                VPSIENODES, requested.lower(), {"metadata": {"annotations": {CLAIM_ANNOTATION: None}}}
            )


# --- providers --------------------------------------------------------------------------------------


class CachedProvider:
    """One provider ``list`` per source shared by every caller for ``ttl`` seconds (single flight).

    VPSie cannot be watched and ``get`` is "list, then search", so without sharing, every VPSieNode
    poll and every NodeGroup reconcile would list the whole account: ten booting nodes polled every
    5 s are 240 requests a minute against a client-side limit of 100. Writes through this provider
    invalidate the source's entry, so our own create or delete is visible to the next read. The TTL
    runs on the process's monotonic clock: this is a performance cache, not a business timer.
    """

    def __init__(
        self,
        inner: NodeProvider,
        *,
        ttl: float = LIST_CACHE_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self._ttl = ttl
        self._monotonic = monotonic
        self._cache: dict[NodeSource, tuple[float, list[Instance]]] = {}
        self._locks: dict[NodeSource, asyncio.Lock] = {}
        self._generation: dict[NodeSource, int] = {}

    def invalidate(self, source: NodeSource) -> None:
        # A listing already in flight when a write happens must not be stored: it may predate the write.
        self._generation[source] = self._generation.get(source, 0) + 1
        self._cache.pop(source, None)

    def _fresh(self, source: NodeSource) -> list[Instance] | None:
        entry = self._cache.get(source)
        if entry is None or self._monotonic() - entry[0] > self._ttl:
            return None
        return list(entry[1])

    async def list(self, source: NodeSource) -> list[Instance]:
        found = self._fresh(source)
        if found is not None:
            return found
        async with self._locks.setdefault(source, asyncio.Lock()):
            found = self._fresh(source)
            if found is not None:
                return found
            generation = self._generation.get(source, 0)
            listed = await self.inner.list(source)
            if self._generation.get(source, 0) == generation:
                self._cache[source] = (self._monotonic(), listed)
            return list(listed)

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        return next((i for i in await self.list(source) if i.answers_to(hostname)), None)

    async def create(self, request: CreateRequest) -> None:
        try:
            await self.inner.create(request)
        finally:
            self.invalidate(request.source)

    async def delete(self, instance: Instance) -> None:
        try:
            await self.inner.delete(instance)
        finally:
            self.invalidate(instance.source)


class _FreshReads:
    """Reads straight from the wrapped provider; writes still invalidate the shared listing."""

    def __init__(self, cached: CachedProvider) -> None:
        self._cached = cached

    async def list(self, source: NodeSource) -> list[Instance]:
        return await self._cached.inner.list(source)

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        return await self._cached.inner.get(source, hostname)

    async def create(self, request: CreateRequest) -> None:
        await self._cached.create(request)

    async def delete(self, instance: Instance) -> None:
        await self._cached.delete(instance)


class UnconfiguredProvider:
    """Stands in when VPSie cannot be reached as configured (no credentials): every call fails with
    :class:`~vpsie_autoscaler.vpsie.errors.Unauthorized` naming the problem, so NodeGroups report it
    in their ``CloudError`` condition and Events instead of the process refusing to start (a VPSie
    problem never fails a probe, SPEC §6)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self, operation: str) -> NoReturn:
        raise Unauthorized(self.reason, operation=operation)

    async def create(self, request: CreateRequest) -> None:
        self._fail("create")

    async def delete(self, instance: Instance) -> None:
        self._fail("delete")

    async def list(self, source: NodeSource) -> list[Instance]:
        self._fail("list")

    async def get(self, source: NodeSource, hostname: str) -> Instance | None:
        self._fail("get")


def vm_prefix(group_name: str) -> str:
    """The hostname prefix of every VM of a NodeGroup (``hostname_for`` minus the random suffix)."""
    return hostname_for(group_name, "0" * HOSTNAME_SUFFIX_LENGTH)[:-HOSTNAME_SUFFIX_LENGTH]


class Providers:
    """One VPSie client, one provider per source kind, and the mapping from our sources to theirs."""

    def __init__(
        self,
        client: VPSieClient | None,
        kube: KubeClient,
        *,
        clock: Clock | None = None,
        unconfigured_reason: str = "VPSie client not configured",
    ) -> None:
        self.client = client
        self._unconfigured_reason = unconfigured_reason
        clock = clock or RealClock()
        self.managed: NodeProvider
        self.vms: NodeProvider
        if client is None:
            self.managed = self.vms = UnconfiguredProvider(unconfigured_reason)
        else:
            self.managed = CachedProvider(
                ManagedKubernetesProvider(client, clock=clock, claims=VPSieNodeClaimStore(kube))
            )
            self.vms = CachedProvider(VMProvider(client, clock=clock))
        self._group_ids: dict[tuple[str, str], int] = {}

    def provider_for(self, source: NodeSource, *, fresh: bool = False) -> NodeProvider:
        """The provider of that source kind. ``fresh`` skips the shared listing: for decisions that
        must see VPSie as it is now (adopt-or-create, "the instance is gone", orphan detection)."""
        provider = self.managed if isinstance(source, ManagedSource) else self.vms
        if fresh and isinstance(provider, CachedProvider):
            return _FreshReads(provider)
        return provider

    async def source_for(
        self, group_name: str, managed: api.ManagedSource | None, vm: api.VMSource | None
    ) -> NodeSource:
        """The provider's source for a NodeGroup (or a VPSieNode's copy of it).

        Raises :class:`~vpsie_autoscaler.vpsie.errors.NotFound` when the VPSie group name does not
        exist in the cluster, and any VPSie error of the lookup.
        """
        if vm is not None:
            return VMSource(
                hostname_prefix=vm_prefix(group_name),
                resource_identifier=vm.resource_identifier,
                os_identifier=vm.os_identifier,
                dc_identifier=vm.dc_identifier,
                project_identifier=vm.project_id,
                ssh_key_identifier=vm.ssh_key_identifier,
                script_identifier=vm.script_identifier,
                tags=tuple(vm.tags),
            )
        if managed is None:
            raise ValueError(f"NodeGroup {group_name} has no node source")
        if managed.node_group_id is not None:
            return ManagedSource(
                cluster_identifier=managed.cluster_identifier,
                group_id=managed.node_group_id,
                group_name=managed.node_group_name or "",
            )
        name = managed.node_group_name or ""
        key = (managed.cluster_identifier, name)
        group_id = self._group_ids.get(key)
        if group_id is None:
            if self.client is None:
                raise Unauthorized(self._unconfigured_reason, operation="list_node_groups")
            groups = await self.client.list_node_groups(managed.cluster_identifier)
            found = next((g for g in groups if g.group_name == name), None)
            if found is None:
                raise NotFound(
                    f"VPSie node group {name!r} not found in cluster {managed.cluster_identifier}",
                    operation="list_node_groups",
                )
            group_id = self._group_ids[key] = found.id
        return ManagedSource(
            cluster_identifier=managed.cluster_identifier, group_id=group_id, group_name=name
        )

    async def source_of(self, node: VPSieNode) -> NodeSource:
        return await self.source_for(node.spec.node_group, node.spec.managed, node.spec.vm)


# --- credential rotation ----------------------------------------------------------------------------


class CredentialsWatcher:
    """Re-reads the mounted credentials and rotates the client's credentials when they change."""

    def __init__(
        self,
        client: VPSieClient,
        directory: str,
        *,
        clock: Clock | None = None,
        interval: float = CREDENTIALS_POLL_SECONDS,
    ) -> None:
        self._client = client
        self._directory = directory
        self._clock = clock or RealClock()
        self._interval = interval
        self._last: Credentials | None = None

    async def check(self) -> bool:
        """One look at the directory; True when the client switched to new credentials."""
        try:
            creds = await asyncio.to_thread(read_credentials_dir, self._directory)
        except CredentialsError as exc:
            log.warning("credentials.unreadable", error=str(exc), note="keeping the current credentials")
            return False
        if creds == self._last:
            return False
        try:
            changed = await self._client.update_credentials(
                client_id=creds.client_id, client_secret=creds.client_secret, api_token=creds.api_token
            )
        except (VPSieError, ValueError) as exc:
            log.error("credentials.rejected", error=str(exc), note="keeping the current credentials")
            return False
        self._last = creds
        return changed

    async def run(self) -> None:
        while True:
            await self.check()
            await self._clock.sleep(self._interval)


async def close_on_stop(client: VPSieClient) -> None:
    """A runnable that only closes the client's HTTP session when the manager stops."""
    try:
        await asyncio.Event().wait()
    finally:
        await client.close()


def managed_claim(obj: dict[str, Any]) -> Claim | None:
    """The claim persisted on a VPSieNode object, if any (malformed ones are ignored)."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(CLAIM_ANNOTATION)
    if not text:
        return None
    try:
        return claim_from_json(text)
    except ValueError:
        return None
