"""NodeGroup specs the API server and the models both refuse, and edge cases both accept.

One table for both sides: ``tests/unit/api/test_validation.py`` checks the Python models refuse each
case with ``python`` in the error, ``tests/integration/test_crds.py`` checks the real API server refuses
it with ``server`` in its message. A spec patch replaces whole top-level spec fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from vpsie_autoscaler.api.nodegroup import (
    LABEL_KEY_RESERVED,
    LABEL_KEY_SYNTAX,
    MSG_BACKOFF_ORDER,
    MSG_CPU_MAX,
    MSG_CPU_RANGE,
    MSG_HEADROOM_FORM,
    MSG_HEADROOM_NODES_LE_MAX,
    MSG_MANAGED_IMMUTABLE,
    MSG_MANAGED_SIZES,
    MSG_MEMORY_RANGE,
    MSG_MIN_LE_MAX,
    MSG_ONE_PLAN_FORM,
    MSG_ONE_PRICE,
    MSG_ONE_SOURCE,
    MSG_ONE_VPSIE_GROUP,
    MSG_PROJECT_IMMUTABLE,
    MSG_RESERVED_LE_RESOURCES,
    MSG_SOURCE_KIND_IMMUTABLE,
    MSG_TAG_SPACES,
    MSG_TAINT_RESERVED,
    MSG_TAINT_UNIQUE,
    RESOURCE_NAME,
)
from vpsie_autoscaler.api.types import (
    INT_OR_PERCENT_MESSAGE,
    MSG_LABEL_VALUE,
    MSG_QUANTITY_RANGE,
    MSG_QUANTITY_SYNTAX,
    MSG_TAINT_KEY,
    MSG_TAINT_VALUE,
)

VM: Final = {
    "resourceIdentifier": "plan-1",
    "osIdentifier": "os-1",
    "dcIdentifier": "dc-1",
    "projectId": "p-1",
}
MANAGED: Final = {"clusterIdentifier": "c-1", "nodeGroupName": "workers", "sizeId": 3}
TOO_LONG: Final = "Too long"  # the API server's maxLength / maxItems message starts so
PREFIX_253: Final = ".".join(["a" * 63] * 4)[:253]
NAME_63: Final = "n" * 63


def base_spec() -> dict[str, Any]:
    return {"minNodes": 1, "maxNodes": 3, "vm": dict(VM)}


def patched(patch: dict[str, Any]) -> dict[str, Any]:
    spec = base_spec()
    spec.update(patch)
    return {k: v for k, v in spec.items() if v is not None}


@dataclass(frozen=True)
class Case:
    id: str
    patch: dict[str, Any]
    server: str
    """A substring of the API server's message."""
    python: str = ""
    """A substring of the models' error (``server`` when empty)."""

    @property
    def python_message(self) -> str:
        return self.python or self.server


@dataclass(frozen=True)
class Transition:
    """An update from ``old`` to ``new``: refused with ``message``, or allowed when it is empty."""

    id: str
    old: dict[str, Any]
    new: dict[str, Any]
    message: str = ""


def template(**fields: Any) -> dict[str, Any]:
    return {"template": fields}


def label(key: str, value: str = "x") -> dict[str, Any]:
    return template(labels={key: value})


def taint(key: str, value: str | None = None, effect: str = "NoSchedule") -> dict[str, Any]:
    t: dict[str, Any] = {"key": key, "effect": effect}
    if value is not None:
        t["value"] = value
    return template(taints=[t])


def vm(**fields: Any) -> dict[str, Any]:
    return {"vm": {**VM, **fields}}


REFUSED: Final = [
    # shape and policy
    Case("min-above-max", {"minNodes": 5, "maxNodes": 2}, MSG_MIN_LE_MAX),
    Case("two-sources", {"managed": MANAGED}, MSG_ONE_SOURCE),
    Case("no-source", {"vm": None}, MSG_ONE_SOURCE),
    Case("managed-name-and-id", {"vm": None, "managed": {**MANAGED, "nodeGroupId": 4}}, MSG_ONE_VPSIE_GROUP),
    Case(
        "duration-out-of-range",
        {"scaleDown": {"unneededTime": "200h"}},
        "must be a duration between 0s and 168h",
    ),
    Case(
        "duration-syntax", {"scaleDown": {"unneededTime": "10 minutes"}}, "should match", "invalid duration"
    ),
    Case("budget-percent", {"scaleDown": {"disruptionBudget": "150%"}}, INT_OR_PERCENT_MESSAGE),
    Case("budget-negative", {"scaleDown": {"disruptionBudget": -2}}, INT_OR_PERCENT_MESSAGE),
    Case(
        "threshold",
        {"scaleDown": {"utilizationThreshold": 1.5}},
        "should be less than or equal to 1",
        "less than",
    ),
    Case("backoff-order", {"provisioning": {"backoff": {"initial": "30m", "max": "5m"}}}, MSG_BACKOFF_ORDER),
    # label keys: Kubernetes' qualified-name syntax
    Case("label-key-space", label("bad key"), LABEL_KEY_SYNTAX.message),
    Case("label-key-comma", label("a,b"), LABEL_KEY_SYNTAX.message),
    Case("label-key-leading-dash", label("-a"), LABEL_KEY_SYNTAX.message),
    Case("label-key-two-slashes", label("example.com/a/b"), LABEL_KEY_SYNTAX.message),
    Case("label-key-empty-name", label("example.com/"), LABEL_KEY_SYNTAX.message),
    Case("label-key-uppercase-prefix", label("Example.com/a"), LABEL_KEY_SYNTAX.message),
    Case("label-key-name-64", label("n" * 64), LABEL_KEY_SYNTAX.message),
    Case("label-key-prefix-254", label(f"a{PREFIX_253}/{NAME_63}"), LABEL_KEY_SYNTAX.message),
    # label values
    Case("label-value-space", label("a", "two words"), MSG_LABEL_VALUE),
    Case("label-value-comma", label("a", "x,y"), MSG_LABEL_VALUE),
    Case("label-value-newline", label("a", "x\ny"), MSG_LABEL_VALUE),
    Case("label-value-leading-dash", label("a", "-x"), MSG_LABEL_VALUE),
    Case("label-value-64", label("a", "v" * 64), TOO_LONG, MSG_LABEL_VALUE),
    # label keys the autoscaler or the kubelet own
    Case("label-own-nodegroup", label("autoscaler.vpsie.com/nodegroup"), LABEL_KEY_RESERVED.message),
    Case("label-own-subdomain", label("x.autoscaler.vpsie.com/a"), LABEL_KEY_RESERVED.message),
    Case("label-hostname", label("kubernetes.io/hostname"), LABEL_KEY_RESERVED.message),
    Case("label-arch", label("kubernetes.io/arch", "arm64"), LABEL_KEY_RESERVED.message),
    Case("label-os", label("kubernetes.io/os", "linux"), LABEL_KEY_RESERVED.message),
    Case("label-instance-type", label("node.kubernetes.io/instance-type"), LABEL_KEY_RESERVED.message),
    Case("label-zone", label("topology.kubernetes.io/zone"), LABEL_KEY_RESERVED.message),
    Case("label-node-role", label("node-role.kubernetes.io/worker", ""), LABEL_KEY_RESERVED.message),
    Case("label-k8s-io", label("example.k8s.io/a"), LABEL_KEY_RESERVED.message),
    # taints
    Case("taint-effect", taint("a", effect="Sometimes"), "Unsupported value", "NoSchedule"),
    Case("taint-key-space", taint("bad key"), MSG_TAINT_KEY),
    Case("taint-key-empty", taint(""), "should be at least 1 chars long", "at least 1 character"),
    Case("taint-key-two-slashes", taint("a/b/c"), MSG_TAINT_KEY),
    Case("taint-value-space", taint("a", "two words"), MSG_TAINT_VALUE),
    Case("taint-value-64", taint("a", "v" * 64), TOO_LONG, "at most 63 characters"),
    Case(
        "taint-duplicate",
        template(
            taints=[{"key": "a", "value": "1", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]
        ),
        MSG_TAINT_UNIQUE,
    ),
    Case("taint-own", taint("autoscaler.vpsie.com/to-be-deleted"), MSG_TAINT_RESERVED),
    Case("taint-not-ready", taint("node.kubernetes.io/not-ready", effect="NoExecute"), MSG_TAINT_RESERVED),
    Case("taint-uninitialized", taint("node.cloudprovider.kubernetes.io/uninitialized"), MSG_TAINT_RESERVED),
    # quantities
    Case("quantity-syntax", template(resources={"cpu": "two"}), MSG_QUANTITY_SYNTAX),
    Case("quantity-space", template(resources={"memory": "4 Gi"}), MSG_QUANTITY_SYNTAX),
    Case("quantity-negative", template(resources={"memory": "-1Gi"}), MSG_QUANTITY_RANGE),
    Case("quantity-negative-int", template(reserved={"cpu": -1}), MSG_QUANTITY_RANGE),
    Case("quantity-above-1pi", template(resources={"memory": "2Pi"}), MSG_QUANTITY_RANGE),
    Case("quantity-exponent-99", template(resources={"ephemeral-storage": "1e99"}), MSG_QUANTITY_RANGE),
    # A three-digit exponent is refused before the apiserver parses it (a billion-digit number would
    # spend every later write's timeout in validation).
    Case(
        "quantity-huge-exponent",
        template(resources={"ephemeral-storage": "1e100"}),
        MSG_QUANTITY_SYNTAX,
        MSG_QUANTITY_SYNTAX,
    ),
    Case("cpu-billion-digit-exponent", template(resources={"cpu": "1e999999999"}), MSG_QUANTITY_SYNTAX),
    Case(
        "reserved-billion-digit-exponent",
        template(resources={"cpu": "4"}, reserved={"cpu": "1e999999999"}),
        MSG_QUANTITY_SYNTAX,
    ),
    Case("quantity-too-long", template(resources={"memory": "1" * 33}), TOO_LONG, "longer than 32"),
    Case("cpu-above-max", template(resources={"cpu": "1000001"}), MSG_CPU_MAX),
    Case("reserved-cpu-above-max", template(reserved={"cpu": "2M"}), MSG_CPU_MAX),
    Case(
        "reserved-above-cpu",
        template(resources={"cpu": 2}, reserved={"cpu": "2100m"}),
        MSG_RESERVED_LE_RESOURCES,
    ),
    Case(
        "reserved-above-memory",
        template(resources={"memory": "4Gi"}, reserved={"memory": "5G"}),
        MSG_RESERVED_LE_RESOURCES,
    ),
    Case("resource-name-typo", template(resources={"mem": "4Gi"}), RESOURCE_NAME.message),
    Case("resource-name-uppercase", template(resources={"CPU": 2}), RESOURCE_NAME.message),
    Case("resource-name-syntax", template(reserved={"nvidia.com/g pu": 1}), RESOURCE_NAME.message),
    # prices
    Case("both-prices", template(hourlyPrice=0.1, monthlyPrice=73), MSG_ONE_PRICE),
    Case(
        "price-negative", template(hourlyPrice=-0.1), "should be greater than or equal to 0", "greater than"
    ),
    Case("price-huge", template(monthlyPrice=1e12), "should be less than or equal to", "less than"),
    # VM tags
    Case("tag-empty", vm(tags=[""]), "should be at least 1 chars long", "at least 1 character"),
    Case("tag-spaces", vm(tags=[" team-a"]), MSG_TAG_SPACES),
    Case("tag-newline", vm(tags=["team-a\n"]), MSG_TAG_SPACES),
    Case("tag-duplicate", vm(tags=["a", "b", "a"]), "Duplicate value", "Duplicate value"),
    Case(
        "tag-too-many",
        vm(tags=[f"t{i}" for i in range(33)]),
        "must have at most 32 items",
        "at most 32 items",
    ),
    Case("tag-too-long", vm(tags=["t" * 254]), TOO_LONG, "at most 253 characters"),
    # flexible plans
    Case("plans-both-forms", {"plans": {"sizes": ["p-2"], "requirements": {}}}, MSG_ONE_PLAN_FORM),
    Case("plans-no-form", {"plans": {}}, MSG_ONE_PLAN_FORM),
    Case("plans-sizes-empty", {"plans": {"sizes": []}}, "should have at least 1 items", "at least 1 item"),
    Case("plans-sizes-duplicate", {"plans": {"sizes": ["a", "a"]}}, "Duplicate value", "Duplicate value"),
    Case(
        "plans-cpu-range",
        {"plans": {"requirements": {"cpu": {"min": 8, "max": 2}}}},
        MSG_CPU_RANGE,
    ),
    Case(
        "plans-cpu-zero",
        {"plans": {"requirements": {"cpu": {"min": 0}}}},
        "should be greater than or equal to 1",
        "greater than or equal to 1",
    ),
    Case(
        "plans-memory-range",
        {"plans": {"requirements": {"memory": {"min": "16Gi", "max": "4Gi"}}}},
        MSG_MEMORY_RANGE,
    ),
    Case(
        "plans-memory-syntax",
        {"plans": {"requirements": {"memory": {"min": "lots"}}}},
        MSG_QUANTITY_SYNTAX,
    ),
    Case(
        "plans-managed-size-names",
        {"vm": None, "managed": MANAGED, "plans": {"sizes": ["plan-2cpu"]}},
        MSG_MANAGED_SIZES,
    ),
    # headroom
    Case("headroom-both-forms", {"headroom": {"cpu": "2", "nodes": 1}}, MSG_HEADROOM_FORM),
    Case("headroom-empty", {"headroom": {}}, MSG_HEADROOM_FORM),
    Case("headroom-cpu-syntax", {"headroom": {"cpu": "two"}}, MSG_QUANTITY_SYNTAX),
    Case("headroom-memory-negative", {"headroom": {"memory": "-1Gi"}}, MSG_QUANTITY_RANGE),
    Case("headroom-nodes-above-max", {"headroom": {"nodes": 4}}, MSG_HEADROOM_NODES_LE_MAX),
    Case(
        "headroom-nodes-zero",
        {"headroom": {"nodes": 0}},
        "should be greater than or equal to 1",
        "greater than or equal to 1",
    ),
    # consolidation
    Case(
        "consolidation-savings-above-100",
        {"consolidation": {"enabled": True, "minSavingsPercent": 101}},
        "should be less than or equal to 100",
        "less than or equal to 100",
    ),
    Case(
        "consolidation-after-out-of-range",
        {"consolidation": {"consolidateAfter": "200h"}},
        "must be a duration between 0s and 168h",
    ),
    Case(
        "consolidation-window-schedule",
        {"consolidation": {"windows": [{"schedule": "every night", "duration": "8h"}]}},
        "should match",
        "should match pattern",
    ),
    Case(
        "consolidation-window-too-short",
        {"consolidation": {"windows": [{"schedule": "@daily", "duration": "30s"}]}},
        "must be a duration between 1m and 168h",
    ),
]

ACCEPTED: Final = [
    Case("label-value-empty", label("pool", ""), ""),
    Case("label-max-lengths", label(f"{PREFIX_253}/{NAME_63}", "v" * 63), ""),
    Case(
        "label-allowed-kube-namespaces",
        template(labels={"node.kubernetes.io/pool": "a", "kubelet.kubernetes.io/x": "b"}),
        "",
    ),
    Case(
        "quantities",
        template(
            resources={
                "cpu": "500m",
                "memory": "1.5Gi",
                "ephemeral-storage": "1Pi",
                "pods": 110,
                "nvidia.com/gpu": 1,
                "hugepages-2Mi": "0",
            },
            reserved={"cpu": "500m", "memory": "1536Mi"},
        ),
        "",
    ),
    Case("cpu-at-max", template(resources={"cpu": "1M"}, reserved={"cpu": "1e6"}), ""),
    Case("reserved-without-resources", template(reserved={"cpu": "250m"}), ""),
    Case(
        "taints-same-key-two-effects",
        template(taints=[{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoExecute"}]),
        "",
    ),
    Case("taint-max-lengths", taint(f"{PREFIX_253}/{NAME_63}", "v" * 63), ""),
    Case("monthly-price-only", template(monthlyPrice=73.0), ""),
    Case("tags-at-max", vm(tags=[f"t{i}" for i in range(31)] + ["t" * 253]), ""),
    Case("plans-sizes", {"plans": {"sizes": ["plan-2cpu", "plan-8cpu"]}}, ""),
    Case(
        "plans-requirements",
        {
            "plans": {
                "requirements": {
                    "cpu": {"min": 2, "max": 8},
                    "memory": {"min": "4Gi", "max": "16Gi"},
                    "categories": ["Shared CPU"],
                }
            }
        },
        "",
    ),
    Case("plans-managed-size-ids", {"vm": None, "managed": MANAGED, "plans": {"sizes": ["3", "57"]}}, ""),
    Case("headroom-resources", {"headroom": {"cpu": "2", "memory": "4Gi", "pods": 10}}, ""),
    Case("headroom-nodes-at-max", {"headroom": {"nodes": 3}}, ""),
    Case(
        "consolidation-full",
        {
            "consolidation": {
                "enabled": True,
                "consolidateAfter": "0s",
                "minSavingsPercent": 0,
                "windows": [
                    {"schedule": "0 22 * * 1-5", "duration": "8h"},
                    {"schedule": "@weekly", "duration": "168h"},
                ],
            }
        },
        "",
    ),
]

# Updates refused by the transition rules.
IMMUTABLE: Final = [
    Transition("vm-project", base_spec(), patched(vm(projectId="p-2")), MSG_PROJECT_IMMUTABLE),
    Transition(
        "vm-to-managed", base_spec(), patched({"vm": None, "managed": MANAGED}), MSG_SOURCE_KIND_IMMUTABLE
    ),
    Transition(
        "managed-cluster",
        patched({"vm": None, "managed": MANAGED}),
        patched({"vm": None, "managed": {**MANAGED, "clusterIdentifier": "c-2"}}),
        MSG_MANAGED_IMMUTABLE,
    ),
    Transition(
        "managed-group-name",
        patched({"vm": None, "managed": MANAGED}),
        patched({"vm": None, "managed": {**MANAGED, "nodeGroupName": "other"}}),
        MSG_MANAGED_IMMUTABLE,
    ),
    Transition(
        "managed-name-to-id",
        patched({"vm": None, "managed": MANAGED}),
        patched({"vm": None, "managed": {"clusterIdentifier": "c-1", "nodeGroupId": 9, "sizeId": 3}}),
        MSG_MANAGED_IMMUTABLE,
    ),
]

# Updates the transition rules allow: the plan, image, datacenter, size and tags may change.
MUTABLE: Final = [
    Transition(
        "vm-plan-and-tags",
        base_spec(),
        patched(vm(resourceIdentifier="plan-2", osIdentifier="os-2", tags=["x"])),
    ),
    Transition(
        "managed-size",
        patched({"vm": None, "managed": MANAGED}),
        patched({"vm": None, "managed": {**MANAGED, "sizeId": 4, "datacenterIdentifier": "dc-2"}}),
    ),
]
