"""Kubernetes quantities and resource lists as exact integers.

Upstream: ``k8s.io/apimachinery/pkg/api/resource.Quantity``. Quantities are parsed exactly (decimal
arithmetic, no floats) and rounded *up* to integers in a canonical unit per resource: milli-units for
``cpu`` (``"100m"`` → 100), plain units for everything else (bytes for memory and storage, counts for
``pods`` and extended resources). Rounding up is the scheduler's conservative direction: a request of
0.5 bytes still needs a byte.

:class:`Resources` is an immutable mapping with the few operations the planners need (add, subtract,
"does it fit", "which resource is short"). Missing names mean zero.
"""

from __future__ import annotations

import re
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from decimal import ROUND_CEILING, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from functools import lru_cache
from typing import Final

from vpsie_autoscaler.api.types import QUANTITY_PATTERN, QUANTITY_SUFFIXES

CPU: Final = "cpu"
MEMORY: Final = "memory"
EPHEMERAL_STORAGE: Final = "ephemeral-storage"
PODS: Final = "pods"

MILLI_RESOURCES: Final = frozenset({CPU})
"""Resources counted in milli-units (Kubernetes expresses CPU as cores with millicore precision)."""

_FULL: Final = re.compile(QUANTITY_PATTERN)
_SPLIT: Final = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")
_EXPONENT: Final = re.compile(r"[eE][+-]?[0-9]+")
_QUANTITY_CACHE_SIZE: Final = 4096  # distinct quantity strings in a cluster are few; parsing is hot

MAX_QUANTITY_LENGTH: Final = 64
"""Longest quantity string accepted. Kubernetes keeps at most 18 significant digits plus a suffix or
exponent; 64 characters leave room for leading zeros and a long fraction, and keep the regular
expression and ``Decimal`` work on hostile input (``"1" * 10000``) negligible."""
MAX_UNITS: Final = 2**63 - 1
"""Largest magnitude in a resource's canonical unit (milli-units for cpu): Kubernetes keeps quantities
as int64 (``Quantity.MilliValue`` for cpu, ``Value`` otherwise). Checked on the Decimal's exponent
*before* any integer conversion, which is quadratic in the number of digits (``"1e400000"`` would
cost seconds of CPU on the event loop)."""
_MAX_ADJUSTED: Final = len(str(MAX_UNITS)) - 1  # Decimal.adjusted() of MAX_UNITS (18)
_MIN_ADJUSTED: Final = -30  # smaller magnitudes (below a nano-unit) are rounded up, not computed
_CONTEXT: Final = Context(prec=60, rounding=ROUND_CEILING, traps=[InvalidOperation, Overflow, DivisionByZero])
"""Exact for every accepted quantity (≤ 64 characters, magnitude ≤ 2**63 milli-units)."""


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity, or one out of the bounds the autoscaler accepts."""


def _bounded(value: object, quantity: Decimal, *, scale: int = 0) -> Decimal:
    """``quantity`` unchanged if ``quantity * 10**scale`` is within :data:`MAX_UNITS`; cheap: only the
    exponent is looked at before the one exact comparison."""
    if not quantity.is_finite():
        raise QuantityError(f"invalid quantity {value!r}: not a finite number")
    if quantity.is_zero():
        return quantity
    adjusted = quantity.adjusted() + scale
    if adjusted > _MAX_ADJUSTED or (
        adjusted == _MAX_ADJUSTED and abs(quantity).scaleb(scale, _CONTEXT) > MAX_UNITS
    ):
        raise QuantityError(
            f"quantity {value!r} is too large: at most {MAX_UNITS} "
            + ("milli-units" if scale else "units")
            + " (Kubernetes keeps quantities as int64)"
        )
    return quantity


@lru_cache(maxsize=_QUANTITY_CACHE_SIZE)
def parse_quantity(value: str | int | float) -> Decimal:
    """Parse ``"100m"``, ``"1Gi"``, ``"1e3"``, ``"2"`` or a number into an exact Decimal.

    Bounded work whatever the input: strings longer than :data:`MAX_QUANTITY_LENGTH` and magnitudes
    beyond :data:`MAX_UNITS` raise :class:`QuantityError` before any arithmetic on them. Magnitudes
    below a nano-unit keep their sign and become ``1e-30`` (they round up to one unit anyway).
    """
    if isinstance(value, bool):
        raise QuantityError(f"invalid quantity {value!r}")
    if isinstance(value, int):
        if abs(value) > MAX_UNITS:
            raise QuantityError(f"quantity {value} is too large: at most {MAX_UNITS}")
        return Decimal(value)
    if isinstance(value, float):
        return _bounded(value, Decimal(repr(value)))
    if not isinstance(value, str):
        raise QuantityError(f"invalid quantity {value!r}: not a string or a number")
    if len(value) > MAX_QUANTITY_LENGTH:
        raise QuantityError(
            f"invalid quantity {value[:16]!r}... ({len(value)} characters): "
            f"at most {MAX_QUANTITY_LENGTH} characters"
        )
    text = value.strip()
    if not _FULL.match(text):
        raise QuantityError(f"invalid quantity {value!r}: expected e.g. '500m', '2', '4Gi', '1e3'")
    match = _SPLIT.match(text)
    if match is None:  # pragma: no cover - the full pattern guarantees the split
        raise QuantityError(f"invalid quantity {value!r}")
    number, suffix = match.groups()
    base = Decimal(number)  # at most 64 digits: cheap
    if suffix in QUANTITY_SUFFIXES:  # before the exponent: "E" alone is exa, "Ei" exbi
        factor_exponent, factor = 0, QUANTITY_SUFFIXES[suffix]
    else:  # "e3", "E-2": the pattern allows a fractional exponent, Kubernetes does not
        if not _EXPONENT.fullmatch(suffix):
            raise QuantityError(f"invalid quantity {value!r}: the exponent must be an integer")
        factor_exponent, factor = int(suffix[1:]), Decimal(1)  # at most 63 digits: cheap
    if base.is_zero():
        return Decimal(0)
    adjusted = base.adjusted() + factor_exponent + factor.adjusted()
    if adjusted > _MAX_ADJUSTED + 1:
        raise QuantityError(
            f"quantity {value!r} is too large: at most {MAX_UNITS} (Kubernetes keeps quantities as int64)"
        )
    if adjusted < _MIN_ADJUSTED:
        return Decimal(1).scaleb(_MIN_ADJUSTED, _CONTEXT).copy_sign(base)
    return _bounded(value, _CONTEXT.multiply(base.scaleb(factor_exponent, _CONTEXT), factor))


@lru_cache(maxsize=_QUANTITY_CACHE_SIZE)
def to_units(name: str, value: str | int | float) -> int:
    """The quantity of resource ``name`` in its canonical integer unit (milli for cpu), rounded up.

    Resource lists are never negative (Kubernetes validates requests, limits, capacity and
    allocatable the same way); the result is at most :data:`MAX_UNITS`.
    """
    quantity = parse_quantity(value)
    if quantity < 0:
        raise QuantityError(f"{name}: quantity {value!r} must not be negative")
    scale = 3 if name in MILLI_RESOURCES else 0
    quantity = _bounded(value, quantity, scale=scale)
    return int(quantity.scaleb(scale, _CONTEXT).to_integral_value(rounding=ROUND_CEILING))


def format_units(name: str, units: int) -> str:
    """Human form for messages: ``1500m`` cpu, ``2Gi``/``1.5Gi`` memory, plain counts otherwise."""
    if name in MILLI_RESOURCES:
        return f"{units // 1000}" if units % 1000 == 0 else f"{units}m"
    if name in (MEMORY, EPHEMERAL_STORAGE) or name.startswith("hugepages-"):
        for suffix, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
            if units >= size:
                scaled = units / size
                return f"{scaled:.0f}{suffix}" if units % size == 0 else f"{scaled:.1f}{suffix}"
    return str(units)


class Resources(Mapping[str, int]):
    """An immutable resource list in canonical integer units; absent names are zero."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, int] | Iterable[tuple[str, int]] = ()) -> None:
        data = dict(items)
        self._items: dict[str, int] = {k: v for k, v in data.items() if v != 0}

    @classmethod
    def parse(cls, raw: Mapping[str, str | int | float] | None) -> Resources:
        """From a Kubernetes resource list (``{"cpu": "500m", "memory": "1Gi"}``)."""
        if not raw:
            return EMPTY
        return cls({name: to_units(name, value) for name, value in raw.items()})

    def __getitem__(self, name: str) -> int:
        return self._items.get(name, 0)

    def get(self, name: str, default: int | None = 0) -> int:  # type: ignore[override]
        return self._items.get(name, 0 if default is None else default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    # Fast paths: the Mapping mixins go through __getitem__ per key, too slow for the planners.
    def items(self) -> ItemsView[str, int]:
        return self._items.items()

    def keys(self) -> KeysView[str]:
        return self._items.keys()

    def values(self) -> ValuesView[int]:
        return self._items.values()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Resources):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == {k: v for k, v in other.items() if v != 0}
        return NotImplemented

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={format_units(k, v)}" for k, v in sorted(self._items.items()))
        return f"Resources({inner})"

    def __add__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._items)
        for name, value in other.items():
            out[name] = out.get(name, 0) + value
        return Resources(out)

    def __sub__(self, other: Mapping[str, int]) -> Resources:
        out = dict(self._items)
        for name, value in other.items():
            out[name] = out.get(name, 0) - value
        return Resources(out)

    def scaled(self, factor: int) -> Resources:
        """Every quantity times ``factor`` (``n`` identical pods)."""
        return Resources({k: v * factor for k, v in self._items.items()})

    def clamp_zero(self) -> Resources:
        """Negative quantities (overcommitted nodes) become zero."""
        return Resources({k: v for k, v in self._items.items() if v > 0})

    def shortage(self, request: Mapping[str, int]) -> str | None:
        """The first resource (in ``request`` order) of which ``request`` needs more than this has."""
        items = self._items
        for name, value in request.items():
            if value > 0 and value > items.get(name, 0):
                return name
        return None

    def fits(self, request: Mapping[str, int]) -> bool:
        """Whether ``request`` fits in this (free) capacity."""
        return self.shortage(request) is None

    def count_fitting(self, request: Mapping[str, int]) -> int:
        """How many copies of ``request`` fit (``-1`` when the request is empty: unbounded)."""
        best = -1
        items = self._items
        for name, value in request.items():
            if value <= 0:
                continue
            n = items.get(name, 0) // value
            if best < 0 or n < best:
                best = n
                if best == 0:
                    return 0
        return best

    def as_dict(self) -> dict[str, int]:
        return dict(self._items)


EMPTY: Final = Resources()
