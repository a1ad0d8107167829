"""Error classes drive the autoscaler's back-off; they must follow VPSie's known messages."""

from __future__ import annotations

import pytest

from vpsie_autoscaler.vpsie import errors as e


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Worker nodes count exceeds the allowed limit", e.ErrorClass.QUOTA),
        ("Quota exceeded for this account", e.ErrorClass.QUOTA),
        ("This plan is out of stock in Helsinki", e.ErrorClass.PLAN_UNAVAILABLE),
        ("Resource is locked", e.ErrorClass.INVALID),
    ],
)
def test_business_rule_messages_are_classified(message: str, expected: e.ErrorClass) -> None:
    assert e.BusinessRuleError(message).error_class is expected


@pytest.mark.parametrize(
    ("exc", "predicate", "cls"),
    [
        (e.Unauthorized("x"), e.is_unauthorized, e.ErrorClass.AUTH),
        (e.NotFound("x"), e.is_not_found, e.ErrorClass.NOT_FOUND),
        (e.RateLimited("x", retry_after=3), e.is_rate_limited, e.ErrorClass.TRANSIENT),
        (
            e.DuplicateGroupSize("Group G has same selected Size"),
            e.is_duplicate_group_size,
            e.ErrorClass.INVALID,
        ),
        (e.ServerError("x"), e.is_server_error, e.ErrorClass.TRANSIENT),
        (e.ConnectionFailed("x"), e.is_server_error, e.ErrorClass.TRANSIENT),
        (e.VPSieTimeout("x"), e.is_timeout, e.ErrorClass.TRANSIENT),
        (e.CircuitOpen("x", retry_after=1), e.is_circuit_open, e.ErrorClass.TRANSIENT),
    ],
)
def test_each_error_has_its_predicate_and_class(
    exc: e.VPSieError, predicate: object, cls: e.ErrorClass
) -> None:
    assert predicate(exc)  # type: ignore[operator]
    assert e.error_class(exc) is cls
    assert not e.is_not_found(ValueError("x"))


def test_duplicate_group_size_is_a_business_rule_error() -> None:
    assert e.is_business_rule(e.DuplicateGroupSize("dup"))


def test_transient_and_quota_helpers() -> None:
    assert e.is_transient(e.ServerError("x"))
    assert not e.is_transient(e.Unauthorized("x"))
    assert e.is_quota(e.BusinessRuleError("Worker nodes count exceeds the allowed limit"))
    assert e.error_class(RuntimeError("unknown")) is e.ErrorClass.TRANSIENT


def test_message_names_operation_and_status() -> None:
    assert str(e.ServerError("boom", operation="list_vms", status=502)) == "list_vms: boom (HTTP 502)"


def test_sent_defaults_follow_the_rule_and_can_be_overridden() -> None:
    assert [x.sent for x in (e.ServerError("x"), e.VPSieTimeout("x"), e.InvalidResponse("x"))] == [True] * 3
    refusals = (e.ConnectionFailed("x"), e.RateLimited("x"), e.BusinessRuleError("x"), e.Unauthorized("x"))
    assert [x.sent for x in refusals] == [False] * 4
    refused = e.RateLimited("x")
    e.mark_request_sent(refused, True)
    assert e.request_may_have_reached_vpsie(refused)
