"""Typed VPSie API errors and the small predicates the rest of the product branches on.

VPSie reports failures two ways (``docs/vpsie-api.md`` §3): a non-2xx status, or HTTP 200 with
``{"error": true, "message": ...}``. Both end up here as one exception hierarchy, in the style of
client-go's ``k8s.io/apimachinery/pkg/api/errors`` (``IsNotFound``, ``IsConflict``, ...): callers ask
``is_not_found(e)`` instead of comparing status codes.

Every error also carries an :class:`ErrorClass`, the coarse category the autoscaler's back-off uses
(cluster-autoscaler's ``cloudprovider.InstanceErrorClass``: out-of-resources vs other errors; Karpenter's
``InsufficientCapacityError``): a quota error pauses a group for long, a transient one for short.
"""

from __future__ import annotations

from enum import StrEnum

# Substrings (lower case) of VPSie messages that mean "the account or cluster hit a limit". The first is
# the known live text ("Worker nodes count exceeds the allowed limit"); the others are the phrasings
# VPSie's own autoscaler classifies as terminal (seed-system §6.2).
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


class VPSieError(Exception):
    """Any failed VPSie call. ``status`` is the HTTP status (None without a response)."""

    default_class = ErrorClass.INVALID

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


class NotFound(VPSieError):
    """404, or an error message saying the object does not exist."""

    default_class = ErrorClass.NOT_FOUND


class RateLimited(VPSieError):
    """429. ``retry_after`` is the server's Retry-After in seconds, when it sent one."""

    default_class = ErrorClass.TRANSIENT

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


class InvalidResponse(ServerError):
    """A 2xx answer that is not the JSON envelope, or whose shape does not match the model."""


class VPSieTimeout(VPSieError):
    """No complete answer within the request timeout. For a create, the outcome is unknown."""

    default_class = ErrorClass.TRANSIENT


class CircuitOpen(VPSieError):
    """The client refused to call VPSie because recent calls failed; ``retry_after`` in seconds."""

    default_class = ErrorClass.TRANSIENT

    def __init__(self, message: str, *, retry_after: float, operation: str = "") -> None:
        super().__init__(message, operation=operation)
        self.retry_after = retry_after


class InstanceNotReady(VPSieError):
    """The operation needs an instance that VPSie has not materialised yet (still pending)."""

    default_class = ErrorClass.TRANSIENT


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
