"""The generated CRDs are valid structural schemas whose defaults match the models'."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from vpsie_autoscaler.api import NodeGroupSpec, VPSieNodeSpec
from vpsie_autoscaler.api.crdgen import all_crds, crds_yaml, nodegroup_crd, vpsienode_crd
from vpsie_autoscaler.cli import main

Schema = dict[str, Any]


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def root(crd: dict[str, Any]) -> Schema:
    schema: Schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(value: Any, schema: Schema) -> Any:
    """The API server's structural defaulting, for objects and maps (enough for our schemas)."""
    if not isinstance(value, dict):
        return value
    out = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = copy.deepcopy(sub["default"])
        if name in out:
            out[name] = apply_defaults(out[name], sub)
    return out


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_crd_is_a_valid_apiextensions_object(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_schema_is_structural(crd: dict[str, Any]) -> None:
    for path, node in walk(root(crd)):
        assert "$ref" not in node, path
        assert "nullable" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
        else:
            assert "anyOf" not in node, path
            assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("type") == "array":
            assert "items" in node, path
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"], f"{path}: CEL rule without a message"


def properties(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every named field under ``schema`` (what ``kubectl explain`` lists), with its dotted path."""
    for name, sub in schema.get("properties", {}).items():
        yield f"{path}.{name}", sub
        yield from properties(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from properties(schema[key], path)


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_every_field_has_a_description(crd: dict[str, Any]) -> None:
    # `kubectl explain` is the operator's reference: a field without a description shows a blank. The
    # root `metadata` is the exception the API server imposes (a structural schema may not describe
    # it); it serves ObjectMeta's description instead.
    missing = [
        path for path, node in properties(root(crd)) if path != ".metadata" and not node.get("description")
    ]
    assert not missing, f"fields without a description: {missing}"
    assert root(crd)["description"]


def test_nodegroup_crd_names_columns_and_rules() -> None:
    crd = nodegroup_crd()
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["ng"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["MIN", "MAX", "DESIRED", "CURRENT", "READY", "STATUS", "AGE"]
    assert root(crd)["x-kubernetes-validations"][0]["rule"] == "self.metadata.name.size() <= 63"
    spec = root(crd)["properties"]["spec"]
    rules = {r["rule"] for r in spec["x-kubernetes-validations"]}
    assert "self.minNodes <= self.maxNodes" in rules
    assert "has(self.managed) != has(self.vm)" in rules
    taint_effect = spec["properties"]["template"]["properties"]["taints"]["items"]["properties"]["effect"]
    assert taint_effect["enum"] == ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    budget = spec["properties"]["scaleDown"]["properties"]["disruptionBudget"]
    assert budget["x-kubernetes-int-or-string"] is True
    threshold = spec["properties"]["scaleDown"]["properties"]["utilizationThreshold"]
    assert (threshold["minimum"], threshold["maximum"]) == (0, 1)


def test_vpsienode_crd_names_columns_and_phase_enum() -> None:
    crd = vpsienode_crd()
    assert crd["spec"]["names"]["shortNames"] == ["vn"]
    version = crd["spec"]["versions"][0]
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["GROUP", "PHASE", "PODS LEFT", "PLAN", "NODE", "IP", "AGE"]
    status = root(crd)["properties"]["status"]["properties"]
    assert status["podsRemaining"]["type"] == "integer"
    assert status["podsRemaining"]["minimum"] == 0
    assert status["phase"]["enum"] == [
        "Pending",
        "Provisioning",
        "Joining",
        "Ready",
        "Draining",
        "Deleting",
        "Failed",
    ]
    spec_rules = {r["rule"] for r in root(crd)["properties"]["spec"]["x-kubernetes-validations"]}
    assert "self == oldSelf" in spec_rules


def test_schema_defaults_equal_model_defaults() -> None:
    # What the API server stores for a minimal object must parse to the same values the controller
    # would compute for it, or a full update would silently change the user's object.
    minimal = {
        "minNodes": 0,
        "maxNodes": 3,
        "vm": {"resourceIdentifier": "p", "osIdentifier": "o", "dcIdentifier": "d", "projectId": "x"},
    }
    spec_schema = root(nodegroup_crd())["properties"]["spec"]
    server_side = apply_defaults(minimal, spec_schema)
    assert "enabled" in server_side["scaleDown"]  # nested defaults do apply under a defaulted {}
    assert NodeGroupSpec.model_validate(server_side) == NodeGroupSpec.model_validate(minimal)
    written = NodeGroupSpec.model_validate(minimal).to_k8s()
    assert apply_defaults(written, spec_schema) == written  # what we write is never re-defaulted

    vn = {"nodeGroup": "g", "hostname": "g-1", "vm": minimal["vm"]}
    vn_schema = root(vpsienode_crd())["properties"]["spec"]
    assert VPSieNodeSpec.model_validate(apply_defaults(vn, vn_schema)) == VPSieNodeSpec.model_validate(vn)


def test_crds_command_prints_every_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == [
        "nodegroups.autoscaler.vpsie.com",
        "vpsienodes.autoscaler.vpsie.com",
        "autoscalersettings.autoscaler.vpsie.com",
    ]
    assert docs == list(yaml.safe_load_all(crds_yaml()))
