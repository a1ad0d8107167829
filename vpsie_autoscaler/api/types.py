"""Shared field types for the CRD models: the base model, durations, quantities, int-or-percent,
taints, conditions and object metadata.

Each special type validates in Python exactly what its generated OpenAPI schema validates in the API
server (pattern, bounds, CEL rule), so an object the controller builds in memory is one the server
would accept, and the unit tests of one side cover the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from vpsie_autoscaler.api.durations import DURATION_MAX_LENGTH, DURATION_PATTERN, parse_duration

QUANTITY_PATTERN: Final = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"  # noqa: E501
"""The pattern Kubernetes puts on ``resource.Quantity`` fields (as controller-gen emits it)."""

PERCENT_PATTERN: Final = r"^(100|[1-9]?[0-9])%$"
"""0%..100%, no decimals: the form Karpenter's disruption budgets accept."""

QUALIFIED_NAME_PATTERN: Final = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"  # noqa: E501
"""Label and taint keys: an optional DNS-subdomain prefix and a name (``k8s.io/apimachinery`` rules)."""

QUALIFIED_NAME_MAX_LENGTH: Final = 316  # 253 (prefix) + 1 + 62 (name), as metav1.Condition.type allows
LABEL_KEY_MAX_LENGTH: Final = 317  # 253 (prefix) + "/" + 63 (name): IsQualifiedName's largest
LABEL_VALUE_MAX_LENGTH: Final = 63
DNS_SUBDOMAIN_MAX_LENGTH: Final = 253
NAME_PART_MAX_LENGTH: Final = 63

QUALIFIED_NAME_HELP: Final = (
    "an optional DNS subdomain prefix of at most 253 characters and '/', then a name of at most 63 "
    "characters of letters, digits, '-', '_' and '.' that begins and ends with a letter or digit"
)
MSG_LABEL_VALUE: Final = (
    "label values are empty or at most 63 characters of letters, digits, '-', '_' and '.' that begin "
    "and end with a letter or digit"
)
MSG_TAINT_KEY: Final = f"taint keys are qualified names: {QUALIFIED_NAME_HELP}"
MSG_TAINT_VALUE: Final = (
    "taint values are empty or at most 63 characters of letters, digits, '-', '_' and '.' that begin "
    "and end with a letter or digit"
)
RULE_QUALIFIED_NAME: Final = "!format.qualifiedName().validate(self).hasValue()"
RULE_LABEL_VALUE: Final = "!format.labelValue().validate(self).hasValue()"

_DNS_SUBDOMAIN: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_NAME_PART: Final = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def cel_rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` for a field with CEL rules: ``(rule, message)`` pairs."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


def is_qualified_name(value: str) -> bool:
    """``validation.IsQualifiedName`` of k8s.io/apimachinery (what ``format.qualifiedName()`` checks)."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:  # prefix and name
        prefix, name = parts
        if not prefix or len(prefix) > DNS_SUBDOMAIN_MAX_LENGTH or not _DNS_SUBDOMAIN.fullmatch(prefix):
            return False
    else:
        return False
    return 0 < len(name) <= NAME_PART_MAX_LENGTH and _NAME_PART.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    """``validation.IsValidLabelValue`` (what ``format.labelValue()`` checks)."""
    return value == "" or (len(value) <= LABEL_VALUE_MAX_LENGTH and _NAME_PART.fullmatch(value) is not None)


class _LabelValue:
    """A label value: empty, or at most 63 characters of ``[A-Za-z0-9-_.]`` with alphanumeric ends."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls._validate, core_schema.str_schema())

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "maxLength": LABEL_VALUE_MAX_LENGTH,
            "x-kubernetes-validations": [{"rule": RULE_LABEL_VALUE, "message": MSG_LABEL_VALUE}],
        }

    @staticmethod
    def _validate(value: str) -> str:
        if not is_label_value(value):
            raise ValueError(f"{value!r}: {MSG_LABEL_VALUE}")
        return value


LabelValue = Annotated[str, _LabelValue]


@dataclass(frozen=True)
class KeyRule:
    """A rule every key of a map must pass: CEL on the map (keys have no schema of their own).

    The API server says ``message``; the Python validator says it too, after the offending keys. (A
    ``messageExpression`` naming the keys is over the CRD's CEL cost budget: map keys have no length
    bound the cost estimator could use.)
    """

    cel: str
    """CEL predicate on the key ``k`` (and the map ``self``) that holds for a good key."""
    what: str
    message: str
    check: Callable[[str], bool]

    def rule(self) -> dict[str, str]:
        return {"rule": f"self.all(k, {self.cel})", "message": self.message}

    def error(self, bad: Iterable[str]) -> str:
        return f"{self.what} '" + "', '".join(sorted(bad)) + f"': {self.message}"


@dataclass(frozen=True)
class MapKeys:
    """Marks a ``dict`` field whose keys must pass each :class:`KeyRule` (schema and Python)."""

    rules: tuple[KeyRule, ...]
    cel: tuple[tuple[str, str], ...] = ()
    """More CEL rules on the map, ``(rule, message)``, checked in Python by the model that holds it
    (a ``json_schema_extra`` on the field would replace these rules instead of adding to them)."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out["x-kubernetes-validations"] = [r.rule() for r in self.rules] + [
            {"rule": rule, "message": message} for rule, message in self.cel
        ]
        return out

    def _validate(self, value: dict[str, Any]) -> dict[str, Any]:
        for rule in self.rules:
            bad = [k for k in value if not rule.check(k)]
            if bad:
                raise ValueError(rule.error(bad))
        return value


REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
REASON_MAX_LENGTH: Final = 1024
MESSAGE_MAX_LENGTH: Final = 32768

_QUANTITY: Final = re.compile(QUANTITY_PATTERN)
_PERCENT: Final = re.compile(PERCENT_PATTERN)


class KubeModel(BaseModel):
    """Base of every CRD model: camelCase on the wire, snake_case in Python.

    Unknown fields are ignored rather than refused: the API server prunes what the schema does not
    know, and a newer object read by an older controller must still parse.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_k8s(self) -> dict[str, Any]:
        """The JSON-ready dict, camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@dataclass(frozen=True)
class DurationBounds:
    """Marks a ``str`` field as a Go duration within ``[minimum, maximum]`` (inclusive).

    Schema: the duration pattern, a max length (so CEL cost is bounded) and a CEL rule with the
    bounds; Python: :func:`parse_duration` plus the same bounds.
    """

    minimum: str
    maximum: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._validate, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)
        out.update(
            pattern=DURATION_PATTERN,
            maxLength=DURATION_MAX_LENGTH,
        )
        out["x-kubernetes-validations"] = [
            {
                "rule": f"duration(self) >= duration('{self.minimum}') && "
                f"duration(self) <= duration('{self.maximum}')",
                "message": self.message,
            }
        ]
        return out

    @property
    def message(self) -> str:
        return f"must be a duration between {self.minimum} and {self.maximum}"

    def _validate(self, value: str) -> str:
        parsed = parse_duration(value)
        if not parse_duration(self.minimum) <= parsed <= parse_duration(self.maximum):
            raise ValueError(f"{value!r} {self.message}")
        return value


QUANTITY_MAX_LENGTH: Final = 32
"""Longest quantity string: far beyond any real one ("1125899906842624", "0.5Gi"), and it bounds the
cost of the CEL ``quantity()`` rules."""
QUANTITY_MAX: Final = "1Pi"
"""Upper bound of every template quantity: 2^50. Summed over MAX_NODES_LIMIT (1000) nodes it stays
below 2^63, so totals fit the int64 a Kubernetes quantity (and any Go consumer) holds."""
_QTY: Final = "quantity(string(self))"


def small_exponent(expr: str) -> str:
    """CEL: the quantity string ``expr`` has no decimal exponent of three digits or more.

    Checked *before* ``isQuantity``/``quantity()`` (``&&`` stops at false): the apiserver parses
    ``1e999999999`` into a number with a billion digits, and a stored value like that would make every
    write to the object spend its whole timeout in validation. Two digits reach 1e99, far beyond any
    bound below."""
    return f"!{expr}.matches('[eE][+-]?[0-9]{{3,}}$')"


_EXP_OK: Final = small_exponent("string(self)")
RULE_QUANTITY_SYNTAX: Final = f"{_EXP_OK} && isQuantity(string(self))"
MSG_QUANTITY_SYNTAX: Final = "must be a quantity such as 2, 500m, 1.5Gi or 4Gi"
RULE_QUANTITY_RANGE: Final = (
    f"!({_EXP_OK} && isQuantity(string(self))) || ({_QTY}.compareTo(quantity('0')) >= 0 && "
    f"{_QTY}.compareTo(quantity('{QUANTITY_MAX}')) <= 0)"
)
MSG_QUANTITY_RANGE: Final = f"must be a quantity between 0 and {QUANTITY_MAX}"

_QTY_SPLIT: Final = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)")
_QTY_EXPONENT: Final = re.compile(r"[eE]([+-]?[0-9]+)")
QUANTITY_SUFFIXES: Final[dict[str, Decimal]] = {
    # The suffixes of resource.Quantity (k8s.io/apimachinery): decimal SI, then binary.
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QTY_MAX_EXPONENT: Final = 64  # larger exponents are far out of range anyway: refuse before computing


def quantity_value(value: int | str) -> Decimal | None:
    """The value of a Kubernetes quantity (``resource.ParseQuantity``), or None if it is not one."""
    if isinstance(value, int):
        return Decimal(value)
    split = _QTY_SPLIT.fullmatch(value)
    if split is None:
        return None
    number, suffix = split.groups()
    try:
        if suffix in QUANTITY_SUFFIXES:
            return Decimal(number) * QUANTITY_SUFFIXES[suffix]
        exponent = _QTY_EXPONENT.fullmatch(suffix)
        if exponent is None:
            return None
        if len(exponent.group(1).lstrip("+-")) >= 3:
            return None
        power = int(exponent.group(1))
        if abs(power) > _QTY_MAX_EXPONENT:
            return Decimal(number) * Decimal(f"1e{_QTY_MAX_EXPONENT if power > 0 else -_QTY_MAX_EXPONENT}")
        return Decimal(number) * Decimal(f"1e{power}")
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        return None


class _IntOrString:
    """An ``int-or-string`` field (Kubernetes' ``intstr.IntOrString``): strict int or any string, then
    the subclass's ``_validate``."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls._validate,
            core_schema.union_schema([core_schema.int_schema(strict=True), core_schema.str_schema()]),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            **cls.schema_extra(),
        }

    @classmethod
    def schema_extra(cls) -> JsonSchemaValue:
        """The subclass's own schema keywords (length, CEL rules)."""
        return {}

    @staticmethod
    def _validate(value: int | str) -> int | str:
        return value


class _Quantity(_IntOrString):
    """A Kubernetes quantity (``"2"``, ``"500m"``, ``"4Gi"``, or a bare integer) in ``[0, 1Pi]``."""

    @classmethod
    def schema_extra(cls) -> JsonSchemaValue:
        return {
            "maxLength": QUANTITY_MAX_LENGTH,
            "x-kubernetes-validations": [
                {"rule": RULE_QUANTITY_SYNTAX, "message": MSG_QUANTITY_SYNTAX},
                {"rule": RULE_QUANTITY_RANGE, "message": MSG_QUANTITY_RANGE},
            ],
        }

    @staticmethod
    def _validate(value: int | str) -> int | str:
        if isinstance(value, str) and len(value) > QUANTITY_MAX_LENGTH:
            raise ValueError(f"quantity {value!r} is longer than {QUANTITY_MAX_LENGTH} characters")
        parsed = quantity_value(value)
        if parsed is None:
            raise ValueError(f"{value!r} {MSG_QUANTITY_SYNTAX}")
        if not 0 <= parsed <= quantity_value(QUANTITY_MAX):  # type: ignore[operator]
            raise ValueError(f"{value!r} {MSG_QUANTITY_RANGE}")
        return value


Quantity = Annotated[int | str, _Quantity]

INT_OR_PERCENT_RULE: Final = "type(self) == string ? self.matches('^(100|[1-9]?[0-9])%$') : self >= 0"
INT_OR_PERCENT_MESSAGE: Final = "must be a non-negative integer or a percentage such as '10%'"


class _IntOrPercent(_IntOrString):
    """A node count (``3``) or a percentage of the group (``"10%"``), like Karpenter's budgets."""

    @classmethod
    def schema_extra(cls) -> JsonSchemaValue:
        rule = {"rule": INT_OR_PERCENT_RULE, "message": INT_OR_PERCENT_MESSAGE}
        return {"x-kubernetes-validations": [rule]}

    @staticmethod
    def _validate(value: int | str) -> int | str:
        if isinstance(value, str) and not _PERCENT.match(value):
            raise ValueError(f"{value!r} {INT_OR_PERCENT_MESSAGE}")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"{value!r} {INT_OR_PERCENT_MESSAGE}")
        return value


IntOrPercent = Annotated[int | str, _IntOrPercent]

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Taint(KubeModel):
    """A taint the nodes carry (core/v1 Taint without timeAdded)."""

    key: str = Field(
        min_length=1,
        max_length=LABEL_KEY_MAX_LENGTH,
        json_schema_extra=cel_rules((RULE_QUALIFIED_NAME, MSG_TAINT_KEY)),
        description="The taint key (a qualified name such as dedicated or example.com/gpu), matched by "
        "the key of a pod's toleration.",
    )
    value: str | None = Field(
        default=None,
        max_length=LABEL_VALUE_MAX_LENGTH,
        json_schema_extra=cel_rules((RULE_LABEL_VALUE, MSG_TAINT_VALUE)),
        description="The taint value, matched by a toleration with operator Equal; may be omitted.",
    )
    effect: TaintEffect = Field(
        description="What the taint does to pods that do not tolerate it (core/v1 semantics): NoSchedule "
        "(not scheduled there), PreferNoSchedule (avoided) or NoExecute (not scheduled, and evicted if "
        "running). Scale-up fits a pod to the group only if it tolerates every NoSchedule and NoExecute "
        "taint."
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not is_qualified_name(value):
            raise ValueError(MSG_TAINT_KEY)
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | None) -> str | None:
        if value is not None and not is_label_value(value):
            raise ValueError(MSG_TAINT_VALUE)
        return value


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KubeModel):
    """A status condition in the standard metav1.Condition shape (works with kubectl wait --for=condition)."""

    type: str = Field(
        max_length=QUALIFIED_NAME_MAX_LENGTH,
        pattern=QUALIFIED_NAME_PATTERN,
        description="Type of the condition in CamelCase (Ready, Backoff, ...): unique within the list.",
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation the condition was computed from: a condition with an older "
        "generation than the object's is out of date.",
    )
    last_transition_time: datetime = Field(
        description="When the status last changed (not when the condition was last written): how long it "
        "has held."
    )
    reason: str = Field(
        min_length=1,
        max_length=REASON_MAX_LENGTH,
        pattern=REASON_PATTERN,
        description="Why, in one CamelCase word a program can match (the same word as the Event reason "
        "where there is one).",
    )
    message: str = Field(
        default="",
        max_length=MESSAGE_MAX_LENGTH,
        description="Why, in words for a human, with the numbers; may be empty.",
    )


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> bool:
    """Set a condition in place with ``meta.SetStatusCondition`` semantics; return whether it changed.

    ``lastTransitionTime`` moves only when the status flips, so "since when" stays truthful and a
    steady state causes no writes (level-triggered reconcilers call this every loop).
    """
    for i, cond in enumerate(conditions):
        if cond.type != type_:
            continue
        changed_status = cond.status != status
        updated = cond.model_copy(
            update={
                "status": status,
                "reason": reason,
                "message": message,
                "observed_generation": observed_generation,
                "last_transition_time": now if changed_status else cond.last_transition_time,
            }
        )
        if updated == cond:
            return False
        conditions[i] = updated
        return True
    conditions.append(
        Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            observed_generation=observed_generation,
            last_transition_time=now,
        )
    )
    return True


CONDITIONS_FIELD_EXTRA: Final[dict[str, Any]] = {
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
}
"""Conditions are a map keyed by type, so server-side apply merges them per type."""


class ObjectMeta(KubeModel):
    """The part of ``metav1.ObjectMeta`` the controllers read. Not part of the generated schema."""

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
