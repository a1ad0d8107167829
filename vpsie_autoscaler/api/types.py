"""Shared field types for the CRD models: the base model, durations, quantities, int-or-percent,
taints, conditions and object metadata.

Each special type validates in Python exactly what its generated OpenAPI schema validates in the API
server (pattern, bounds, CEL rule), so an object the controller builds in memory is one the server
would accept, and the unit tests of one side cover the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
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
LABEL_VALUE_MAX_LENGTH: Final = 63
LabelValue = Annotated[str, Field(max_length=LABEL_VALUE_MAX_LENGTH)]
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


class _Quantity:
    """A Kubernetes quantity (``"2"``, ``"500m"``, ``"4Gi"``, or a bare integer)."""

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
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }

    @staticmethod
    def _validate(value: int | str) -> int | str:
        if isinstance(value, str) and not _QUANTITY.match(value):
            raise ValueError(f"invalid quantity {value!r}: expected e.g. '2', '500m', '4Gi'")
        if isinstance(value, int) and value < 0:
            raise ValueError(f"quantity {value} must not be negative")
        return value


Quantity = Annotated[int | str, _Quantity]

INT_OR_PERCENT_RULE: Final = "type(self) == string ? self.matches('^(100|[1-9]?[0-9])%$') : self >= 0"
INT_OR_PERCENT_MESSAGE: Final = "must be a non-negative integer or a percentage such as '10%'"


class _IntOrPercent:
    """A node count (``3``) or a percentage of the group (``"10%"``), like Karpenter's budgets."""

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
            "x-kubernetes-validations": [{"rule": INT_OR_PERCENT_RULE, "message": INT_OR_PERCENT_MESSAGE}],
        }

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

    key: str = Field(min_length=1, max_length=QUALIFIED_NAME_MAX_LENGTH, pattern=QUALIFIED_NAME_PATTERN)
    value: str | None = Field(default=None, max_length=LABEL_VALUE_MAX_LENGTH)
    effect: TaintEffect


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(KubeModel):
    """A status condition in the standard metav1.Condition shape (works with kubectl wait --for=condition)."""

    type: str = Field(max_length=QUALIFIED_NAME_MAX_LENGTH, pattern=QUALIFIED_NAME_PATTERN)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: datetime
    reason: str = Field(min_length=1, max_length=REASON_MAX_LENGTH, pattern=REASON_PATTERN)
    message: str = Field(default="", max_length=MESSAGE_MAX_LENGTH)


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
