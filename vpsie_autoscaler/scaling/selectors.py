"""Label selectors, node selector terms, taints and tolerations, with upstream matching semantics.

Upstream: ``k8s.io/apimachinery/pkg/labels`` (label selectors), ``k8s.io/component-helpers/scheduling/
corev1/nodeaffinity`` (node selector terms: terms ORed, expressions ANDed, ``Gt``/``Lt`` on integers)
and ``k8s.io/api/core/v1/toleration.go`` (``ToleratesTaint``). Parsed once from raw JSON into frozen,
hashable values so pods with identical requirements compare equal (equivalence groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

IN: Final = "In"
NOT_IN: Final = "NotIn"
EXISTS: Final = "Exists"
DOES_NOT_EXIST: Final = "DoesNotExist"
GT: Final = "Gt"
LT: Final = "Lt"
EQUAL: Final = "Equal"

NO_SCHEDULE: Final = "NoSchedule"
PREFER_NO_SCHEDULE: Final = "PreferNoSchedule"
NO_EXECUTE: Final = "NoExecute"
BLOCKING_EFFECTS: Final = frozenset({NO_SCHEDULE, NO_EXECUTE})
"""Effects that keep a pod off a node; ``PreferNoSchedule`` is only a preference."""


class SelectorError(ValueError):
    """A selector with an unknown operator or malformed values."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``key op values`` expression (label selector or node selector)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def from_k8s(cls, raw: Mapping[str, Any]) -> Requirement:
        op = raw.get("operator", "")
        if op not in (IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GT, LT):
            raise SelectorError(f"unknown selector operator {op!r} for key {raw.get('key')!r}")
        return cls(str(raw.get("key", "")), op, tuple(sorted(str(v) for v in raw.get("values") or ())))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if op == IN:
            return value is not None and value in self.values
        if op == NOT_IN:
            return value is None or value not in self.values
        # Gt / Lt: exactly one integer value; a non-integer label does not match (upstream).
        if value is None or len(self.values) != 1:
            return False
        try:
            left, right = int(value), int(self.values[0])
        except ValueError:
            return False
        return left > right if op == GT else left < right


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """``metav1.LabelSelector``: matchLabels and matchExpressions, ANDed. Empty matches everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    @classmethod
    def from_k8s(cls, raw: Mapping[str, Any] | None) -> LabelSelector:
        raw = raw or {}
        return cls(
            tuple(sorted((str(k), str(v)) for k, v in (raw.get("matchLabels") or {}).items())),
            tuple(Requirement.from_k8s(e) for e in raw.get("matchExpressions") or ()),
        )

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        return all(r.matches(labels) for r in self.expressions)

    def keys(self) -> frozenset[str]:
        """Label keys this selector looks at (to know which pod labels matter for grouping)."""
        return frozenset(k for k, _ in self.match_labels) | frozenset(r.key for r in self.expressions)


@dataclass(frozen=True, slots=True)
class NodeSelectorTerm:
    """One term of required node affinity: label expressions and ``metadata.name`` field expressions."""

    expressions: tuple[Requirement, ...] = ()
    fields: tuple[Requirement, ...] = ()

    @classmethod
    def from_k8s(cls, raw: Mapping[str, Any]) -> NodeSelectorTerm:
        return cls(
            tuple(Requirement.from_k8s(e) for e in raw.get("matchExpressions") or ()),
            tuple(Requirement.from_k8s(e) for e in raw.get("matchFields") or ()),
        )

    def matches(self, labels: Mapping[str, str], node_name: str) -> bool:
        # An empty term matches no node (upstream: "a null or empty term matches no objects").
        if not self.expressions and not self.fields:
            return False
        if not all(r.matches(labels) for r in self.expressions):
            return False
        fields = {"metadata.name": node_name} if node_name else {}
        return all(r.matches(fields) for r in self.fields)


def node_affinity_matches(
    terms: Sequence[NodeSelectorTerm], labels: Mapping[str, str], node_name: str
) -> bool:
    """Required node affinity: no terms means no constraint; otherwise any term must match."""
    return not terms or any(t.matches(labels, node_name) for t in terms)


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint."""

    key: str
    value: str = ""
    effect: str = NO_SCHEDULE

    @classmethod
    def from_k8s(cls, raw: Mapping[str, Any]) -> Taint:
        return cls(str(raw.get("key", "")), str(raw.get("value") or ""), str(raw.get("effect", "")))

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass(frozen=True, slots=True)
class Toleration:
    """A pod toleration (``tolerationSeconds`` is irrelevant to placement and ignored)."""

    key: str = ""
    operator: str = EQUAL
    value: str = ""
    effect: str = ""

    @classmethod
    def from_k8s(cls, raw: Mapping[str, Any]) -> Toleration:
        return cls(
            str(raw.get("key") or ""),
            str(raw.get("operator") or EQUAL),
            str(raw.get("value") or ""),
            str(raw.get("effect") or ""),
        )

    def tolerates(self, taint: Taint) -> bool:
        """``Toleration.ToleratesTaint``: effect (empty = all), key (empty + Exists = all), value."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == EXISTS:
            return True
        # Equal (the default): an empty key with Equal only matches an empty-key taint.
        return self.key == taint.key and self.value == taint.value


def untolerated_taint(taints: Sequence[Taint], tolerations: Sequence[Toleration]) -> Taint | None:
    """The first NoSchedule/NoExecute taint no toleration tolerates, if any."""
    for taint in taints:
        if taint.effect not in BLOCKING_EFFECTS:
            continue
        if not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None
