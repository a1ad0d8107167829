"""Where the VPSie access token comes from.

Two sources (``docs/vpsie-api.md`` §2):

- :class:`StaticToken`: a long-lived API token from the VPSie console, sent as ``Vpsie-Auth``.
- :class:`ExchangedToken`: ``clientId``/``clientSecret`` exchanged at ``POST /apps/v2/auth/from/api``
  for a short-lived JWT, sent as ``Vpsie-Auth`` and ``Authorization: Bearer``. VPSie has no refresh
  grant, so "refresh" means logging in again: ``refresh_margin`` seconds before expiry (VPSie's own
  autoscaler uses 5 minutes), and once after a 401.

The login body is JSON, as the official SDK sends it; when VPSie refuses a JSON login, the same
credentials are sent form-encoded (``clientId=…&clientSecret=…``), the body VPSie's Go autoscaler
proved against the real API (docs/vpsie-api.md §2). :class:`LoginEncodings` remembers the
encoding that worked, so later logins send it first (:func:`login_with_fallback`).

Refresh is single-flight, like client-go's ``oauth2.ReuseTokenSource`` with a lock: many concurrent
requests that find the token stale cause one login, and a burst of 401s for the same token causes one
re-login. Token values never appear in ``repr``, logs or exceptions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, Protocol

import structlog

from vpsie_autoscaler.runtime.clock import Clock
from vpsie_autoscaler.vpsie.errors import BusinessRuleError, NotFound, Unauthorized, VPSieError

log = structlog.get_logger("vpsie_autoscaler.vpsie.auth")

AUTH_HEADER = "Vpsie-Auth"
DEFAULT_REFRESH_MARGIN_SECONDS = 300.0  # re-login 5 min before expiry, as VPSie's autoscaler does


@dataclass(frozen=True)
class IssuedToken:
    """A token from the exchange endpoint; ``value`` is hidden from ``repr``."""

    value: str = field(repr=False)
    expires_at: datetime


Login = Callable[[], Awaitable[IssuedToken]]


class TokenSource(Protocol):
    @property
    def refreshable(self) -> bool:
        """Whether a 401 can be cured by getting a new token."""

    async def headers(self) -> dict[str, str]:
        """The authentication headers for the next request (logging in first if needed)."""

    def invalidate(self, headers: dict[str, str]) -> None:
        """The server refused these headers (401): forget the token unless it was already replaced."""


class StaticToken:
    """A console-issued API token: never expires from our point of view, cannot be refreshed."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise ValueError("the VPSie API token is empty")
        self._token = token.strip()

    def __repr__(self) -> str:
        return "StaticToken(***)"

    @property
    def refreshable(self) -> bool:
        return False

    async def headers(self) -> dict[str, str]:
        return {AUTH_HEADER: self._token}

    def invalidate(self, headers: dict[str, str]) -> None:
        """Nothing to do: a refused static token stays refused until the credentials change."""


class ExchangedToken:
    """A short-lived token obtained by ``login`` and renewed before it expires."""

    def __init__(
        self,
        login: Login,
        clock: Clock,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._login = login
        self._clock = clock
        self._margin = refresh_margin
        self._token: str | None = None
        self._deadline = 0.0  # monotonic time at which the token must be renewed
        self._lock = asyncio.Lock()
        self.logins = 0  # how many times we exchanged credentials (for tests and diagnostics)

    def __repr__(self) -> str:
        return f"ExchangedToken(logins={self.logins})"

    @property
    def refreshable(self) -> bool:
        return True

    def _fresh(self) -> bool:
        return self._token is not None and self._clock.monotonic() < self._deadline

    async def headers(self) -> dict[str, str]:
        if not self._fresh():
            async with self._lock:
                if not self._fresh():
                    issued = await self._login()
                    self.logins += 1
                    lifetime = (issued.expires_at - self._clock.now()).total_seconds()
                    self._token = issued.value
                    # A token that lives shorter than the margin is used until half its life is gone.
                    early = min(self._margin, max(lifetime, 0.0) / 2)
                    self._deadline = self._clock.monotonic() + lifetime - early
        token = self._token
        assert token is not None
        return {AUTH_HEADER: token, "Authorization": f"Bearer {token}"}

    def invalidate(self, headers: dict[str, str]) -> None:
        if self._token is not None and headers.get(AUTH_HEADER) == self._token:
            self._token = None


LoginEncoding = Literal["json", "form"]
LOGIN_ENCODINGS: Final[tuple[LoginEncoding, ...]] = ("json", "form")
REFUSALS: Final = (Unauthorized, BusinessRuleError, NotFound)
"""Answers that refuse a login body (401/403, another 4xx, ``error: true``, 404): another encoding may
be accepted. Rate limits, 5xx and timeouts are not refusals: the client retries those as they are."""


class LoginEncodings:
    """The order in which login bodies are tried: JSON first, then form-encoded; the last one VPSie
    accepted goes first from then on (one refused request per process, not one per login)."""

    def __init__(self) -> None:
        self._order: tuple[LoginEncoding, ...] = LOGIN_ENCODINGS

    def order(self) -> tuple[LoginEncoding, ...]:
        return self._order

    def accepted(self, encoding: LoginEncoding) -> None:
        self._order = (encoding, *(e for e in self._order if e != encoding))


SendLogin = Callable[[LoginEncoding], Awaitable[bytes]]


async def login_with_fallback(send: SendLogin, encodings: LoginEncodings) -> bytes:
    """The body of the first login VPSie accepts, trying each encoding in ``encodings``' order.

    ``send`` posts the credentials in the given encoding and returns the response body, raising the
    client's typed errors. When every encoding is refused, raises :class:`Unauthorized` (VPSie's text
    is not echoed: a refused login may quote what it was sent); any other error propagates at once.
    """
    refused: list[VPSieError] = []
    for encoding in encodings.order():
        try:
            body = await send(encoding)
        except REFUSALS as exc:
            refused.append(exc)
            log.info("vpsie.login.refused", encoding=encoding, status=exc.status, error=type(exc).__name__)
            continue
        if refused:
            log.info("vpsie.login.fallback_accepted", encoding=encoding)
        encodings.accepted(encoding)
        return body
    tried = " and ".join(encodings.order())
    raise Unauthorized(
        f"VPSie refused the clientId/clientSecret (login sent as {tried})",
        operation="auth_login",
        status=refused[-1].status if refused else None,
    )
