"""Quantities parse exactly like Kubernetes and round up; resource arithmetic is what packing needs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from vpsie_autoscaler.scaling.resources import (
    QuantityError,
    Resources,
    format_units,
    parse_quantity,
    to_units,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("100m", Decimal("0.1")),
        ("1.5", Decimal("1.5")),
        ("1Ki", Decimal(1024)),
        ("1Mi", Decimal(2**20)),
        ("2Gi", Decimal(2 * 2**30)),
        ("1k", Decimal(1000)),
        ("1M", Decimal(10**6)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("1E-3", Decimal("0.001")),
        ("500u", Decimal("0.0005")),
        ("10n", Decimal("1e-8")),
        (".5", Decimal("0.5")),
        ("+2", Decimal(2)),
        (3, Decimal(3)),
    ],
)
def test_parse_quantity(text: str | int, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "1Gb", "1 Gi", "--1", "1ii", "Gi"])
def test_invalid_quantities_are_refused_clearly(text: str) -> None:
    with pytest.raises(QuantityError, match="invalid quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("name", "text", "units"),
    [
        ("cpu", "100m", 100),
        ("cpu", "2", 2000),
        ("cpu", "0.0001", 1),  # rounds up: a request never shrinks to nothing
        ("cpu", "1500u", 2),
        ("memory", "1Gi", 2**30),
        ("memory", "128974848", 128974848),
        ("memory", "129e6", 129000000),
        ("memory", "100m", 1),
        ("pods", "110", 110),
        ("nvidia.com/gpu", "1", 1),
    ],
)
def test_to_units_rounds_up_in_canonical_units(name: str, text: str, units: int) -> None:
    assert to_units(name, text) == units


def test_resources_arithmetic_and_fit() -> None:
    node = Resources.parse({"cpu": "2", "memory": "4Gi", "pods": "110"})
    pod = Resources.parse({"cpu": "500m", "memory": "1Gi", "pods": 1})
    assert node.count_fitting(pod) == 4
    assert (node - pod.scaled(4))["cpu"] == 0
    assert node.fits(pod.scaled(4))
    assert not node.fits(pod.scaled(5))
    assert node.shortage(pod.scaled(5)) == "cpu"
    gpu = Resources.parse({"nvidia.com/gpu": "1"})
    assert node.shortage(gpu) == "nvidia.com/gpu"  # a resource the node lacks is zero, not unlimited
    assert node.count_fitting(gpu) == 0
    assert (node + pod) - pod == node
    assert Resources({"cpu": 0}) == Resources()
    assert (pod - node).clamp_zero() == Resources()
    assert Resources().count_fitting(Resources()) == -1


def test_format_units_for_messages() -> None:
    assert format_units("cpu", 1500) == "1500m"
    assert format_units("cpu", 2000) == "2"
    assert format_units("memory", 2**30) == "1Gi"
    assert format_units("memory", 3 * 2**29) == "1.5Gi"
    assert format_units("pods", 7) == "7"
    assert "cpu=1500m" in repr(Resources({"cpu": 1500}))
