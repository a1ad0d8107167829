"""Quantities from user input are parsed with bounded work: hostile strings are refused with a clear
``ValueError`` before any big-number arithmetic (``Decimal`` → ``int`` is quadratic in the digits),
and magnitudes stop at Kubernetes' own bound (int64 in the canonical unit: milli-units for cpu)."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from vpsie_autoscaler.api.nodegroup import NodeGroup
from vpsie_autoscaler.scaling.groups import GroupTemplate, TemplateError, template_problem
from vpsie_autoscaler.scaling.resources import (
    MAX_QUANTITY_LENGTH,
    MAX_UNITS,
    QuantityError,
    Resources,
    parse_quantity,
    to_units,
)

HOSTILE = [
    "1e999999999",
    "1e400000",
    "1E400000",
    "1e-999999999999",
    "-1",
    "-1e400000",
    "NaN",
    "nan",
    "inf",
    "-Infinity",
    "1" * 10000,
    "9" * 64,
    "0." + "0" * 60 + "1",
    "1Ei" * 1000,
    "1Ei" * 20,
    "1e1.5",
    "1e+" + "9" * 60,
    "8Ei",
    "9223372036854775808",
    "",
    " ",
    "1 Gi",
    "0x10",
    "\uff11",  # full-width digit one: str.isdigit() says yes, the pattern says no
    float("nan"),
    float("inf"),
    1e300,
    2**64,
    10**4000,
]
BUDGET_S = 0.05
"""CPU time one hostile parse may take (a lease renewal is missed after seconds, not milliseconds)."""


def _parse(name: str, value: str | int | float) -> int | None:
    parse_quantity.cache_clear()
    to_units.cache_clear()
    try:
        return to_units(name, value)
    except QuantityError as exc:  # any other exception fails the test
        if not str(exc):
            raise AssertionError("a refusal without a message") from exc
        return None


@pytest.mark.parametrize("value", HOSTILE, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("name", ["cpu", "memory", "example.com/gpu"])
def test_hostile_quantities_are_refused_or_bounded_and_quick(name: str, value: str | int | float) -> None:
    start = time.process_time()
    result = _parse(name, value)
    took = time.process_time() - start
    assert took < BUDGET_S, f"{value!r} took {took:.3f}s"
    assert result is None or 0 <= result <= MAX_UNITS


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e999999999", "too large"),
        ("1e400000", "too large"),
        ("1" * 10000, f"at most {MAX_QUANTITY_LENGTH} characters"),
        ("-1", "must not be negative"),
        ("NaN", "invalid quantity"),
        ("1e1.5", "exponent must be an integer"),
    ],
)
def test_refusals_say_why(value: str, message: str) -> None:
    with pytest.raises(QuantityError, match=message):
        to_units("cpu", value)


def test_the_bound_is_int64_in_the_canonical_unit() -> None:
    assert to_units("memory", str(MAX_UNITS)) == MAX_UNITS
    assert to_units("cpu", f"{MAX_UNITS}m") == MAX_UNITS
    assert to_units("cpu", "9223372036854775.807") == MAX_UNITS
    with pytest.raises(QuantityError, match="too large"):
        to_units("memory", str(MAX_UNITS + 1))
    with pytest.raises(QuantityError, match="milli-units"):
        to_units("cpu", "9223372036854775.808")
    with pytest.raises(QuantityError):
        to_units("cpu", str(MAX_UNITS))  # fine as bytes, not as cores


@pytest.mark.parametrize(
    ("name", "value", "units"),
    [
        ("memory", "1Ei", 2**60),
        ("memory", "7Ei", 7 * 2**60),
        ("memory", "1E", 10**18),
        ("memory", "1e18", 10**18),
        ("memory", "1e-999999999", 1),  # below a nano-unit: rounded up, never computed
        ("cpu", "1e-999999999", 1),
        ("cpu", "0e999999999", 0),
        ("cpu", "100m", 100),
        ("cpu", "+1.5", 1500),
        ("memory", ".5Ki", 512),
        ("memory", "5.", 5),
    ],
)
def test_legitimate_extremes_still_parse(name: str, value: str, units: int) -> None:
    assert to_units(name, value) == units


def test_numbers_are_bounded_too() -> None:
    assert parse_quantity(3) == Decimal(3)
    assert parse_quantity(0.5) == Decimal("0.5")
    for bad in (float("nan"), float("inf"), 1e300, 2**70):
        with pytest.raises(QuantityError):
            parse_quantity(bad)


def test_a_resource_list_with_one_hostile_quantity_is_refused() -> None:
    with pytest.raises(QuantityError):
        Resources.parse({"cpu": "2", "memory": "1e400000"})


def group(resources: dict[str, str], reserved: dict[str, str] | None = None) -> NodeGroup:
    return NodeGroup.from_k8s(
        {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "NodeGroup",
            "metadata": {"name": "web"},
            "spec": {
                "minNodes": 0,
                "maxNodes": 3,
                "vm": {"resourceIdentifier": "p", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "x"},
                "template": {"resources": resources, "reserved": reserved or {}},
            },
        }
    )


def hostile(resources: dict[str, str], reserved: dict[str, str] | None = None) -> NodeGroup:
    """A group as a model without quantity bounds accepted it (the model now refuses these itself)."""
    ng = group({"cpu": "2", "memory": "4Gi"})
    ng.spec.template.resources.clear()
    ng.spec.template.resources.update(resources)
    ng.spec.template.reserved.update(reserved or {})
    return ng


def test_a_group_the_model_accepted_with_a_hostile_quantity_is_a_template_error() -> None:
    ng = hostile({"cpu": "1e999999999", "memory": "4Gi"})
    assert (template_problem(ng) or "").startswith(
        "spec.template.resources.cpu: quantity '1e999999999' is too large: at most "
    )
    with pytest.raises(TemplateError, match=r"spec\.template\.resources\.cpu"):
        GroupTemplate.from_nodegroup(ng, size=0)
    reserved = hostile({"cpu": "2", "memory": "4Gi"}, {"memory": "-1"})
    assert "spec.template.reserved.memory" in (template_problem(reserved) or "")
    assert template_problem(group({"cpu": "2", "memory": "4Gi"})) is None


def test_hostile_plan_capacity_is_a_template_error() -> None:
    ng = group({})
    with pytest.raises(TemplateError, match="plan capacity"):
        GroupTemplate.from_nodegroup(ng, size=0, plan_capacity={"cpu": "1e400000", "memory": "4Gi"})
