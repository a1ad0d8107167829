"""The NodeGroup rules exist in the generated schema and the models refuse the same inputs.

The table of cases (``nodegroup_cases.py``) is shared with the integration test that sends each one
to a real API server, so both sides are checked against the same manifests.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tests.unit.api.nodegroup_cases import (
    ACCEPTED,
    IMMUTABLE,
    MUTABLE,
    REFUSED,
    Case,
    Transition,
    patched,
)
from vpsie_autoscaler.api import NodeGroupSpec
from vpsie_autoscaler.api.crdgen import nodegroup_crd
from vpsie_autoscaler.api.nodegroup import (
    CPU_MAX,
    LABEL_KEY_RESERVED,
    LABEL_KEY_SYNTAX,
    MSG_CPU_MAX,
    MSG_MANAGED_IMMUTABLE,
    MSG_ONE_PRICE,
    MSG_PROJECT_IMMUTABLE,
    MSG_RESERVED_LE_RESOURCES,
    MSG_SOURCE_KIND_IMMUTABLE,
    MSG_TAG_SPACES,
    MSG_TAINT_RESERVED,
    MSG_TAINT_UNIQUE,
    RESOURCE_NAME,
    is_template_label_key_allowed,
    update_violations,
)
from vpsie_autoscaler.api.types import (
    LABEL_VALUE_MAX_LENGTH,
    MSG_LABEL_VALUE,
    MSG_QUANTITY_RANGE,
    MSG_QUANTITY_SYNTAX,
    MSG_TAINT_KEY,
    MSG_TAINT_VALUE,
    QUANTITY_MAX_LENGTH,
    RULE_QUANTITY_SYNTAX,
    is_label_value,
    is_qualified_name,
    quantity_value,
)

Schema = dict[str, Any]


def spec_schema() -> Schema:
    schema: Schema = nodegroup_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def at(path: str) -> Schema:
    node = spec_schema()
    for part in filter(None, path.split(".")):
        node = (
            node["items"]
            if part == "[]"
            else node["additionalProperties"]
            if part == "{}"
            else node["properties"][part]
        )
    return node


def rules(path: str) -> dict[str, str]:
    """Message -> rule of the CEL rules at ``path``."""
    return {r["message"]: r["rule"] for r in at(path).get("x-kubernetes-validations", [])}


def walk(node: Schema) -> Iterator[Schema]:
    yield node
    for sub in node.get("properties", {}).values():
        yield from walk(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from walk(node[key])


@pytest.mark.parametrize("case", REFUSED, ids=lambda c: c.id)
def test_the_models_refuse_what_the_api_server_refuses(case: Case) -> None:
    with pytest.raises(ValidationError) as exc:
        NodeGroupSpec.model_validate(patched(case.patch))
    assert case.python_message in str(exc.value)


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: c.id)
def test_the_models_accept_the_edge_cases(case: Case) -> None:
    spec = NodeGroupSpec.model_validate(patched(case.patch))
    assert NodeGroupSpec.model_validate(spec.to_k8s()) == spec


def test_refused_cases_are_distinct_and_numerous() -> None:
    assert len({c.id for c in REFUSED}) == len(REFUSED) >= 40
    assert len({repr(c.patch) for c in REFUSED}) == len(REFUSED)


@pytest.mark.parametrize("change", [*IMMUTABLE, *MUTABLE], ids=lambda t: t.id)
def test_the_source_of_a_group_is_immutable(change: Transition) -> None:
    before, after = NodeGroupSpec.model_validate(change.old), NodeGroupSpec.model_validate(change.new)
    assert update_violations(before, after) == ([change.message] if change.message else [])


def test_every_rule_is_in_the_generated_schema() -> None:
    assert set(rules("template.labels")) == {LABEL_KEY_SYNTAX.message, LABEL_KEY_RESERVED.message}
    assert "format.qualifiedName()" in rules("template.labels")[LABEL_KEY_SYNTAX.message]
    assert "format.labelValue()" in rules("template.labels.{}")[MSG_LABEL_VALUE]
    assert at("template.labels.{}")["maxLength"] == LABEL_VALUE_MAX_LENGTH
    assert set(rules("template.taints")) == {MSG_TAINT_UNIQUE, MSG_TAINT_RESERVED}
    assert "format.qualifiedName()" in rules("template.taints.[].key")[MSG_TAINT_KEY]
    assert "format.labelValue()" in rules("template.taints.[].value")[MSG_TAINT_VALUE]
    assert at("template.taints.[].effect")["enum"] == ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    for field in ("resources", "reserved"):
        assert set(rules(f"template.{field}")) == {RESOURCE_NAME.message, MSG_CPU_MAX}
        assert f"quantity('{CPU_MAX}')" in rules(f"template.{field}")[MSG_CPU_MAX]
        value = at(f"template.{field}.{{}}")
        assert value["maxLength"] == QUANTITY_MAX_LENGTH
        assert rules(f"template.{field}.{{}}")[MSG_QUANTITY_SYNTAX] == RULE_QUANTITY_SYNTAX
        assert "quantity('1Pi')" in rules(f"template.{field}.{{}}")[MSG_QUANTITY_RANGE]
    assert set(rules("template")) == {MSG_RESERVED_LE_RESOURCES, MSG_ONE_PRICE}
    assert rules("template")[MSG_ONE_PRICE] == "!(has(self.hourlyPrice) && has(self.monthlyPrice))"
    tags = at("vm.tags")
    assert (tags["maxItems"], tags["x-kubernetes-list-type"]) == (32, "set")
    assert (tags["items"]["minLength"], tags["items"]["maxLength"]) == (1, 253)
    assert MSG_TAG_SPACES in rules("vm.tags.[]")
    # Transition rules: the source of an existing group is fixed.
    assert rules("vm.projectId")[MSG_PROJECT_IMMUTABLE] == "self == oldSelf"
    assert "oldSelf.clusterIdentifier" in rules("managed")[MSG_MANAGED_IMMUTABLE]
    assert rules("")[MSG_SOURCE_KIND_IMMUTABLE] == "has(self.managed) == has(oldSelf.managed)"


def test_every_string_and_collection_is_bounded() -> None:
    # The CEL cost budget, and a bound on what one object may hold.
    for node in walk(spec_schema()):
        if node.get("type") == "string" and "enum" not in node and "pattern" not in node:
            assert "maxLength" in node, node
        if node.get("type") == "array":
            assert "maxItems" in node, node
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, node


def test_every_new_cel_rule_has_a_refused_case() -> None:
    refused = {c.server for c in REFUSED} | {t.message for t in IMMUTABLE}
    for path in (
        "",
        "managed",
        "vm.projectId",
        "vm.tags.[]",
        "template",
        "template.labels",
        "template.labels.{}",
        "template.taints",
        "template.taints.[].key",
        "template.taints.[].value",
        "template.resources",
        "template.resources.{}",
        "template.reserved",
    ):
        for message in rules(path):
            assert message in refused, f"{path}: no refused case for {message!r}"


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("pool", True),
        ("example.com/pool", True),
        ("a.b-c.d/N_a.m-e", True),
        (f"{'a' * 253}/{'n' * 63}", True),
        ("", False),
        ("/a", False),
        ("a/", False),
        ("a/b/c", False),
        ("-a", False),
        ("a-", False),
        ("a b", False),
        ("a\n", False),
        ("EXAMPLE.com/a", False),
        (f"{'a' * 254}/a", False),
        ("n" * 64, False),
    ],
)
def test_qualified_names_follow_apimachinery(key: str, ok: bool) -> None:
    assert is_qualified_name(key) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("a", True),
        ("a.b_c-d", True),
        ("v" * 63, True),
        ("v" * 64, False),
        ("-a", False),
        ("a.", False),
        ("a b", False),
        ("a,b", False),
        ("a\n", False),
    ],
)
def test_label_values_follow_apimachinery(value: str, ok: bool) -> None:
    assert is_label_value(value) is ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("pool", True),
        ("example.com/a", True),
        ("node.kubernetes.io/pool", True),
        ("kubelet.kubernetes.io/a", True),
        ("x.node.kubernetes.io/a", True),
        ("autoscaler.vpsie.com/nodegroup", False),
        ("autoscaler.vpsie.com.evil/a", True),
        ("kubernetes.io/hostname", False),
        ("beta.kubernetes.io/arch", False),
        ("node.kubernetes.io/instance-type", False),
        ("topology.kubernetes.io/region", False),
        ("failure-domain.beta.kubernetes.io/zone", False),
        ("node-role.kubernetes.io/worker", False),
        ("node-restriction.kubernetes.io/a", False),
        ("k8s.io/a", False),
        ("notkubernetes.io/a", True),
    ],
)
def test_template_label_keys_the_kubelet_would_refuse_or_overwrite(key: str, ok: bool) -> None:
    assert is_template_label_key_allowed(key) is ok


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", "0.5"),
        ("1.5Gi", str(3 * 2**29)),
        ("1e3", "1000"),
        ("1E-3", "0.001"),
        ("+2k", "2000"),
        (".5", "0.5"),
        (7, "7"),
        ("1Pi", str(2**50)),
        ("two", None),
        ("4 Gi", None),
        ("1e1.5", None),
        ("1Ki5", None),
        ("", None),
    ],
)
def test_quantity_values(text: int | str, value: str | None) -> None:
    assert quantity_value(text) == (None if value is None else Decimal(value))
