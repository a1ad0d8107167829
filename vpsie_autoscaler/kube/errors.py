"""Typed Kubernetes API errors, classified the way apimachinery does.

Upstream analogue: ``k8s.io/apimachinery/pkg/api/errors`` (``StatusError`` with ``IsNotFound``,
``IsConflict``, ``IsResourceExpired``, ``IsTooManyRequests``...). Every non-2xx answer of the
apiserver is a ``Status`` object; :func:`from_response` turns it (or a non-Status body from a proxy)
into one exception class per reason, so callers branch on types or on the ``is_*`` predicates,
never on status codes or message text.

A 409 is either ``AlreadyExists`` (create of a taken name) or ``Conflict`` (stale resourceVersion,
optimistic lock lost): the first is a normal outcome, the second means "read again and requeue".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

# A Retry-After we cannot parse (or a 429 without one) still means "slow down": client-go's
# default back-off for throttled requests starts at one second.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
# Status bodies are small; a huge error body is a proxy's HTML page, keep only its head in messages.
MAX_MESSAGE_CHARS = 512


class KubeError(Exception):
    """Any failure talking to the Kubernetes API.

    ``status`` is the HTTP code (None when no response arrived), ``reason`` the Status reason
    (``NotFound``, ``Conflict``, ``Expired``...), ``body`` the decoded Status when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        body: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.body: Mapping[str, Any] = body or {}

    @property
    def causes(self) -> list[dict[str, Any]]:
        """``details.causes`` of the Status: field errors, ``ResourceVersionTooLarge``..."""
        details = self.body.get("details") or {}
        causes = details.get("causes") or []
        return [c for c in causes if isinstance(c, dict)]

    def __str__(self) -> str:
        code = f"{self.status} " if self.status is not None else ""
        reason = f"{self.reason}: " if self.reason else ""
        return f"{code}{reason}{self.message}"


class BadRequest(KubeError):
    """400: the request itself is malformed (for example a JSON patch that is not an array)."""


class Unauthorized(KubeError):
    """401: the credentials are missing, wrong or expired."""


class Forbidden(KubeError):
    """403: RBAC denies the verb on this resource."""


class NotFound(KubeError):
    """404: the object (or the namespace, or the resource type) does not exist."""


class MethodNotAllowed(KubeError):
    """405: the verb is not supported on this resource."""


class AlreadyExists(KubeError):
    """409 with reason AlreadyExists: create of a name that is taken."""


class Conflict(KubeError):
    """409: the object changed since it was read (resourceVersion precondition failed)."""


class Gone(KubeError):
    """410 Expired/Gone: the resourceVersion (or continue token) left the server's window.

    A reflector answers by listing again; a pager by restarting the list without a token.
    """


class UnsupportedMediaType(KubeError):
    """415: wrong patch content type (for example strategic merge on a custom resource)."""


class Invalid(KubeError):
    """422: the object fails validation; :attr:`causes` lists the offending fields."""


class TooManyRequests(KubeError):
    """429: throttled (API priority and fairness) or an eviction blocked by a PodDisruptionBudget.

    ``retry_after`` is the server's hint in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        reason: str = "TooManyRequests",
        body: Mapping[str, Any] | None = None,
        retry_after: float = DEFAULT_RETRY_AFTER_SECONDS,
    ) -> None:
        super().__init__(message, status=status, reason=reason, body=body)
        self.retry_after = retry_after


class ServerError(KubeError):
    """5xx: the apiserver (or something in front of it) failed; retry with back-off."""


class KubeTimeout(KubeError):
    """No (complete) answer within the client-side timeout, or a server-side 504 Timeout."""


class KubeConnectionError(KubeError):
    """The connection could not be opened or broke mid-response."""


_BY_CODE: dict[int, type[KubeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    410: Gone,
    415: UnsupportedMediaType,
    422: Invalid,
    429: TooManyRequests,
    504: KubeTimeout,
}


def _parse_retry_after(value: str | None, body: Mapping[str, Any]) -> float:
    details = body.get("details") or {}
    hint = details.get("retryAfterSeconds") if isinstance(details, dict) else None
    for candidate in (value, hint):
        if candidate is None:
            continue
        try:
            seconds = float(candidate)
        except (TypeError, ValueError):
            continue
        if seconds >= 0:
            return seconds
    return DEFAULT_RETRY_AFTER_SECONDS


def from_status(status_obj: Mapping[str, Any], *, retry_after_header: str | None = None) -> KubeError:
    """Map a ``Status`` object (an HTTP error body or a watch ERROR event) to a typed error."""
    code_raw = status_obj.get("code")
    code = code_raw if isinstance(code_raw, int) else 500
    reason = str(status_obj.get("reason") or "")
    message = str(status_obj.get("message") or reason or f"HTTP {code}")[:MAX_MESSAGE_CHARS]
    if code == 409 and reason == "AlreadyExists":
        return AlreadyExists(message, status=code, reason=reason, body=status_obj)
    if code == 429:
        return TooManyRequests(
            message,
            status=code,
            reason=reason or "TooManyRequests",
            body=status_obj,
            retry_after=_parse_retry_after(retry_after_header, status_obj),
        )
    if reason in ("Expired", "Gone"):
        return Gone(message, status=code, reason=reason, body=status_obj)
    cls = _BY_CODE.get(code)
    if cls is None:
        cls = ServerError if code >= 500 else KubeError
    return cls(message, status=code, reason=reason, body=status_obj)


def from_response(code: int, body: bytes, *, retry_after_header: str | None = None) -> KubeError:
    """Map a non-2xx HTTP answer to a typed error, whether or not its body is a Status."""
    status_obj: dict[str, Any]
    try:
        decoded = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        decoded = {}
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        status_obj = dict(decoded)
        status_obj.setdefault("code", code)
        if not isinstance(status_obj.get("code"), int) or status_obj["code"] == 0:
            status_obj["code"] = code
    else:
        text = body[:MAX_MESSAGE_CHARS].decode("utf-8", errors="replace").strip()
        status_obj = {"kind": "Status", "code": code, "message": text or f"HTTP {code}"}
    return from_status(status_obj, retry_after_header=retry_after_header)


def is_not_found(err: BaseException) -> bool:
    return isinstance(err, NotFound)


def is_already_exists(err: BaseException) -> bool:
    return isinstance(err, AlreadyExists)


def is_conflict(err: BaseException) -> bool:
    return isinstance(err, Conflict)


def is_gone(err: BaseException) -> bool:
    """410 Expired/Gone (client-go ``IsResourceExpired`` / ``IsGone``)."""
    return isinstance(err, Gone)


def is_too_many_requests(err: BaseException) -> bool:
    return isinstance(err, TooManyRequests)


def is_invalid(err: BaseException) -> bool:
    return isinstance(err, Invalid)


def is_forbidden(err: BaseException) -> bool:
    return isinstance(err, Forbidden)


def is_unauthorized(err: BaseException) -> bool:
    return isinstance(err, Unauthorized)


def is_timeout(err: BaseException) -> bool:
    return isinstance(err, KubeTimeout)


def is_too_large_resource_version(err: BaseException) -> bool:
    """client-go ``isTooLargeResourceVersionError``: the server has not seen that RV yet."""
    if not isinstance(err, KubeError):
        return False
    return any(c.get("reason") == "ResourceVersionTooLarge" for c in err.causes) or (
        "Too large resource version" in err.message
    )


def is_retriable(err: BaseException) -> bool:
    """Transient failures worth retrying with back-off: throttling, 5xx, timeouts, broken connections."""
    return isinstance(err, TooManyRequests | ServerError | KubeTimeout | KubeConnectionError)
