"""Error classes drive the autoscaler's back-off; they must follow VPSie's known messages."""

from __future__ import annotations

import pytest

from vpsie_autoscaler.vpsie import errors as vpsie_errors


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Worker nodes count exceeds the allowed limit", vpsie_errors.ErrorClass.QUOTA),
        ("Quota exceeded for this account", vpsie_errors.ErrorClass.QUOTA),
        ("This plan is out of stock in Helsinki", vpsie_errors.ErrorClass.PLAN_UNAVAILABLE),
        ("Resource is locked", vpsie_errors.ErrorClass.INVALID),
    ],
)
def test_business_rule_messages_are_classified(message: str, expected: vpsie_errors.ErrorClass) -> None:
    assert vpsie_errors.BusinessRuleError(message).error_class is expected


@pytest.mark.parametrize(
    ("exc", "predicate", "cls"),
    [
        (vpsie_errors.Unauthorized("x"), vpsie_errors.is_unauthorized, vpsie_errors.ErrorClass.AUTH),
        (vpsie_errors.NotFound("x"), vpsie_errors.is_not_found, vpsie_errors.ErrorClass.NOT_FOUND),
        (
            vpsie_errors.RateLimited("x", retry_after=3),
            vpsie_errors.is_rate_limited,
            vpsie_errors.ErrorClass.TRANSIENT,
        ),
        (
            vpsie_errors.DuplicateGroupSize("Group G has same selected Size"),
            vpsie_errors.is_duplicate_group_size,
            vpsie_errors.ErrorClass.INVALID,
        ),
        (vpsie_errors.ServerError("x"), vpsie_errors.is_server_error, vpsie_errors.ErrorClass.TRANSIENT),
        (vpsie_errors.ConnectionFailed("x"), vpsie_errors.is_server_error, vpsie_errors.ErrorClass.TRANSIENT),
        (vpsie_errors.VPSieTimeout("x"), vpsie_errors.is_timeout, vpsie_errors.ErrorClass.TRANSIENT),
        (
            vpsie_errors.CircuitOpen("x", retry_after=1),
            vpsie_errors.is_circuit_open,
            vpsie_errors.ErrorClass.TRANSIENT,
        ),
    ],
)
def test_each_error_has_its_predicate_and_class(
    exc: vpsie_errors.VPSieError, predicate: object, cls: vpsie_errors.ErrorClass
) -> None:
    assert predicate(exc)  # type: ignore[operator]
    assert vpsie_errors.error_class(exc) is cls
    assert not vpsie_errors.is_not_found(ValueError("x"))


def test_duplicate_group_size_is_a_business_rule_error() -> None:
    assert vpsie_errors.is_business_rule(vpsie_errors.DuplicateGroupSize("dup"))


def test_transient_and_quota_helpers() -> None:
    assert vpsie_errors.is_transient(vpsie_errors.ServerError("x"))
    assert not vpsie_errors.is_transient(vpsie_errors.Unauthorized("x"))
    assert vpsie_errors.is_quota(
        vpsie_errors.BusinessRuleError("Worker nodes count exceeds the allowed limit")
    )
    assert vpsie_errors.error_class(RuntimeError("unknown")) is vpsie_errors.ErrorClass.TRANSIENT


def test_message_names_operation_and_status() -> None:
    assert (
        str(vpsie_errors.ServerError("boom", operation="list_vms", status=502)) == "list_vms: boom (HTTP 502)"
    )


def test_sent_defaults_follow_the_rule_and_can_be_overridden() -> None:
    assert [
        x.sent
        for x in (
            vpsie_errors.ServerError("x"),
            vpsie_errors.VPSieTimeout("x"),
            vpsie_errors.InvalidResponse("x"),
        )
    ] == [True] * 3
    refusals = (
        vpsie_errors.ConnectionFailed("x"),
        vpsie_errors.RateLimited("x"),
        vpsie_errors.BusinessRuleError("x"),
        vpsie_errors.Unauthorized("x"),
    )
    assert [x.sent for x in refusals] == [False] * 4
    refused = vpsie_errors.RateLimited("x")
    vpsie_errors.mark_request_sent(refused, True)
    assert vpsie_errors.request_may_have_reached_vpsie(refused)
