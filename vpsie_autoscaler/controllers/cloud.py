"""The VPSie client and the NodeProviders the controllers use, built once from :class:`Settings`.

Every VPSie call of the controllers goes through a :class:`~vpsie_autoscaler.vpsie.provider.NodeProvider`
(Karpenter's cloud-provider shape). :class:`Providers` holds one client and one provider per source kind
and turns the source copied into a VPSieNode (or read from a NodeGroup) into the provider's
:data:`~vpsie_autoscaler.vpsie.provider.NodeSource`:

- managed groups are named by VPSie group name or id; the numeric id VPSie uses in its paths is
  resolved once per (cluster, name) and cached;
- a managed record on a size of its own (``spec.planSizeId``: a group with several plans) goes to the
  cluster's VPSie node group of that size: VPSie keeps one group per size, so the size names it. It is
  found by size, or created on demand through :meth:`Providers.ensure_group` (the one place that
  creates VPSie groups) as ``<NodeGroup>-size-<size id>``;
- plain-VM groups are "every VM named ``<group>-<5 [a-z0-9]>``": the name
  :func:`~vpsie_autoscaler.api.vpsienode.hostname_for` gives every new VPSieNode of the group; the VMs
  are tagged at creation with :func:`ownership_tags` (this cluster, the NodeGroup).

**One listing per group, shared.** VPSie cannot be watched, so every poll is a listing.
:meth:`Providers.listing` answers every caller from one listing per source no older than the age the
caller accepts (single flight): ten nodes booting, twenty deleting and the NodeGroup's own check cost
one read per interval, not one each.

**Fencing.** Every mutation passes :meth:`Fence.check` right before it is sent: a process that is not
sure it still holds the leader lease (with margin) sends nothing (:mod:`vpsie_autoscaler.runtime.fence`).

**Credential rotation.** With ``--vpsie-credentials-dir`` (a mounted Secret) :class:`CredentialsWatcher`
re-reads the files every few seconds; a change is handed to
:meth:`~vpsie_autoscaler.vpsie.client.VPSieClient.update_credentials`, which switches only once the new
credentials are proven to work (the old ones stay otherwise). Credentials missing or unreadable at start
are not final: the watcher builds the client as soon as the files become valid (no restart).
Kubernetes updates mounted Secrets in place (an atomic symlink swap), so polling sees every rotation
without a watch on the Secret.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Hashable
from typing import Final, NoReturn, Protocol, cast

import structlog
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from vpsie_autoscaler.api import nodegroup as api
from vpsie_autoscaler.api.vpsienode import HOSTNAME_SUFFIX_LENGTH, VPSieNode, hostname_for
from vpsie_autoscaler.config import Settings
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import NAMESPACES
from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.client import VPSieClient, VPSieClientConfig
from vpsie_autoscaler.vpsie.credentials import (
    Credentials,
    CredentialsError,
    SecretHints,
    read_credentials_dir,
)
from vpsie_autoscaler.vpsie.errors import ErrorClass, NotFound, Unauthorized, VPSieError
from vpsie_autoscaler.vpsie.managed import EnsuredGroup, ManagedKubernetesProvider, ensure_node_group
from vpsie_autoscaler.vpsie.provider import (
    CreateRequest,
    Instance,
    ManagedSource,
    MutationResult,
    NodeProvider,
    NodeSource,
    ScopedListing,
    VMSource,
)
from vpsie_autoscaler.vpsie.vms import VMProvider

log = structlog.get_logger("vpsie_autoscaler.controllers.cloud")

GROUP_DOUBT_SECONDS: Final = 120.0
"""After a create of a VPSie node group whose answer was lost and that no listing shows, no new create
for this long: VPSie may still be making it (its add-node is asynchronous too)."""

CREDENTIALS_POLL_SECONDS: Final = 10.0
"""How often the mounted credentials are re-read. The kubelet refreshes mounted Secrets about once a
minute, so 10 s adds little delay and costs one small file read."""


class SizeGroupRefused(VPSieError):
    """No VPSie node group of a record's size exists and VPSie (or the one-group-per-size rule) refused
    to create one: the record cannot be launched as it is (the group backs off)."""


class SizeGroupInDoubt(VPSieError):
    """The VPSie node group of a size was asked for and may exist, but no listing shows it yet: look
    again later, never ask twice (:func:`~vpsie_autoscaler.vpsie.managed.ensure_node_group`)."""

    default_class = ErrorClass.TRANSIENT


def size_group_name(node_group: str, size_id: int) -> str:
    """The name a VPSie node group created for a NodeGroup's size gets (``<NodeGroup>-size-<id>``)."""
    return f"{node_group}-size-{size_id}"


class ProviderConfigError(ValueError):
    """The VPSie connection cannot be configured from the settings; the message says which setting."""


def client_config(settings: Settings, credentials: Credentials | None = None) -> VPSieClientConfig:
    """The VPSie client configuration from settings (credentials from env or the mounted directory,
    or ``credentials`` when given: those just read by :class:`CredentialsWatcher`)."""
    creds = Credentials()
    if credentials is not None:
        creds = credentials
    elif settings.vpsie_credentials_dir:
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
            "and VPSIE_AUTOSCALER_VPSIE_CLIENT_SECRET, or --vpsie-credentials-dir (a mounted Secret with "
            "token or apiToken, or clientId and clientSecret)"
        )
    try:
        return VPSieClientConfig.model_validate(
            {
                "base_url": creds.base_url or settings.vpsie_base_url,  # the Secret's url wins
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "api_token": creds.api_token,
                "rate_limit_per_minute": float(settings.vpsie_rate_limit),
                "rate_limit_burst": settings.vpsie_rate_limit_burst,
            }
        )
    except ValidationError as exc:
        # Only the messages: pydantic's text quotes the input, which holds the credentials.
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ProviderConfigError(f"VPSie client configuration: {reasons}") from None


def build_client(
    settings: Settings,
    *,
    clock: Clock,
    registry: CollectorRegistry,
    credentials: Credentials | None = None,
) -> VPSieClient:
    """The process's VPSie client (its metrics on the manager's registry)."""
    return VPSieClient(client_config(settings, credentials), clock=clock, registry=registry)


# --- providers --------------------------------------------------------------------------------------


OWNER_TAG_PREFIX: Final = "vpsie-autoscaler"


def ownership_tags(cluster_id: str, group_name: str) -> tuple[str, str]:
    """The tags every VM we create carries: proof of ownership for garbage collection.

    ``vpsie-autoscaler:cluster=<id>`` names this Kubernetes cluster (by default the ``kube-system``
    namespace's UID, the identity cluster-autoscaler and Cluster API use), ``…:nodegroup=<name>`` the
    NodeGroup. A VM named like ours but without the cluster tag belongs to someone else.
    """
    return (cluster_tag(cluster_id), f"{OWNER_TAG_PREFIX}:nodegroup={group_name}")


def cluster_tag(cluster_id: str) -> str:
    return f"{OWNER_TAG_PREFIX}:cluster={cluster_id}"


def tagged_group(tags: frozenset[str]) -> str | None:
    """The NodeGroup an ownership tag names, if any."""
    prefix = f"{OWNER_TAG_PREFIX}:nodegroup="
    return next((t.removeprefix(prefix) for t in tags if t.startswith(prefix)), None)


class ClusterIdentity:
    """This Kubernetes cluster's identity in ownership tags: the configured ``--cluster-id``, else the
    UID of the ``kube-system`` namespace (stable for the cluster's life, unique across clusters: the
    identity Cluster API and cluster-autoscaler's cloud providers use). Read once, then kept."""

    def __init__(self, kube: KubeClient | None, configured: str | None = None) -> None:
        self._kube = kube
        self._value = configured or None

    async def get(self) -> str:
        if self._value is None:
            if self._kube is None:
                raise RuntimeError("no cluster id configured and no Kubernetes client to read one")
            namespace = await self._kube.get(NAMESPACES, "kube-system")
            self._value = str(namespace["metadata"]["uid"])
        return self._value


class Fence(Protocol):
    """Raises unless this process may send a cloud mutation now (:mod:`vpsie_autoscaler.runtime.fence`)."""

    def check(self, operation: str) -> None: ...


class _Open:
    def check(self, operation: str) -> None:
        return None


class SharedListings:
    """One provider read per listing scope, shared by every caller that accepts its age (single flight).

    The age each caller accepts is its own: a record waiting for its instance accepts the poll
    interval, a deletion waiting for the instance to go accepts the scan interval, so the number of
    reads is set by the most impatient caller, not by the number of callers. A provider whose reads
    cover several sources (:class:`~vpsie_autoscaler.vpsie.provider.ScopedListing`: all plain VMs of the
    account, all groups of a managed cluster) answers every source of the scope from one read, so the
    reads scale with scopes, not with NodeGroups. Runs on the process's monotonic clock: a performance
    cache, never a business timer.
    """

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._cache: dict[Hashable, tuple[float, object]] = {}
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._scopes: dict[NodeSource, Hashable] = {}
        self.reads = 0

    def invalidate(self, source: NodeSource) -> None:
        self._cache.pop(self._scopes.get(source, source), None)

    def _fresh(self, scope: Hashable, max_age: float) -> object | None:
        entry = self._cache.get(scope)
        if entry is None or self._monotonic() - entry[0] > max_age:
            return None
        return entry[1]

    async def list(
        self, provider: NodeProvider, source: NodeSource, max_age: float
    ) -> builtins.list[Instance]:
        scoped = provider if isinstance(provider, ScopedListing) else _PerSource(provider)
        scope = self._scopes[source] = scoped.listing_scope(source)
        found = self._answer(scoped, source, scope, max_age)
        if found is not None:
            return found
        async with self._locks.setdefault(scope, asyncio.Lock()):
            found = self._answer(scoped, source, scope, max_age)  # a read finished while this call waited
            if found is not None:
                return found
            return scoped.select(source, await self._read(scoped, scope, source))

    def _answer(
        self, scoped: ScopedListing, source: NodeSource, scope: Hashable, max_age: float
    ) -> builtins.list[Instance] | None:
        read = self._fresh(scope, max_age)
        if read is None:
            return None
        try:
            return scoped.select(source, read)
        except VPSieError:  # a read made for another source may predate this one (a new group): re-read
            return None

    async def _read(self, scoped: ScopedListing, scope: Hashable, source: NodeSource) -> object:
        started = self._monotonic()  # aged from before the call: it may predate writes
        read = await scoped.read_scope(source)
        self.reads += 1
        self._cache[scope] = (started, read)
        return read


class _PerSource:
    """A provider without scopes, as one: each source is its own scope and its listing is the read."""

    def __init__(self, provider: NodeProvider) -> None:
        self._provider = provider

    def listing_scope(self, source: NodeSource) -> Hashable:
        return source

    async def read_scope(self, source: NodeSource) -> object:
        return await self._provider.list(source)

    def select(self, source: NodeSource, read: object) -> builtins.list[Instance]:
        return list(cast("builtins.list[Instance]", read))


class UnconfiguredProvider:
    """Stands in when VPSie cannot be reached as configured (no credentials): every call fails with
    :class:`~vpsie_autoscaler.vpsie.errors.Unauthorized` naming the problem, so NodeGroups report it
    in their ``CloudError`` condition and Events instead of the process refusing to start (a VPSie
    problem never fails a probe: README, "Metrics, probes, Events"). Mutations report "not done":
    nothing was sent."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _fail(self, operation: str) -> NoReturn:
        raise Unauthorized(self.reason, operation=operation)

    async def launch(self, request: CreateRequest) -> MutationResult:
        return MutationResult.of_error(Unauthorized(self.reason, operation="launch"))

    async def delete(self, instance: Instance) -> MutationResult:
        return MutationResult.of_error(Unauthorized(self.reason, operation="delete"))

    async def list(self, source: NodeSource) -> list[Instance]:
        self._fail("list")

    async def owner_tags(self, instance: Instance) -> frozenset[str] | None:
        self._fail("owner_tags")


def vm_hostname_prefix(group_name: str) -> str:
    """The hostname prefix of every VM of a NodeGroup (``hostname_for`` minus the random suffix)."""
    return hostname_for(group_name, "0" * HOSTNAME_SUFFIX_LENGTH)[:-HOSTNAME_SUFFIX_LENGTH]


class Providers:
    """One VPSie client, one provider per source kind, the shared listings, the fence, and the mapping
    from our sources to theirs."""

    def __init__(
        self,
        client: VPSieClient | None,
        *,
        identity: ClusterIdentity | None = None,
        fence: Fence | None = None,
        unconfigured_reason: str = "VPSie client not configured",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity or ClusterIdentity(None, "unnamed-cluster")
        self.fence: Fence = fence or _Open()
        self.listings = SharedListings(monotonic=monotonic)
        self._monotonic = monotonic
        self._group_ids: dict[tuple[str, str], int] = {}
        self._size_groups: dict[tuple[str, int], tuple[int, str]] = {}
        self._groups: dict[str, tuple[float, list[models.K8sNodeGroup]]] = {}
        self._group_doubt: dict[tuple[str, str], float] = {}
        self.hints = SecretHints()
        """Discovery hints of the mounted stock ``vpsie-secret`` (kept current by the watcher)."""
        self.client: VPSieClient | None = None
        self.managed: NodeProvider = UnconfiguredProvider(unconfigured_reason)
        self.vms: NodeProvider = self.managed
        self._unconfigured_reason = unconfigured_reason
        if client is not None:
            self.configure(client)

    def configure(self, client: VPSieClient) -> None:
        """Use this client from now on (at start, or once credentials missing at start appear)."""
        self.client = client
        self.managed = ManagedKubernetesProvider(client, monotonic=self._monotonic)
        self.vms = VMProvider(client)

    def report_unconfigured(self, reason: str) -> None:
        """While there is no client, every call fails with this (newer) reason."""
        if self.client is None:
            self._unconfigured_reason = reason
            self.managed = self.vms = UnconfiguredProvider(reason)

    def provider_for(self, source: NodeSource) -> NodeProvider:
        return self.managed if isinstance(source, ManagedSource) else self.vms

    async def listing(self, source: NodeSource, *, max_age: float) -> list[Instance]:
        """The source's instances from a listing no older than ``max_age`` seconds (shared)."""
        return await self.listings.list(self.provider_for(source), source, max_age)

    async def node_groups(self, cluster: str, *, max_age: float) -> list[models.K8sNodeGroup]:
        """The VPSie node groups of a cluster from a listing no older than ``max_age`` seconds: every
        managed NodeGroup's source is resolved from it on each reconcile (controllers/discovery.py)."""
        entry = self._groups.get(cluster)
        if entry is not None and self._monotonic() - entry[0] <= max_age:
            return list(entry[1])
        if self.client is None:
            raise Unauthorized(self._unconfigured_reason, operation="list_node_groups")
        started = self._monotonic()
        groups = await self.client.list_node_groups(cluster)
        self._groups[cluster] = (started, groups)
        return list(groups)

    async def ensure_group(
        self, cluster: str, name: str, size_id: int, *, may_create: bool = True
    ) -> EnsuredGroup:
        """The VPSie node group ``name`` of the cluster, created with ``size_id`` when missing: fenced,
        with a create in doubt settled by listing for :data:`GROUP_DOUBT_SECONDS` before another is
        sent (:func:`~vpsie_autoscaler.vpsie.managed.ensure_node_group`, the single place)."""
        if self.client is None:
            raise Unauthorized(self._unconfigured_reason, operation="create_node_group")
        key = (cluster, name)
        since = self._group_doubt.get(key)
        settling = since is not None and self._monotonic() - since < GROUP_DOUBT_SECONDS
        result = await ensure_node_group(
            self.client,
            cluster,
            name,
            size_id,
            may_create=may_create and not settling,
            before_create=lambda: self.fence.check("create_node_group"),
        )
        if result.in_doubt and may_create and not settling:
            self._group_doubt[key] = self._monotonic()
        elif not result.in_doubt:
            self._group_doubt.pop(key, None)
        if result.created:
            self._groups.pop(cluster, None)
        return result

    async def delete_group_if_empty(self, cluster: str, group_id: int, *, reason: str) -> str:
        """Delete the VPSie node group when no node is left in it; what happened, in words. A group
        that still has nodes is kept: deleting it would take them down without a drain."""
        if self.client is None:
            raise Unauthorized(self._unconfigured_reason, operation="delete_node_group")
        groups = await self.client.list_node_groups(cluster)
        group = next((g for g in groups if g.id == group_id), None)
        if group is None:
            return f"VPSie node group {group_id} is already gone"
        if group.nodes_count > 0:
            return f"VPSie node group {group.group_name} kept: it still has {group.nodes_count} node(s)"
        self.fence.check("delete_node_group")
        await self.client.delete_node_group(group.identifier or str(group.id), reason, note=group.group_name)
        self._groups.pop(cluster, None)
        return f"VPSie node group {group.group_name} deleted"

    async def launch(self, request: CreateRequest) -> MutationResult:
        """Fenced: raises the fence's error (nothing sent) when this process may not act."""
        self.fence.check("launch")
        return await self.provider_for(request.source).launch(request)

    async def delete(self, instance: Instance) -> MutationResult:
        self.fence.check("delete")
        return await self.provider_for(instance.source).delete(instance)

    async def owner_tags(self, instance: Instance) -> frozenset[str] | None:
        return await self.provider_for(instance.source).owner_tags(instance)

    async def source_for(
        self, group_name: str, managed: api.ManagedSource | None, vm: api.VMSource | None
    ) -> NodeSource:
        """The provider's source for a NodeGroup (or a VPSieNode's copy of it).

        Raises :class:`~vpsie_autoscaler.vpsie.errors.NotFound` when the VPSie group name does not
        exist in the cluster, and any VPSie error of the lookup.
        """
        if vm is not None:
            return VMSource(
                hostname_prefix=vm_hostname_prefix(group_name),
                suffix_length=HOSTNAME_SUFFIX_LENGTH,
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
        cluster = managed.cluster_identifier
        if cluster is None:  # resolved into status.managed first (controllers/discovery.py)
            raise NotFound(
                f"NodeGroup {group_name}: the VPSie cluster is not known yet", operation="discovery"
            )
        if managed.node_group_id is not None:
            return ManagedSource(
                cluster_identifier=cluster,
                group_id=managed.node_group_id,
                group_name=managed.node_group_name or "",
            )
        name = managed.node_group_name or ""
        key = (cluster, name)
        group_id = self._group_ids.get(key)
        if group_id is None:
            if self.client is None:
                raise Unauthorized(self._unconfigured_reason, operation="list_node_groups")
            groups = await self.client.list_node_groups(cluster)
            found = next((g for g in groups if g.group_name == name), None)
            if found is None:
                raise NotFound(
                    f"VPSie node group {name!r} not found in cluster {cluster}",
                    operation="list_node_groups",
                )
            group_id = self._group_ids[key] = found.id
        return ManagedSource(cluster_identifier=cluster, group_id=group_id, group_name=name)

    async def size_source(
        self, node_group: str, managed: api.ManagedSource, size_id: int, *, may_create: bool = False
    ) -> ManagedSource:
        """The cluster's VPSie node group of ``size_id`` (VPSie keeps one per size): found by size, or,
        with ``may_create``, created as :func:`size_group_name` through :meth:`ensure_group` (fenced; a
        lost answer settled by listing, never sent twice). Without ``may_create`` (dry-run, or a record
        past its launch) a missing group is :class:`~vpsie_autoscaler.vpsie.errors.NotFound`.

        Raises :class:`SizeGroupRefused` when VPSie refuses the group, :class:`SizeGroupInDoubt` while a
        create is being confirmed.
        """
        cluster = managed.cluster_identifier
        if cluster is None:
            raise NotFound(
                f"NodeGroup {node_group}: the VPSie cluster is not known yet", operation="discovery"
            )
        cached = self._size_groups.get((cluster, size_id))
        if cached is not None:
            return ManagedSource(cluster_identifier=cluster, group_id=cached[0], group_name=cached[1])
        if self.client is None:
            raise Unauthorized(self._unconfigured_reason, operation="list_node_groups")
        groups = await self.client.list_node_groups(cluster)
        found = next((g for g in groups if g.boxsize_id == size_id), None)
        if found is None and may_create:
            name = size_group_name(node_group, size_id)
            result = await self.ensure_group(cluster, name, size_id)
            if result.refused is not None:
                raise SizeGroupRefused(
                    f"VPSie node group {name} of size {size_id}: {result.refused}",
                    operation="create_node_group",
                )
            if result.group is None:
                raise SizeGroupInDoubt(
                    f"VPSie node group {name} of size {size_id} may have been created; waiting for a listing "
                    "to show it",
                    operation="create_node_group",
                )
            if result.group.boxsize_id not in (None, size_id):
                raise SizeGroupRefused(
                    f"VPSie node group {name} exists with size {result.group.boxsize_id}, not {size_id}",
                    operation="create_node_group",
                )
            found = result.group
            log.info("vpsie.size_group", cluster=cluster, group=found.group_name, size=size_id, created=True)
        if found is None:
            raise NotFound(
                f"no VPSie node group of size {size_id} in cluster {cluster}", operation="list_node_groups"
            )
        self._size_groups[(cluster, size_id)] = (found.id, found.group_name)
        return ManagedSource(cluster_identifier=cluster, group_id=found.id, group_name=found.group_name)

    async def source_of(self, node: VPSieNode, *, may_create: bool = False) -> NodeSource:
        """The source of a record: its group's, or for a record on a size of its own (``planSizeId``)
        the VPSie node group of that size (created only with ``may_create``: the launch)."""
        spec = node.spec
        if spec.managed is not None and spec.plan_size_id is not None:
            return await self.size_source(
                spec.node_group, spec.managed, spec.plan_size_id, may_create=may_create
            )
        return await self.source_for(spec.node_group, spec.managed, spec.vm)


# --- credential rotation ----------------------------------------------------------------------------


class CredentialsWatcher:
    """Re-reads the mounted credentials: rotates the client's credentials when they change, and builds
    the client when the process started without usable credentials (no restart needed)."""

    def __init__(
        self,
        providers: Providers,
        directory: str,
        *,
        build: Callable[[Credentials], VPSieClient],
        clock: Clock,
        interval: float = CREDENTIALS_POLL_SECONDS,
    ) -> None:
        self._providers = providers
        self._directory = directory
        self._build = build
        self._clock = clock
        self._interval = interval
        self._last: Credentials | None = None

    async def check(self) -> bool:
        """One look at the directory; True when the client switched to (or was built with) new ones."""
        try:
            creds = await asyncio.to_thread(read_credentials_dir, self._directory)
        except CredentialsError as exc:
            log.warning("credentials.unreadable", error=str(exc), note="keeping the current credentials")
            self._providers.report_unconfigured(str(exc))
            return False
        self._providers.hints = creds.hints
        if creds == self._last:
            return False
        if creds.ignored:
            log.warning("credentials.ignored", files=list(creds.ignored), note="the Secret's token is used")
        client = self._providers.client
        if client is not None and creds.base_url and creds.base_url != client.config.base_url.rstrip("/"):
            log.warning("credentials.url_changed", url=creds.base_url, note="takes effect after a restart")
        if client is None:
            try:
                client = self._build(creds)
            except (ProviderConfigError, ValueError) as exc:
                log.error("credentials.rejected", error=str(exc), note="still no VPSie client")
                self._providers.report_unconfigured(str(exc))
                return False
            self._providers.configure(client)
            self._last = creds
            log.info("credentials.configured", note="VPSie client built from the mounted credentials")
            return True
        try:
            changed = await client.update_credentials(
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


async def close_on_stop(providers: Providers) -> None:
    """A runnable that only closes the client's HTTP session when the manager stops."""
    try:
        await asyncio.Event().wait()
    finally:
        if providers.client is not None:
            await providers.client.close()
