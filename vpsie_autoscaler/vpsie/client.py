"""The typed async VPSie API client.

One method per VPSie call the autoscaler needs (``docs/vpsie-api.md`` §6.1), each returning pydantic
models parsed straight from the response bytes. Every call goes through the same pipeline:

    circuit breaker → rate limiter → auth headers → HTTP (explicit timeouts) → envelope check → model

The rate limiter is a ceiling, not a pace (:mod:`~vpsie_autoscaler.vpsie.ratelimit`): a burst goes out
at once, and VPSie's 429s and ``Retry-After`` headers lower the rate (AIMD) until successes raise it again.

and, around it, the retry loop: idempotent calls (reads, targeted deletes, power actions) are retried
on 429/5xx/timeouts with exponential back-off and jitter, honouring ``Retry-After``; creates and "add a
node" are never repeated blindly (no idempotency key exists; callers reconcile by hostname). A 401 on
an exchanged token causes one re-login and one repeat of the call, whatever the call (a 401 means
VPSie did not act on it).

Every failure says whether the request may have reached VPSie
(:func:`~vpsie_autoscaler.vpsie.errors.request_may_have_reached_vpsie`): a connection that could not be
established raises :class:`~vpsie_autoscaler.vpsie.errors.ConnectionFailed` (not sent), one lost after the
request was written raises ``ServerError``/``VPSieTimeout`` (unknown: counts as sent); a cancel while
waiting for the rate limiter is marked "not sent" on the ``CancelledError`` itself, which still propagates.

Unlike the client of VPSie's Go autoscaler (docs/vpsie-api.md §3.2, §6.1): ``error: true`` with HTTP
200 fails every call; 5xx opens the breaker; retries exist; ``GET {VM}/{identifier}`` reads ``data.vmData``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
import structlog
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ConfigDict, SecretStr, TypeAdapter, ValidationError, model_validator

from vpsie_autoscaler import __version__
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.auth import (
    ExchangedToken,
    IssuedToken,
    LoginEncoding,
    LoginEncodings,
    StaticToken,
    TokenSource,
    login_with_fallback,
)
from vpsie_autoscaler.vpsie.breaker import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_OPEN_SECONDS,
    BreakerState,
    CircuitBreaker,
)
from vpsie_autoscaler.vpsie.errors import (
    DUPLICATE_GROUP_SIZE_MARKER,
    NOT_FOUND_MARKER,
    BusinessRuleError,
    CircuitOpen,
    ConnectionFailed,
    DuplicateGroupSize,
    InvalidResponse,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    VPSieError,
    VPSieTimeout,
    mark_request_sent,
    request_may_have_reached_vpsie,
)
from vpsie_autoscaler.vpsie.metrics import ClientMetrics
from vpsie_autoscaler.vpsie.ratelimit import TokenBucket
from vpsie_autoscaler.vpsie.retry import RetryPolicy, is_retryable

DEFAULT_BASE_URL: Final = "https://api.vpsie.com"
VM_PATHS: Final = ("/apps/v2/vm", "/api/v2/vm")  # §2.1: both seen; /apps/v2/vm has the most sources
DEFAULT_VM_PATH: Final = VM_PATHS[0]
LOGIN_PATH: Final = "/apps/v2/auth/from/api"
PENDING_VMS_PATH: Final = "/apps/v2/vm/pending"  # §4.5 names this path without the {VM} variants
VERIFY_PATH: Final = "/apps/v2/datacenter"  # a cheap authenticated read to prove new credentials
DEFAULT_REQUEST_TIMEOUT: Final = 30.0  # seconds for a whole request; VPSie's Go client uses 30 s
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_RATE_LIMIT_PER_MINUTE: Final = 100.0  # VPSie documents no limit; VPSie's own autoscaler uses 100/min
DEFAULT_RATE_LIMIT_BURST: Final = 60
"""Calls that go out back to back from a full bucket. The rate limit is a ceiling, not a pace: a scale-up
of 50 nodes (50 add-node/create calls) plus the handful of reads around it (cluster detail, node groups,
VM list: under 10) must all reach VPSie at once, not over 30 s. 60 covers that from a full bucket, and
the 100/min refill adds ~8 more within 5 s. It stays bounded (60 calls, then 100/min) because VPSie's
real limit is unknown; if a burst trips it, VPSie's 429 halves the rate and the burst (AIMD)."""
MAX_BODY_BYTES: Final = 10 * 1024 * 1024  # a longer body is a broken server, not data (seed: 10 MiB)
DEFAULT_TOKEN_LIFETIME: Final = timedelta(hours=1)  # when `expires` cannot be parsed (as VPSie's client)
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
HTTP_UNAUTHORIZED: Final = 401
HTTP_FORBIDDEN: Final = 403
HTTP_NOT_FOUND: Final = 404
HTTP_TOO_MANY_REQUESTS: Final = 429
HTTP_SERVER_ERROR: Final = 500
HTTP_CLIENT_ERROR: Final = 400
AUTH_MESSAGE: Final = "please authenticate"

log = structlog.get_logger("vpsie_autoscaler.vpsie.client")
ModelT = TypeVar("ModelT")
ItemT = TypeVar("ItemT", bound=models.Wire)
_ITEM_REFS: Final = (
    ("identifier", re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")),
    ("id", re.compile(r"[0-9]{1,20}")),
)
"""The identifier and id shown in a malformed-item warning, when they look like ones: no other value of
an item is ever echoed."""


class VPSieClientConfig(BaseModel):
    """How to reach and authenticate to VPSie. Secrets are ``SecretStr``: never printed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = DEFAULT_BASE_URL
    vm_path: str = DEFAULT_VM_PATH
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_token: SecretStr | None = None
    allow_insecure_http: bool = False
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    rate_limit_per_minute: float = DEFAULT_RATE_LIMIT_PER_MINUTE
    rate_limit_burst: int = DEFAULT_RATE_LIMIT_BURST
    retry: RetryPolicy = RetryPolicy()
    breaker_failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    breaker_open_seconds: float = DEFAULT_OPEN_SECONDS
    token_refresh_margin: float = 300.0
    user_agent: str = f"vpsie-autoscaler/{__version__}"

    @model_validator(mode="after")
    def _check(self) -> Self:
        has_exchange = bool(self.client_id) or self.client_secret is not None
        if self.api_token is not None and has_exchange:
            raise ValueError("give either an API token or clientId/clientSecret, not both")
        if self.api_token is None and not (self.client_id and self.client_secret):
            raise ValueError("VPSie credentials missing: set an API token, or both clientId and clientSecret")
        url = urlsplit(self.base_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ValueError(f"VPSie base URL must be http(s)://host[:port], got {self.base_url!r}")
        if url.scheme == "http" and url.hostname not in LOOPBACK_HOSTS and not self.allow_insecure_http:
            raise ValueError(
                f"refusing to send VPSie credentials over plain http to {url.hostname}; "
                "use https (plain http is allowed only to loopback, e.g. the simulator)"
            )
        if not self.vm_path.startswith("/"):
            raise ValueError(f"VM path must start with '/', got {self.vm_path!r}")
        if self.request_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        return self


@dataclass(frozen=True)
class VMCreate:
    """The body of ``POST {VM}`` (§4.5), with the live-verified types: project identifier as a string,
    address and backup flags as the strings "0"/"1" (numbers are silently ignored by VPSie)."""

    resource_identifier: str
    os_identifier: str
    dc_identifier: str
    hostname: str
    project_identifier: str
    add_public_ipv4: bool = True
    add_public_ipv6: bool = False
    add_private_ip: bool = True
    backup_enabled: bool = False
    ssh_key_identifier: str | None = None
    script_identifier: str | None = None
    user_data: str | None = field(default=None, repr=False)  # base64, as VPSie expects
    tags: tuple[str, ...] = ()
    notes: str | None = None
    process_id: str | None = None

    def body(self, process_id: str) -> dict[str, Any]:
        def flag(value: bool) -> str:
            return "1" if value else "0"

        body: dict[str, Any] = {
            "resourceIdentifier": self.resource_identifier,
            "osIdentifier": self.os_identifier,
            "dcIdentifier": self.dc_identifier,
            "hostname": self.hostname,
            "projectId": str(self.project_identifier),
            "addPublicIpV4": flag(self.add_public_ipv4),
            "addPublicIpV6": flag(self.add_public_ipv6),
            "addPrivateIp": flag(self.add_private_ip),
            "backupEnabled": flag(self.backup_enabled),
            "isGeneratedPassword": True,
            "processId": process_id,
        }
        optional = {
            "sshKeyIdentifier": self.ssh_key_identifier,
            "scriptIdentifier": self.script_identifier,
            "userData": self.user_data,
            "notes": self.notes,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.tags:
            body["tags"] = list(self.tags)
        return body


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


def _validation_summary(exc: ValidationError) -> str:
    """Where the body did not match, without echoing any value from it."""
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False)[:3]]
    return "; ".join(parts)


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, but stop once it is longer than ``limit`` (``read(n)`` may return less than n)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _no_transparent_resend(session: aiohttp.ClientSession) -> None:
    """Stop aiohttp from sending a request a second time on its own.

    aiohttp repeats a GET/PUT/DELETE once when the connection breaks (``ServerDisconnectedError``,
    ``ClientOSError``) even after the request was written, because HTTP calls those methods idempotent
    (RFC 9110 §9.2.2). VPSie's ``DELETE .../reduce/slave`` is not: it removes *some* worker, so a resend
    removes two. Repeats are the client's decision alone (its retry loop, idempotent calls only). The
    switch is the one aiohttp's own ``TestClient`` uses; aiohttp has no public one.
    """
    if getattr(session, "_retry_connection", False):
        session._retry_connection = False


def _seg(value: str | int) -> str:
    """One path segment, quoted so an identifier can never change the route."""
    return quote(str(value), safe="")


class VPSieClient:
    """Async client of the VPSie REST API. Use as ``async with VPSieClient(config) as client:``."""

    def __init__(
        self,
        config: VPSieClientConfig,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or RealClock()
        self._rng = rng or random.Random()  # noqa: S311 - jitter and correlation ids, not secrets
        self._base = config.base_url.rstrip("/")
        self._vm = config.vm_path.rstrip("/")
        self._session = session
        self._owns_session = session is None
        self._limiter = TokenBucket(config.rate_limit_per_minute, config.rate_limit_burst, self._clock)
        self.breaker = CircuitBreaker(
            self._clock,
            failure_threshold=config.breaker_failure_threshold,
            open_seconds=config.breaker_open_seconds,
            on_transition=lambda old, new: self.metrics.circuit(old.value, new.value),
        )
        self.metrics = ClientMetrics(registry if registry is not None else CollectorRegistry())
        self.metrics.rate_limit.set(self._limiter.rate_per_minute)
        for state in BreakerState:
            self.metrics.circuit_state.labels(state.value).set(1 if state is self.breaker.state else 0)
        self._timeout = aiohttp.ClientTimeout(
            total=config.request_timeout, sock_connect=config.connect_timeout
        )
        self._login_encodings = LoginEncodings()
        self.tokens: TokenSource = self._token_source(config)

    @property
    def rate_limiter(self) -> TokenBucket:
        """The adaptive rate limiter (read its ``rate_per_minute``; the client feeds it)."""
        return self._limiter

    def _token_source(self, config: VPSieClientConfig) -> TokenSource:
        if config.api_token is not None:
            return StaticToken(config.api_token.get_secret_value())
        return ExchangedToken(
            lambda: self._login(config), self._clock, refresh_margin=config.token_refresh_margin
        )

    async def update_credentials(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        api_token: str | None = None,
    ) -> bool:
        """Switch to new credentials once they are proven to work (rotation without a restart).

        The new credentials make one authenticated read; if VPSie refuses them the old ones stay in use
        and the error is raised. Returns False (and does nothing) when the credentials did not change.
        """
        settings = self.config.model_dump()
        settings.update(
            client_id=client_id,
            client_secret=SecretStr(client_secret) if client_secret else None,
            api_token=SecretStr(api_token) if api_token else None,
        )
        new = VPSieClientConfig.model_validate(settings)

        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        old = self.config
        if (new.client_id, secret(new.client_secret), secret(new.api_token)) == (
            old.client_id,
            secret(old.client_secret),
            secret(old.api_token),
        ):
            return False
        tokens = self._token_source(new)
        try:
            await self._call(
                "verify_credentials", "GET", VERIFY_PATH, idempotent=True, tokens=tokens, relogin=False
            )
        except VPSieError:
            self.metrics.credential_rotations.labels(result="failure").inc()
            raise
        self.metrics.credential_rotations.labels(result="success").inc()
        self.config, self.tokens = new, tokens
        log.info("vpsie.credentials_updated", mode="api_token" if new.api_token else "client_credentials")
        return True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # trust_env: HTTPS_PROXY / HTTP_PROXY / NO_PROXY apply as for curl and the Kubernetes
            # client (an HTTPS call tunnels through the proxy with CONNECT; NO_PROXY hosts go direct).
            self._session = aiohttp.ClientSession(trust_env=True)
            self._owns_session = True
        _no_transparent_resend(self._session)
        return self._session

    # --- transport -----------------------------------------------------------------------------------

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool,
        authenticate: bool = True,
        tokens: TokenSource | None = None,
        relogin: bool = True,
    ) -> bytes:
        """Send one logical call, with re-login on 401 and retries for idempotent calls.

        Whatever it raises is marked with whether the call may have reached VPSie: once one attempt may
        have, every later failure of the call may have too.
        """
        retries = 0
        relogged = not relogin
        source = tokens or self.tokens
        reached = False  # an attempt of this call may have reached VPSie
        try:
            while True:
                # A login that fails or is cancelled here is not this call: it did not go out (this time).
                headers = await source.headers() if authenticate else {}
                try:
                    return await self._attempt(
                        operation, method, path, headers, json=json, form=form, params=params
                    )
                except BaseException as exc:
                    reached = reached or request_may_have_reached_vpsie(exc)
                    if not isinstance(exc, VPSieError):
                        raise
                    error = exc
                if (
                    isinstance(error, Unauthorized)
                    and authenticate
                    and not relogged
                    and self.tokens.refreshable
                    and error.status == HTTP_UNAUTHORIZED
                ):
                    relogged = True
                    self.tokens.invalidate(headers)
                    log.info("vpsie.relogin", operation=operation, reason="401 from VPSie")
                    continue
                policy = self.config.retry
                if not (idempotent and is_retryable(error) and retries < policy.max_retries):
                    raise error
                retry_after = error.retry_after if isinstance(error, RateLimited) else None
                if retry_after is not None and retry_after > policy.max_retry_after:
                    raise error
                delay = policy.delay(retries, self._rng, retry_after)
                retries += 1
                self.metrics.retries.labels(operation=operation).inc()
                log.warning(
                    "vpsie.retry",
                    operation=operation,
                    attempt=retries,
                    delay_seconds=round(delay, 3),
                    error=type(error).__name__,
                    status=error.status,
                )
                await self._clock.sleep(delay)
        except BaseException as exc:
            # Whatever ends the call says whether any attempt of it may have reached VPSie.
            mark_request_sent(exc, reached)
            raise

    async def _attempt(
        self,
        operation: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        *,
        json: Mapping[str, Any] | None,
        form: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
    ) -> bytes:
        try:
            self.breaker.before_call(operation)
        except CircuitOpen:
            self.metrics.observe(operation, "circuit_open", None)
            raise
        try:
            waited = await self._limiter.acquire()
        except BaseException as exc:
            self.breaker.record_neutral()
            mark_request_sent(exc, False)  # cancelled while waiting for a token: nothing was sent
            raise
        epoch = self._limiter.epoch  # the rate this request was admitted under (AIMD feedback)
        if waited:
            self.metrics.rate_limited_wait.inc(waited)
        send_headers = {"Accept": "application/json", "User-Agent": self.config.user_agent, **headers}
        data: bytes | dict[str, str] | None = None
        if json is not None:
            data = orjson.dumps(json)
            send_headers["Content-Type"] = "application/json"
        elif form is not None:
            data = dict(form)  # aiohttp encodes it as application/x-www-form-urlencoded
        started = time.perf_counter()
        try:
            async with self._http().request(
                method,
                self._base + path,
                data=data,
                params=params,
                headers=send_headers,
                timeout=self._timeout,
            ) as resp:
                body = await _read_capped(resp.content, MAX_BODY_BYTES)
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"), self._clock.now())
        except aiohttp.ConnectionTimeoutError:  # before the (total-timeout) TimeoutError: it is one too
            self._fail(operation, "timeout", started)
            raise ConnectionFailed(
                f"no connection within {self.config.connect_timeout:g}s", operation=operation
            ) from None
        except TimeoutError:
            self._fail(operation, "timeout", started)
            raise VPSieTimeout(
                f"no answer within {self.config.request_timeout:g}s", operation=operation
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.ServerFingerprintMismatch) as exc:
            # Refused, DNS, proxy, TLS handshake or certificate: no request was written.
            self._fail(operation, "transport", started)
            raise ConnectionFailed(f"cannot connect: {type(exc).__name__}", operation=operation) from None
        except aiohttp.ClientError as exc:
            # Reset, disconnected or a broken body after the request went out: the outcome is unknown.
            self._fail(operation, "transport", started)
            raise ServerError(f"transport error: {type(exc).__name__}", operation=operation) from None
        except asyncio.CancelledError as exc:
            self.breaker.record_neutral()
            mark_request_sent(exc, True)  # cancelled in flight: VPSie may have it
            raise
        elapsed = time.perf_counter() - started
        try:
            self._check(operation, status, body, retry_after)
        except VPSieError as exc:
            self._rate_feedback(status, retry_after, epoch, rate_limited=isinstance(exc, RateLimited))
            if isinstance(exc, InvalidResponse):
                code = "invalid_body"
            else:
                code = "200_error" if status < HTTP_CLIENT_ERROR else str(status)
            self.metrics.observe(operation, code, elapsed)
            if isinstance(exc, ServerError):
                self.breaker.record_failure()
            else:
                self.breaker.record_success()
            log.debug(
                "vpsie.request", operation=operation, method=method, path=path, status=status, error=True
            )
            raise
        self._rate_feedback(status, retry_after, epoch, rate_limited=False)
        self.breaker.record_success()
        self.metrics.observe(operation, str(status), elapsed)
        log.debug("vpsie.request", operation=operation, method=method, path=path, status=status)
        return body

    def _rate_feedback(
        self, status: int, retry_after: float | None, epoch: int, *, rate_limited: bool
    ) -> None:
        """AIMD: a 429 or any Retry-After decreases the rate; any other answer below 500 increases it."""
        if rate_limited or retry_after is not None:
            if self._limiter.throttle(retry_after, epoch=epoch):
                log.warning(
                    "vpsie.rate_limit.decreased",
                    status=status,
                    retry_after_seconds=retry_after,
                    requests_per_minute=round(self._limiter.rate_per_minute, 2),
                )
        elif status < HTTP_SERVER_ERROR:
            self._limiter.relax(epoch=epoch)
        self.metrics.rate_limit.set(self._limiter.rate_per_minute)

    def _fail(self, operation: str, code: str, started: float) -> None:
        self.breaker.record_failure()
        self.metrics.observe(operation, code, time.perf_counter() - started)

    def _check(self, operation: str, status: int, body: bytes, retry_after: float | None) -> None:
        """Raise the typed error a response means; return if it is a success."""
        if len(body) > MAX_BODY_BYTES:
            raise ServerError(
                f"response body over {MAX_BODY_BYTES} bytes", operation=operation, status=status
            )
        try:
            head = models.ErrorHead.model_validate_json(body)
        except ValidationError:
            head = None
        if status == HTTP_TOO_MANY_REQUESTS:
            message = head.message if head and head.message else "rate limited by VPSie"
            raise RateLimited(message, retry_after=retry_after, operation=operation, status=status)
        if status >= HTTP_SERVER_ERROR:
            message = head.message if head and head.message else f"HTTP {status} with a non-JSON body"
            raise ServerError(message, operation=operation, status=status, code=head.code if head else None)
        if head is None:
            if status >= HTTP_CLIENT_ERROR:
                raise _client_error(operation, status, None, f"HTTP {status} with a non-JSON body")
            raise InvalidResponse("response is not the JSON envelope", operation=operation, status=status)
        if status >= HTTP_CLIENT_ERROR or head.error:
            raise _client_error(operation, status, head.code, head.message or f"HTTP {status}")

    def _parse(
        self, operation: str, body: bytes, adapter: TypeAdapter[models.Envelope[ModelT]]
    ) -> ModelT | None:
        try:
            envelope = adapter.validate_json(body)
        except ValidationError as exc:
            raise InvalidResponse(
                f"unexpected response shape: {_validation_summary(exc)}", operation=operation
            ) from None
        return envelope.data

    def _parse_list(
        self,
        operation: str,
        body: bytes,
        adapter: TypeAdapter[models.Envelope[list[ItemT]]],
        item: type[ItemT],
    ) -> list[ItemT]:
        """The items of a list envelope; a malformed item is skipped and reported, the rest is kept.

        ``data: null`` or no ``data`` is an :class:`InvalidResponse`, never an empty list: an empty
        list says "nothing exists" and decides creations.
        """
        try:
            data = adapter.validate_json(body).data  # every item well-formed: one pass, no copies
        except ValidationError:
            data = None
        if data is not None:
            return data
        raw = self._parse(operation, body, _RAW_LIST)
        if raw is None:
            raise InvalidResponse("`data` is null or missing where a list was expected", operation=operation)
        return self._items(operation, raw, item)

    def _items(self, operation: str, raw: list[Any], item: type[ItemT]) -> list[ItemT]:
        items: list[ItemT] = []
        for value in raw:
            if not isinstance(value, dict):
                self._report_malformed(operation, value, f"item is a {type(value).__name__}, not an object")
                continue
            try:
                items.append(item.model_validate(value))
            except ValidationError as exc:
                self._report_malformed(operation, value, _validation_summary(exc))
        return items

    def _report_malformed(self, operation: str, value: Any, problem: str) -> None:
        """One skipped item: the operation, the item's id/identifier when they look like ids (no other
        value of the item is ever logged) and which fields were wrong."""
        self.metrics.malformed_items.labels(operation=operation).inc()
        ref: dict[str, str] = {}
        if isinstance(value, dict):
            for key, shape in _ITEM_REFS:
                text = value.get(key)
                if isinstance(text, int) and not isinstance(text, bool):
                    text = str(text)
                if isinstance(text, str) and shape.fullmatch(text):
                    ref[key] = text
        log.warning("vpsie.malformed_item", operation=operation, problem=problem, **ref)

    # --- auth ----------------------------------------------------------------------------------------

    async def _login(self, config: VPSieClientConfig) -> IssuedToken:
        """Exchange clientId/clientSecret for an access token (both known response shapes, §2.3)."""
        assert config.client_id is not None
        assert config.client_secret is not None
        credentials = {"clientId": config.client_id, "clientSecret": config.client_secret.get_secret_value()}

        def send(encoding: LoginEncoding) -> Awaitable[bytes]:  # JSON, or form when JSON is refused
            json, form = (credentials, None) if encoding == "json" else (None, credentials)
            return self._call(
                "auth_login", "POST", LOGIN_PATH, json=json, form=form, idempotent=True, authenticate=False
            )

        body = await login_with_fallback(send, self._login_encodings)
        try:
            response = models.TokenResponse.model_validate_json(body)
        except ValidationError:
            raise InvalidResponse("token response is not JSON", operation="auth_login") from None
        access = response.access()
        if access is None:
            raise Unauthorized("VPSie returned no access token", operation="auth_login")
        now = self._clock.now()
        expires_at = now + DEFAULT_TOKEN_LIFETIME
        if access.expires:
            try:
                parsed = datetime.fromisoformat(access.expires.replace("Z", "+00:00"))
                if parsed.tzinfo is not None:
                    expires_at = parsed
            except ValueError:
                log.warning("vpsie.login.expiry_unparsed", fallback_seconds=DEFAULT_TOKEN_LIFETIME.seconds)
        log.info("vpsie.login", expires_in_seconds=int((expires_at - now).total_seconds()))
        return IssuedToken(value=access.token, expires_at=expires_at)

    # --- managed Kubernetes --------------------------------------------------------------------------

    async def list_k8s_clusters(self) -> list[models.K8sCluster]:
        body = await self._call("list_k8s_clusters", "GET", "/apps/v2/k8s/cluster/all", idempotent=True)
        return self._parse_list("list_k8s_clusters", body, _CLUSTERS, models.K8sCluster)

    async def get_k8s_cluster(self, cluster_identifier: str) -> models.K8sClusterDetail:
        """The cluster and its nodes. A malformed node is skipped and reported; a detail without
        ``nodes`` (or ``data: null``) is an :class:`InvalidResponse`; ``data: false`` is NotFound."""
        op = "get_k8s_cluster"
        body = await self._call(
            op, "GET", f"/apps/v2/k8s/cluster/byId/{_seg(cluster_identifier)}", idempotent=True
        )
        try:
            data = _CLUSTER_DETAIL.validate_json(body).data  # every node well-formed: one pass
        except ValidationError:
            data = self._cluster_detail(op, self._parse(op, body, _RAW_DETAIL))
        if data is None:
            raise InvalidResponse("`data` is null or missing where a cluster was expected", operation=op)
        if not isinstance(data, models.K8sClusterDetail):  # `data: false` means "no such cluster" (§3.1)
            raise NotFound(f"cluster {cluster_identifier} not found", operation=op)
        return data

    def _cluster_detail(
        self, operation: str, data: dict[str, Any] | bool | None
    ) -> models.K8sClusterDetail | bool | None:
        """A cluster detail whose nodes did not all parse: the cluster itself must, the nodes may not."""
        if not isinstance(data, dict):
            return data
        nodes = data.get("nodes")
        if not isinstance(nodes, list):
            raise InvalidResponse("cluster detail without a `nodes` list", operation=operation)
        try:
            cluster = models.K8sClusterDetail.model_validate({**data, "nodes": []})
        except ValidationError as exc:
            raise InvalidResponse(
                f"unexpected response shape: {_validation_summary(exc)}", operation=operation
            ) from None
        return cluster.model_copy(update={"nodes": self._items(operation, nodes, models.K8sNode)})

    async def list_node_groups(self, cluster_identifier: str) -> list[models.K8sNodeGroup]:
        op = "list_node_groups"
        path = f"/apps/v2/k8s/node/groups/byClusterId/{_seg(cluster_identifier)}"
        body = await self._call(op, "GET", path, idempotent=True)
        return self._parse_list(op, body, _GROUPS, models.K8sNodeGroup)

    async def create_node_group(
        self, cluster_identifier: str, group_name: str, kube_size_id: int
    ) -> models.K8sNodeGroup | None:
        """Create a node group, then find it by name (VPSie returns no usable id).

        Raises :class:`DuplicateGroupSize` when the cluster already has a group of this size.
        """
        body = {
            "clusterIdentifier": cluster_identifier,
            "groupName": group_name,
            "KubeSizeID": int(kube_size_id),
        }
        await self._call(
            "create_node_group", "POST", "/apps/v2/k8s/cluster/add/group", json=body, idempotent=False
        )
        for group in await self.list_node_groups(cluster_identifier):
            if group.group_name == group_name:
                return group
        return None

    async def delete_node_group(self, group_identifier: str, reason: str, note: str = "") -> None:
        path = f"/apps/v2/k8s/cluster/delete/group/{_seg(group_identifier)}"
        body = {"deleteStatistic": {"reason": reason, "note": note}}
        await self._call("delete_node_group", "DELETE", path, json=body, idempotent=True)

    async def add_node(self, cluster_identifier: str, group_id: int) -> None:
        """Ask VPSie for one more worker in the group. Asynchronous: returns before the node exists."""
        path = f"/apps/v2/k8s/cluster/byId/{_seg(cluster_identifier)}/add/slave/group/{int(group_id)}"
        await self._call("add_node", "POST", path, idempotent=False)

    async def delete_node(self, cluster_identifier: str, node_identifier: str) -> None:
        """Remove this very node (AS's targeted call). Idempotent: deleting it twice gives NotFound."""
        path = f"/apps/v2/k8s/cluster/byId/{_seg(cluster_identifier)}/delete/slave"
        await self._call("delete_node", "DELETE", path, json={"identifier": node_identifier}, idempotent=True)

    async def reduce_group(self, cluster_identifier: str, group_id: int) -> None:
        """Remove *some* worker of the group (VPSie picks which). Not idempotent: never retried."""
        path = f"/apps/v2/k8s/cluster/byId/{_seg(cluster_identifier)}/reduce/slave"
        await self._call("reduce_group", "DELETE", path, json={"groupId": int(group_id)}, idempotent=False)

    async def list_k8s_offers(self, dc_identifier: str) -> list[models.K8sOffer]:
        op = "list_k8s_offers"
        body = await self._call(
            op, "POST", "/apps/v2/k8s/offers", json={"dcIdentifier": dc_identifier}, idempotent=True
        )
        return self._parse_list(op, body, _OFFERS, models.K8sOffer)

    # --- plain VMs -----------------------------------------------------------------------------------

    async def list_vms(self, project_id: int | None = None) -> list[models.VM]:
        params = {"projectId": str(project_id)} if project_id is not None else None
        body = await self._call("list_vms", "GET", self._vm, params=params, idempotent=True)
        return self._parse_list("list_vms", body, _VMS, models.VM)

    async def get_vm(self, identifier: str) -> models.VM:
        op = "get_vm"
        body = await self._call(op, "GET", f"{self._vm}/{_seg(identifier)}", idempotent=True)
        data = self._parse(op, body, _VM_DETAIL)
        if not isinstance(data, models.VMDetail):
            raise NotFound(f"VM {identifier} not found", operation=op)
        return data.vm_data

    async def get_vm_tags(self, identifier: str) -> list[str]:
        """The tags VPSie keeps for a VM (``vmTags`` of ``GET {VM}/{identifier}``): ownership proof."""
        op = "get_vm"
        body = await self._call(op, "GET", f"{self._vm}/{_seg(identifier)}", idempotent=True)
        data = self._parse(op, body, _VM_DETAIL)
        if not isinstance(data, models.VMDetail):
            raise NotFound(f"VM {identifier} not found", operation=op)
        return data.tag_names

    async def list_pending_vms(self) -> list[models.PendingVM]:
        body = await self._call("list_pending_vms", "GET", PENDING_VMS_PATH, idempotent=True)
        return self._parse_list("list_pending_vms", body, _PENDING, models.PendingVM)

    async def create_vm(self, request: VMCreate) -> str:
        """Ask VPSie for a VM; returns the ``processId`` sent (VPSie returns no id). Never retried."""
        process_id = request.process_id or str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        await self._call("create_vm", "POST", self._vm, json=request.body(process_id), idempotent=False)
        return process_id

    async def delete_vm(self, identifier: str, *, password: str, reason: str, note: str = "") -> None:
        """Delete a VM. VPSie answers 500 without ``deleteStatistic``, so it is always sent."""
        body = {
            "vmIdentifier": identifier,
            "password": password,
            "deleteStatistic": {"reason": reason, "note": note},
        }
        await self._call("delete_vm", "DELETE", self._vm, json=body, idempotent=True)

    async def _power(self, action: str, identifier: str) -> None:
        path = f"{self._vm}/{action}"
        await self._call(f"{action}_vm", "POST", path, json={"vmIdentifier": identifier}, idempotent=True)

    async def start_vm(self, identifier: str) -> None:
        await self._power("start", identifier)

    async def stop_vm(self, identifier: str) -> None:
        await self._power("stop", identifier)

    async def restart_vm(self, identifier: str) -> None:
        await self._power("restart", identifier)

    # --- catalogue -----------------------------------------------------------------------------------

    async def list_datacenters(self) -> list[models.Datacenter]:
        body = await self._call("list_datacenters", "GET", "/apps/v2/datacenter", idempotent=True)
        return self._parse_list("list_datacenters", body, _DATACENTERS, models.Datacenter)

    async def list_plan_categories(self) -> list[models.PlanCategory]:
        body = await self._call("list_plan_categories", "GET", "/api/v2/plans/category", idempotent=True)
        return self._parse_list("list_plan_categories", body, _CATEGORIES, models.PlanCategory)

    async def list_plans(
        self, dc_identifier: str, os_identifier: str, category_identifier: str = ""
    ) -> list[models.Plan]:
        """Plans with CPU, RAM (MB), disk (GB) and monthly price. The one form-encoded call (§4.3)."""
        form = {
            "dcIdentifier": dc_identifier,
            "osIdentifier": os_identifier,
            "planCatIdentifier": category_identifier,
            "name": "query",
            "description": "query",
            "isCustom": "0",
        }
        body = await self._call("list_plans", "POST", "/apps/v2/resources", form=form, idempotent=True)
        return self._parse_list("list_plans", body, _PLANS, models.Plan)

    async def list_projects(self) -> list[models.Project]:
        body = await self._call("list_projects", "GET", "/apps/v2/projects", idempotent=True)
        page = self._parse("list_projects", body, _PROJECTS)
        return page.rows if page else []

    async def list_ssh_keys(self) -> list[models.SSHKey]:
        body = await self._call("list_ssh_keys", "GET", "/apps/v2/sshkeys", idempotent=True)
        return self._parse_list("list_ssh_keys", body, _SSH_KEYS, models.SSHKey)

    async def list_scripts(self) -> list[models.Script]:
        body = await self._call("list_scripts", "GET", "/apps/v2/scripts", idempotent=True)
        return self._parse_list("list_scripts", body, _SCRIPTS, models.Script)


def _client_error(operation: str, status: int, code: int | None, message: str) -> VPSieError:
    """The typed error of a 4xx, or of an HTTP 200 with ``error: true`` (then ``code`` decides)."""
    effective = status if status >= HTTP_CLIENT_ERROR else (code or status)
    text = message.lower()
    if effective in (HTTP_UNAUTHORIZED, HTTP_FORBIDDEN) or text == AUTH_MESSAGE:
        return Unauthorized(message, operation=operation, status=status, code=code)
    if effective == HTTP_NOT_FOUND or NOT_FOUND_MARKER in text:
        return NotFound(message, operation=operation, status=status, code=code)
    if effective == HTTP_TOO_MANY_REQUESTS:
        return RateLimited(message, operation=operation, status=status, code=code)
    if effective >= HTTP_SERVER_ERROR:
        return ServerError(message, operation=operation, status=status, code=code)
    if DUPLICATE_GROUP_SIZE_MARKER in text:
        return DuplicateGroupSize(message, operation=operation, status=status, code=code)
    return BusinessRuleError(message, operation=operation, status=status, code=code)


def _adapter(tp: Any) -> Any:
    return TypeAdapter(models.Envelope[tp])


# Envelope adapters, built once. `data: false` (VPSie's "not found" for some gets) parses as `False`.
# The typed list adapters are the fast path; when one item does not fit, the raw ones find which.
_RAW_LIST: TypeAdapter[models.Envelope[list[Any]]] = _adapter(list[Any])
_RAW_DETAIL: TypeAdapter[models.Envelope[dict[str, Any] | bool]] = _adapter(dict[str, Any] | bool)
_CLUSTERS: TypeAdapter[models.Envelope[list[models.K8sCluster]]] = _adapter(list[models.K8sCluster])
_CLUSTER_DETAIL: TypeAdapter[models.Envelope[models.K8sClusterDetail | bool]] = _adapter(
    models.K8sClusterDetail | bool
)
_GROUPS: TypeAdapter[models.Envelope[list[models.K8sNodeGroup]]] = _adapter(list[models.K8sNodeGroup])
_OFFERS: TypeAdapter[models.Envelope[list[models.K8sOffer]]] = _adapter(list[models.K8sOffer])
_VMS: TypeAdapter[models.Envelope[list[models.VM]]] = _adapter(list[models.VM])
_VM_DETAIL: TypeAdapter[models.Envelope[models.VMDetail | bool]] = _adapter(models.VMDetail | bool)
_PENDING: TypeAdapter[models.Envelope[list[models.PendingVM]]] = _adapter(list[models.PendingVM])
_DATACENTERS: TypeAdapter[models.Envelope[list[models.Datacenter]]] = _adapter(list[models.Datacenter])
_CATEGORIES: TypeAdapter[models.Envelope[list[models.PlanCategory]]] = _adapter(list[models.PlanCategory])
_PLANS: TypeAdapter[models.Envelope[list[models.Plan]]] = _adapter(list[models.Plan])
_PROJECTS: TypeAdapter[models.Envelope[models.ProjectPage]] = _adapter(models.ProjectPage)
_SSH_KEYS: TypeAdapter[models.Envelope[list[models.SSHKey]]] = _adapter(list[models.SSHKey])
_SCRIPTS: TypeAdapter[models.Envelope[list[models.Script]]] = _adapter(list[models.Script])
