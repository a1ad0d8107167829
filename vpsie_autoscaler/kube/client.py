"""The Kubernetes API client: raw JSON in and out, a timeout on every call, typed errors.

Why not the generated API classes: deserialising into generated models is 5-11x slower than parsing
JSON and the model package costs memory (runtime-semantics §0, §2). kubernetes_asyncio still does
what it is good at — kubeconfig/in-cluster auth (with token refresh), TLS, the aiohttp session — and
we call ``ApiClient.call_api`` with ``_preload_content=False`` and decode the bytes with orjson.

Two traps of kubernetes_asyncio 36.1.0 handled here:

- with ``_preload_content=False`` a 4xx/5xx answer is returned, not raised: we check the status
  of every response ourselves and raise :mod:`~vpsie_autoscaler.kube.errors` types;
- without ``_request_timeout`` a request has no timeout at all (the library passes an all-``None``
  ``aiohttp.ClientTimeout``): every call here passes one. Watches get the server-side
  ``timeoutSeconds`` plus a client ``sock_read`` a bit longer, so a half-open connection (apiserver
  failover, NAT expiry) ends the watch instead of hanging it forever.

Every call is counted in ``rest_client_requests_total{code,method,host}`` (client-go's name).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from kubernetes_asyncio.client import ApiClient
from prometheus_client import CollectorRegistry, Counter, Histogram

from vpsie_autoscaler import __version__
from vpsie_autoscaler.kube import errors
from vpsie_autoscaler.kube.config import load_configuration
from vpsie_autoscaler.kube.resources import PODS, Resource

# A plain request (get/list page/patch) that takes longer than this is stuck, not slow: the
# apiserver's own request timeout for non-long-running calls is 60 s, and list pages of 500 objects
# come back in well under a second.
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
# Opening a TCP/TLS connection to the apiserver is fast or hopeless.
CONNECT_TIMEOUT_SECONDS = 10.0
# How much longer than the server-side watch timeout we wait for a byte before declaring the
# connection dead. The server closes the watch at timeoutSeconds; bookmarks arrive every ~60 s.
WATCH_READ_GRACE_SECONDS = 30.0
# Largest single watch event line we accept (etcd's request limit is 1.5 MiB; leave headroom).
MAX_WATCH_LINE_BYTES = 16 * 1024 * 1024

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

# client-go labels requests that got no HTTP answer with this code.
NO_RESPONSE_CODE = "<error>"
REQUEST_LATENCY_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class RestClientMetrics:
    """client-go's ``rest_client_*`` metrics, registered in the caller's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host.",
            ["code", "method", "host"],
            registry=registry,
        )
        self.latency = Histogram(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb and host.",
            ["verb", "host"],
            buckets=REQUEST_LATENCY_BUCKETS,
            registry=registry,
        )


def _query(**params: object) -> list[tuple[str, str]]:
    """Query parameters in API spelling; ``None`` is dropped, booleans are ``true``/``false``."""
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out.append((key, "true" if value else "false"))
        else:
            out.append((key, str(value)))
    return out


def _loads(data: bytes) -> dict[str, Any]:
    if not data:
        return {}
    decoded = orjson.loads(data)
    if not isinstance(decoded, dict):
        raise errors.KubeError(f"expected a JSON object from the apiserver, got {type(decoded).__name__}")
    return decoded


class KubeClient:
    """An async Kubernetes client over raw JSON (see the module docstring for the why).

    Build it with :meth:`connect` and close it with ``async with client:`` or :meth:`close`.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        registry: CollectorRegistry | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        watch_read_grace: float = WATCH_READ_GRACE_SECONDS,
    ) -> None:
        self._api = api_client
        self._watch_read_grace = watch_read_grace
        self._api.user_agent = f"vpsie-autoscaler/{__version__}"
        server = str(api_client.configuration.host)
        self._host = urlsplit(server).netloc or server
        self._metrics = RestClientMetrics(registry if registry is not None else CollectorRegistry())
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=CONNECT_TIMEOUT_SECONDS)

    @classmethod
    async def connect(
        cls,
        kubeconfig: str | None = None,
        context: str | None = None,
        *,
        server: str | None = None,
        token: str | None = None,
        registry: CollectorRegistry | None = None,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        watch_read_grace: float = WATCH_READ_GRACE_SECONDS,
    ) -> KubeClient:
        """Connect with a kubeconfig, a plain ``server`` URL (tests), or in-cluster when neither is given.

        Must run inside the event loop (the aiohttp session binds to it).
        """
        cfg = await load_configuration(kubeconfig, context, server=server, token=token)
        return cls(
            ApiClient(configuration=cfg),
            registry=registry,
            request_timeout=request_timeout,
            watch_read_grace=watch_read_grace,
        )

    @property
    def host(self) -> str:
        """``host:port`` of the apiserver (the ``host`` label of the metrics)."""
        return self._host

    async def close(self) -> None:
        await self._api.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing ---------------------------------------------------------------------------------

    def _timeout_for(self, seconds: float | None) -> aiohttp.ClientTimeout:
        if seconds is None:
            return self._timeout
        return aiohttp.ClientTimeout(total=seconds, sock_connect=min(seconds, CONNECT_TIMEOUT_SECONDS))

    async def _open(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None,
        body: object,
        content_type: str,
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        headers = {"Accept": JSON, "Content-Type": content_type}
        try:
            resp: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=client_timeout,
            )
        except TimeoutError as exc:
            self._metrics.requests.labels(NO_RESPONSE_CODE, method, self._host).inc()
            raise errors.KubeTimeout(f"{method} {path}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            self._metrics.requests.labels(NO_RESPONSE_CODE, method, self._host).inc()
            raise errors.KubeConnectionError(f"{method} {path}: {exc!s}") from exc
        self._metrics.requests.labels(str(resp.status), method, self._host).inc()
        return resp

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: object = None,
        content_type: str = JSON,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        started = time.monotonic()
        resp = await self._open(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            client_timeout=self._timeout_for(request_timeout),
        )
        try:
            data = await resp.read()
        except TimeoutError as exc:
            raise errors.KubeTimeout(f"{method} {path}: response not read in time") from exc
        except aiohttp.ClientError as exc:
            raise errors.KubeConnectionError(f"{method} {path}: {exc!s}") from exc
        finally:
            resp.release()
            self._metrics.latency.labels(method, self._host).observe(time.monotonic() - started)
        if not 200 <= resp.status < 300:
            raise errors.from_response(resp.status, data, retry_after_header=resp.headers.get("Retry-After"))
        try:
            return _loads(data)
        except orjson.JSONDecodeError as exc:
            raise errors.KubeError(f"{method} {path}: response is not JSON", status=resp.status) from exc

    # -- verbs ------------------------------------------------------------------------------------

    async def get(
        self, res: Resource, name: str, namespace: str | None = None, *, request_timeout: float | None = None
    ) -> dict[str, Any]:
        """GET one object. Raises :class:`~errors.NotFound` when it does not exist."""
        return await self._call("GET", res.path(namespace, name), request_timeout=request_timeout)

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """One LIST request; returns the raw ``*List`` JSON (``items``, ``metadata.continue``...)."""
        query = _query(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=limit,
            resourceVersion=resource_version,
            resourceVersionMatch=resource_version_match,
            **{"continue": continue_},
        )
        return await self._call("GET", res.path(namespace), query=query, request_timeout=request_timeout)

    async def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        resource_version: str | None,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Stream watch events ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": {...}}``.

        Ends normally when the server closes the watch (``timeout_seconds``). An ERROR event raises
        the typed error it carries (410 → :class:`~errors.Gone`); a connection that stays silent
        longer than ``timeout_seconds`` + grace raises :class:`~errors.KubeTimeout`. Close the
        iterator (``contextlib.aclosing``) when stopping early, so the connection is released.
        """
        query = _query(
            watch=True,
            resourceVersion=resource_version,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks=allow_bookmarks,
            labelSelector=label_selector,
            fieldSelector=field_selector,
        )
        path = res.path(namespace)
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=CONNECT_TIMEOUT_SECONDS,
            sock_read=timeout_seconds + self._watch_read_grace,
        )
        resp = await self._open(
            "GET", path, query=query, body=None, content_type=JSON, client_timeout=timeout
        )
        try:
            if not 200 <= resp.status < 300:
                data = await resp.read()
                raise errors.from_response(
                    resp.status, data, retry_after_header=resp.headers.get("Retry-After")
                )
            async for line in _lines(resp):
                event = orjson.loads(line)
                if not isinstance(event, dict):
                    raise errors.KubeError(f"watch {path}: malformed event")
                if event.get("type") == "ERROR":
                    obj = event.get("object")
                    raise errors.from_status(obj if isinstance(obj, dict) else {"code": 500})
                yield event
        except TimeoutError as exc:
            raise errors.KubeTimeout(f"watch {path}: no data for {timeout.sock_read:.0f}s") from exc
        except aiohttp.ClientError as exc:
            raise errors.KubeConnectionError(f"watch {path}: {exc!s}") from exc
        except orjson.JSONDecodeError as exc:
            raise errors.KubeConnectionError(f"watch {path}: truncated or malformed event") from exc
        finally:
            resp.close()

    async def create(
        self,
        res: Resource,
        body: Mapping[str, Any],
        namespace: str | None = None,
        *,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """POST a new object. Raises :class:`~errors.AlreadyExists` when the name is taken."""
        return await self._call("POST", res.path(namespace), body=dict(body), request_timeout=request_timeout)

    async def merge_patch(
        self,
        res: Resource,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386). Lists are replaced wholesale: include
        ``metadata.resourceVersion`` when changing one, and treat :class:`~errors.Conflict` as requeue.
        """
        return await self._call(
            "PATCH",
            res.path(namespace, name, subresource),
            body=dict(patch),
            content_type=MERGE_PATCH,
            request_timeout=request_timeout,
        )

    async def json_patch(
        self,
        res: Resource,
        name: str,
        ops: Sequence[Mapping[str, Any]],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """JSON patch (RFC 6902): a list of operations, e.g. a ``test`` on resourceVersion first."""
        return await self._call(
            "PATCH",
            res.path(namespace, name, subresource),
            body=[dict(op) for op in ops],
            content_type=JSON_PATCH,
            request_timeout=request_timeout,
        )

    async def apply(
        self,
        res: Resource,
        body: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = True,
        subresource: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Server-side apply of a complete intent (fields left out are released by this manager)."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        namespace = meta.get("namespace")
        return await self._call(
            "PATCH",
            res.path(namespace, name, subresource),
            query=_query(fieldManager=field_manager, force=force),
            body=dict(body),
            content_type=APPLY_PATCH,
            request_timeout=request_timeout,
        )

    async def replace(
        self,
        res: Resource,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """PUT the whole object; its ``metadata.resourceVersion`` makes it a compare-and-swap (409)."""
        return await self._call(
            "PUT", res.path(namespace, name, subresource), body=dict(body), request_timeout=request_timeout
        )

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
        propagation_policy: str | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any] | None:
        """DELETE an object. Returns the object when deletion is pending (finalizers, graceful pod
        termination), ``None`` when the server answered with a success Status (gone at once).

        ``preconditions`` (``{"uid": ..., "resourceVersion": ...}``) turn a stale delete into a 409.
        """
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy
        out = await self._call(
            "DELETE", res.path(namespace, name), body=options, request_timeout=request_timeout
        )
        if not out or out.get("kind") == "Status":
            return None
        return out

    async def delete_collection(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        grace_period_seconds: int | None = None,
        request_timeout: float | None = None,
    ) -> None:
        """DELETE every object of a collection matching the selectors (``deletecollection`` verb)."""
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        query = _query(labelSelector=label_selector, fieldSelector=field_selector)
        await self._call(
            "DELETE", res.path(namespace), query=query, body=options, request_timeout=request_timeout
        )

    async def evict(
        self,
        name: str,
        namespace: str,
        *,
        grace_period_seconds: int | None = None,
        request_timeout: float | None = None,
    ) -> None:
        """Evict a pod through the ``policy/v1`` Eviction subresource, honouring PodDisruptionBudgets.

        A PDB that forbids the disruption answers 429 → :class:`~errors.TooManyRequests`; retry later.
        """
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        if grace_period_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": grace_period_seconds}
        await self._call(
            "POST", PODS.path(namespace, name, "eviction"), body=body, request_timeout=request_timeout
        )

    async def server_version(self, *, request_timeout: float | None = None) -> dict[str, Any]:
        """``GET /version``: a cheap call to check connectivity and credentials."""
        return await self._call("GET", "/version", request_timeout=request_timeout)


async def _lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Newline-delimited chunks of a streamed body, without aiohttp's per-line length limit."""
    buf = bytearray()
    async for chunk in resp.content.iter_any():
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(buf[start:nl]).strip()
            start = nl + 1
            if line:
                yield line
        del buf[:start]
        if len(buf) > MAX_WATCH_LINE_BYTES:
            raise errors.KubeError(f"watch event larger than {MAX_WATCH_LINE_BYTES} bytes")
    tail = bytes(buf).strip()
    if tail:
        yield tail
