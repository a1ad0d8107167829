"""Typed VPSie API errors and the small predicates the rest of the product branches on.

VPSie reports failures two ways (``docs/vpsie-api.md`` §3): a non-2xx status, or HTTP 200 with
``{"error": true, "message": ...}``. Both end up here as one exception hierarchy, in the style of
client-go's ``k8s.io/apimachinery/pkg/api/errors`` (``IsNotFound``, ``IsConflict``, ...): callers ask
``is_not_found(e)`` instead of comparing status codes.

Every error also carries an :class:`ErrorClass`, the coarse category the autoscaler's back-off uses
(cluster-autoscaler's ``cloudprovider.InstanceErrorClass``: out-of-resources vs other errors; Karpenter's
``InsufficientCapacityError``): a quota error pauses a group for long, a transient one for short.

And every error says whether the request **may have reached VPSie** (:func:`request_may_have_reached_vpsie`):
a create whose answer was lost may have created something, one VPSie refused did not.
"""

from __future__ import annotations

import asyncio
import contextlib
from enum import StrEnum

# Substrings (lower case) of VPSie messages that mean "the account or cluster hit a limit". The first is
# the known live text ("Worker nodes count exceeds the allowed limit"); the others are the phrasings
# VPSie's own Go autoscaler classifies as terminal (docs/vpsie-api.md §3.3).
QUOTA_MARKERS = (
    "exceeds the allowed limit",
    "quota exceeded",
    "plan does not allow",
    "maximum number of",
    "limit reached",
    "subscription does not allow",
    "insufficient balance",
)
# Substrings that mean "this size/plan cannot be had right now" (stock, capacity, retired plan).
PLAN_UNAVAILABLE_MARKERS = (
    "out of stock",
    "not available",
    "unavailable",
    "no capacity",
    "insufficient resources",
)
# The live text VPSie answers when a second node group of one cluster uses the same KubeSizeID.
DUPLICATE_GROUP_SIZE_MARKER = "has same selected size"
# Where TF-A decides a resource is gone: any message containing this (case-insensitive).
NOT_FOUND_MARKER = "not found"


class ErrorClass(StrEnum):
    """How the autoscaler should react to a failed cloud call."""

    QUOTA = "quota"  # a limit of the account or cluster: back off long, try another group
    PLAN_UNAVAILABLE = "plan_unavailable"  # this size cannot be provisioned now: try another group
    TRANSIENT = "transient"  # 5xx, timeouts, 429, circuit open: retry soon with back-off
    AUTH = "auth"  # credentials rejected: report, wait for new credentials
    INVALID = "invalid"  # the request itself is wrong (bad ids, business rule): do not repeat it as is
    NOT_FOUND = "not_found"  # the object is gone (for deletes: success)


# Set on an exception that is not a VPSieError (e.g. asyncio.CancelledError) by the client when it knows
# whether the failed request may have reached VPSie (see mark_request_sent).
SENT_ATTRIBUTE = "vpsie_request_sent"


class VPSieError(Exception):
    """Any failed VPSie call. ``status`` is the HTTP status (None without a response).

    ``sent`` says whether the request may have reached VPSie (see :func:`request_may_have_reached_vpsie`):
    the class default, unless the client knows better for this very call (e.g. an earlier attempt of a
    retried call that may have reached VPSie makes every later failure of it ``sent=True``).
    """

    default_class = ErrorClass.INVALID
    default_sent = True  # unknown counts as sent

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.status = status
        self.code = code
        self.sent: bool = self.default_sent

    @property
    def error_class(self) -> ErrorClass:
        return self.default_class

    def __str__(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{self.message}{status}"


class Unauthorized(VPSieError):
    """401/403, or a token exchange that was refused: the credentials are wrong or expired."""

    default_class = ErrorClass.AUTH
    default_sent = False  # refused before anything was done


class NotFound(VPSieError):
    """404, or an error message saying the object does not exist."""

    default_class = ErrorClass.NOT_FOUND
    default_sent = False  # VPSie answered: nothing to act on


class RateLimited(VPSieError):
    """429. ``retry_after`` is the server's Retry-After in seconds, when it sent one."""

    default_class = ErrorClass.TRANSIENT
    default_sent = False  # refused: "too many requests" is answered instead of acting

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        operation: str = "",
        status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(message, operation=operation, status=status, code=code)
        self.retry_after = retry_after


class BusinessRuleError(VPSieError):
    """VPSie refused the request for a rule of its own (a 4xx or an HTTP 200 ``error: true``).

    The class is derived from the message: quota texts → QUOTA, stock/capacity texts →
    PLAN_UNAVAILABLE, anything else → INVALID.
    """

    default_sent = False  # VPSie answered and refused

    @property
    def error_class(self) -> ErrorClass:
        return classify_message(self.message)


class DuplicateGroupSize(BusinessRuleError):
    """A cluster may hold only one node group per size (KubeSizeID); VPSie refused a second one."""

    @property
    def error_class(self) -> ErrorClass:
        return ErrorClass.INVALID


class ServerError(VPSieError):
    """5xx, a body that is not the JSON envelope (an HTML 502 page), or a broken connection."""

    default_class = ErrorClass.TRANSIENT


class ConnectionFailed(ServerError):
    """No connection to VPSie could be established (refused, DNS, TLS handshake, connect timeout).

    Nothing of the request was written, so VPSie provably did not act on it (``sent`` is False).
    """

    default_sent = False


class InvalidResponse(ServerError):
    """A 2xx answer that is not the JSON envelope, or whose shape does not match the model.

    VPSie answered with success, so it may well have acted: ``sent`` stays True.
    """


class VPSieTimeout(VPSieError):
    """No complete answer within the request timeout. For a create, the outcome is unknown."""

    default_class = ErrorClass.TRANSIENT


class CircuitOpen(VPSieError):
    """The client refused to call VPSie because recent calls failed; ``retry_after`` in seconds."""

    default_class = ErrorClass.TRANSIENT
    default_sent = False  # refused by the client itself

    def __init__(self, message: str, *, retry_after: float, operation: str = "") -> None:
        super().__init__(message, operation=operation)
        self.retry_after = retry_after


class InstanceNotReady(VPSieError):
    """The operation needs an instance that VPSie has not materialised yet (still pending)."""

    default_class = ErrorClass.TRANSIENT
    default_sent = False  # raised by a provider instead of calling VPSie


def classify_message(message: str) -> ErrorClass:
    """The error class a business-rule message implies."""
    text = message.lower()
    if any(m in text for m in QUOTA_MARKERS):
        return ErrorClass.QUOTA
    if any(m in text for m in PLAN_UNAVAILABLE_MARKERS):
        return ErrorClass.PLAN_UNAVAILABLE
    return ErrorClass.INVALID


def error_class(exc: BaseException) -> ErrorClass:
    """The error class of any exception (unknown exceptions count as transient)."""
    if isinstance(exc, VPSieError):
        return exc.error_class
    return ErrorClass.TRANSIENT


def is_unauthorized(exc: BaseException) -> bool:
    return isinstance(exc, Unauthorized)


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, NotFound)


def is_rate_limited(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited)


def is_business_rule(exc: BaseException) -> bool:
    return isinstance(exc, BusinessRuleError)


def is_duplicate_group_size(exc: BaseException) -> bool:
    return isinstance(exc, DuplicateGroupSize)


def is_server_error(exc: BaseException) -> bool:
    return isinstance(exc, ServerError)


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, VPSieTimeout)


def is_circuit_open(exc: BaseException) -> bool:
    return isinstance(exc, CircuitOpen)


def is_quota(exc: BaseException) -> bool:
    return error_class(exc) is ErrorClass.QUOTA


def is_transient(exc: BaseException) -> bool:
    """True when repeating the same call later may succeed."""
    return error_class(exc) is ErrorClass.TRANSIENT


def mark_request_sent(exc: BaseException, sent: bool) -> None:
    """Record on ``exc`` whether the request that failed with it may have reached VPSie.

    On a :class:`VPSieError` this sets ``sent``; on any other exception (``asyncio.CancelledError``
    above all, which must propagate unchanged) an attribute the verdict below reads. The same exception
    instance travels up through every ``await`` of one task, so a caller in that task sees the mark.
    """
    if isinstance(exc, VPSieError):
        exc.sent = sent
        return
    with contextlib.suppress(AttributeError):  # a type with __slots__: its verdict stays "unknown"
        setattr(exc, SENT_ATTRIBUTE, sent)


def request_may_have_reached_vpsie(exc: BaseException) -> bool:
    """Whether VPSie may have acted on the request that failed with ``exc``.

    The rule: **a cloud call whose answer was lost may have happened: unknown counts as sent.** Only a
    failure that proves VPSie did not act returns False; a caller that gets True must reconcile (look
    the object up) before it repeats a non-idempotent call such as add-node or create.

    ===========================================================  =======  ================================
    failure                                                      verdict  why
    ===========================================================  =======  ================================
    :class:`CircuitOpen`                                         False    the client refused to call
    cancelled while waiting for the rate limiter (or a login)    False    nothing was sent yet
    :class:`ConnectionFailed` (refused, DNS, TLS, connect        False    no connection, nothing written
    timeout)
    :class:`Unauthorized` (401/403, refused login)               False    VPSie refused
    :class:`RateLimited` (429)                                   False    VPSie refused
    :class:`NotFound`, :class:`BusinessRuleError` (a 4xx, or     False    VPSie answered and refused
    HTTP 200 with ``error: true``)
    :class:`InstanceNotReady`                                    False    raised instead of a call
    :class:`InvalidResponse` (a 2xx with an unparsable body)     True     VPSie said 200: it may have acted
    :class:`VPSieTimeout`                                        True     the answer was lost
    :class:`ServerError`: 5xx (JSON or an HTML 502/504 page),    True     a gateway or backend failed
    connection reset or closed after sending                              after the request went out
    ``asyncio.CancelledError`` while the request was in flight   True     the answer was lost
    ``TimeoutError`` of ``asyncio.timeout()`` around a call      as the   the cancel it replaced
                                                                 cancel
    any other exception                                          True     unknown counts as sent
    ===========================================================  =======  ================================

    Any failure of a call an earlier attempt of which may have reached VPSie (an idempotent call that
    was retried) is True. The client records the exceptions it knows about with
    :func:`mark_request_sent`; an unmarked ``CancelledError`` counts as sent.
    """
    if isinstance(exc, VPSieError):
        return exc.sent
    marked = getattr(exc, SENT_ATTRIBUTE, None)
    if isinstance(marked, bool):
        return marked
    if type(exc) is TimeoutError and isinstance(exc.__cause__, asyncio.CancelledError):
        return request_may_have_reached_vpsie(exc.__cause__)  # asyncio.timeout() raises it "from" the cancel
    return True
