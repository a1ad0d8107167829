"""Generate the CustomResourceDefinitions from the models: one source of truth.

Pydantic emits JSON Schema 2020-12; the API server wants an OpenAPI v3 *structural* schema
(``apiextensions.k8s.io/v1``, "Specifying a structural schema"). The differences handled here:

- ``$ref``/``$defs`` are inlined (structural schemas have no references);
- ``anyOf: [X, {type: null}]`` (an optional field) becomes ``X``: the field is simply not required;
- ``const`` becomes a one-element ``enum``; ``title`` and ``default: null`` are dropped;
- int-or-string types keep their ``anyOf: [{type: integer}, {type: string}]`` next to
  ``x-kubernetes-int-or-string: true``, the one ``anyOf`` a structural schema allows;
- ``x-kubernetes-validations`` (CEL rules with messages) come from the models unchanged.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import yaml
from pydantic import BaseModel

from vpsie_autoscaler.api.labels import GROUP
from vpsie_autoscaler.api.nodegroup import (
    MSG_NAME_LENGTH,
    RULE_NAME_LENGTH,
    VERSION,
    NodeGroupSpec,
    NodeGroupStatus,
)
from vpsie_autoscaler.api.settings import (
    MSG_SINGLETON,
    RULE_SINGLETON,
    AutoscalerSettingsSpec,
    AutoscalerSettingsStatus,
)
from vpsie_autoscaler.api.vpsienode import VPSieNodeSpec, VPSieNodeStatus

_DROP_KEYS: Final = frozenset({"title", "$defs"})

API_VERSION_DESCRIPTION: Final = (
    "APIVersion defines the versioned schema of this representation of an object. Servers should convert "
    "recognized schemas to the latest internal value, and may reject unrecognized values. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"
)
KIND_DESCRIPTION: Final = (
    "Kind is a string value representing the REST resource this object represents. Servers may infer this "
    "from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"
)
"""The two descriptions every Kubernetes type carries (k8s.io/apimachinery ``metav1.TypeMeta``), as
controller-gen writes them. ``metadata`` gets none: a structural schema may say nothing about it but
``type: object`` (the API server serves ``ObjectMeta``'s own description in its place)."""

PLAN_COLUMN_PATH: Final = ".spec['instanceType','managed.sizeId','vm.resourceIdentifier']"
"""The plan of a VPSieNode in one printer column: a JSONPath union (k8s.io/client-go ``util/jsonpath``)
whose members are tried in order; the API server's table convertor prints the first value found, so
the plan name when the group's template names it, else the VPSie size id (managed) or plan identifier
(VM)."""

Schema = dict[str, Any]


def structural_schema(model: type[BaseModel]) -> Schema:
    """The OpenAPI v3 structural schema of ``model`` (camelCase property names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs: dict[str, Schema] = raw.get("$defs", {})
    return _convert(raw, defs)


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    ref = node.get("$ref")
    if ref is None:
        return node
    target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
    # Keys beside the $ref (description, default, extensions) override the referenced schema's.
    target.update({k: v for k, v in node.items() if k != "$ref"})
    return _resolve(target, defs)


def _convert(node: Schema, defs: dict[str, Schema]) -> Schema:
    node = _resolve(node, defs)
    any_of = node.get("anyOf")
    if any_of is not None and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in any_of if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {any_of!r} in a structural schema")
        merged = dict(_resolve(branches[0], defs))
        merged.update({k: v for k, v in node.items() if k != "anyOf"})
        node = merged
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP_KEYS or (key == "default" and value is None):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        elif key == "anyOf":
            out[key] = [{"type": b["type"]} for b in value]
        else:
            out[key] = copy.deepcopy(value)
    if "enum" in out and "type" not in out:
        out["type"] = _enum_type(out["enum"])
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]
    return out


def _enum_type(values: list[Any]) -> str:
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "integer"
    raise ValueError(f"mixed-type enum {values!r} cannot be structural")


def _root_schema(
    spec: type[BaseModel],
    status: type[BaseModel],
    description: str,
    rules: list[dict[str, str]] | None = None,
) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": API_VERSION_DESCRIPTION},
            "kind": {"type": "string", "description": KIND_DESCRIPTION},
            "metadata": {"type": "object"},
            "spec": structural_schema(spec),
            "status": structural_schema(status),
        },
    }
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    columns: list[dict[str, Any]],
    schema: Schema,
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {
                "app.kubernetes.io/name": "vpsie-autoscaler",
                "app.kubernetes.io/part-of": "vpsie-autoscaler",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["vpsie", "autoscaling"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _col(name: str, type_: str, path: str, description: str = "", priority: int = 0) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if description:
        col["description"] = description
    if priority:
        col["priority"] = priority
    return col


def nodegroup_crd() -> dict[str, Any]:
    """The NodeGroup CRD (``nodegroups.autoscaler.vpsie.com``)."""
    return _crd(
        kind="NodeGroup",
        plural="nodegroups",
        short_names=["ng"],
        columns=[
            _col("Min", "integer", ".spec.minNodes"),
            _col("Max", "integer", ".spec.maxNodes"),
            _col("Desired", "integer", ".status.desiredNodes"),
            _col("Current", "integer", ".status.currentNodes"),
            _col("Ready", "integer", ".status.readyNodes"),
            _col(
                "Status",
                "string",
                '.status.conditions[?(@.type=="Ready")].reason',
                "Reason of the Ready condition: a one-word summary of the group's state.",
            ),
            _col("Age", "date", ".metadata.creationTimestamp"),
            _col("Decision", "string", ".status.lastDecision", priority=1),
        ],
        schema=_root_schema(
            NodeGroupSpec,
            NodeGroupStatus,
            "A pool of identical VPSie nodes.",
            [{"rule": RULE_NAME_LENGTH, "message": MSG_NAME_LENGTH}],
        ),
    )


def vpsienode_crd() -> dict[str, Any]:
    """The VPSieNode CRD (``vpsienodes.autoscaler.vpsie.com``)."""
    return _crd(
        kind="VPSieNode",
        plural="vpsienodes",
        short_names=["vn"],
        columns=[
            _col("Group", "string", ".spec.nodeGroup"),
            _col("Phase", "string", ".status.phase"),
            _col("Pods Left", "integer", ".status.podsRemaining", "While Draining: pods still to leave."),
            _col(
                "Plan",
                "string",
                PLAN_COLUMN_PATH,
                "The plan: spec.instanceType (the plan name) when the group's template sets it, else the "
                "VPSie size id (managed) or plan identifier (VM).",
            ),
            _col("Node", "string", ".status.nodeName"),
            _col("IP", "string", ".status.ip"),
            _col("Age", "date", ".metadata.creationTimestamp"),
            _col("Instance", "string", ".status.instanceIdentifier", priority=1),
        ],
        schema=_root_schema(VPSieNodeSpec, VPSieNodeStatus, "One VPSie instance owned by the autoscaler."),
    )


def settings_crd() -> dict[str, Any]:
    """The AutoscalerSettings CRD (``autoscalersettings.autoscaler.vpsie.com``): one object, ``default``."""
    return _crd(
        kind="AutoscalerSettings",
        plural="autoscalersettings",
        short_names=["vas"],
        columns=[
            _col("Expander", "string", ".spec.expander"),
            _col("DryRun", "boolean", ".spec.dryRun"),
            _col(
                "Applied",
                "string",
                '.status.conditions[?(@.type=="Applied")].status',
                "Whether the controller runs with these settings.",
            ),
            _col("Age", "date", ".metadata.creationTimestamp"),
        ],
        schema=_root_schema(
            AutoscalerSettingsSpec,
            AutoscalerSettingsStatus,
            "Cluster-wide settings applied without a restart; unset fields keep the flags.",
            [{"rule": RULE_SINGLETON, "message": MSG_SINGLETON}],
        ),
    )


def all_crds() -> list[dict[str, Any]]:
    """Every CRD we ship, in install order."""
    return [nodegroup_crd(), vpsienode_crd(), settings_crd()]


def crds_yaml() -> str:
    """The CRDs as one multi-document YAML stream (what ``vpsie-autoscaler crds`` prints)."""
    return yaml.safe_dump_all(all_crds(), sort_keys=False, explicit_start=True, width=120)
