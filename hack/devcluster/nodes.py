"""Node objects that kwok adopts: how tests and simulators make a "booted VM" appear as a Ready Node.

The shape follows what kubelet registration and the Karpenter / cluster-autoscaler kwok providers
send: annotation ``kwok.x-k8s.io/node: fake`` (the selector our kwok runs with), a dummy
``spec.providerID``, the well-known labels, and ``status.capacity``/``allocatable`` set by the
creator. Node create keeps the status; kwok's node-initialize stage then adds the Ready conditions
and keeps the resources, and its lease stage heartbeats the Node.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_VALUE = "fake"
# Tests label the Nodes they create with their namespace; the namespace fixture deletes them after.
OWNER_LABEL = "devcluster.test/owner"
TAINT_EFFECTS = frozenset({"NoSchedule", "PreferNoSchedule", "NoExecute"})
DEFAULT_PODS = "110"  # kubelet's default --max-pods
DEFAULT_EPHEMERAL_STORAGE = "100Gi"
# RFC 1123 subdomain, the rule the API server applies to Node names.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_NAME = 253
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def _check_quantity(field: str, value: str) -> str:
    if not _QUANTITY.match(value):
        raise ValueError(f"{field}={value!r} is not a Kubernetes quantity (e.g. '2', '500m', '4Gi')")
    return value


def make_kwok_node(
    name: str,
    cpu: str,
    memory: str,
    *,
    pods: str = DEFAULT_PODS,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] | None = None,
    annotations: Mapping[str, str] | None = None,
    provider_id: str | None = None,
    ephemeral_storage: str = DEFAULT_EPHEMERAL_STORAGE,
) -> dict[str, Any]:
    """Build the body of a Node that our kwok manages.

    ``cpu``/``memory``/``pods`` are Kubernetes quantities used for both capacity and allocatable.
    ``taints`` are ``{"key", "value"?, "effect"}`` mappings. ``labels`` are merged over the well-known
    defaults (hostname, os, arch, ``type=kwok``). Raises ``ValueError`` for malformed input before
    the API server sees it, so a typo fails where it was made.
    """
    if not name or len(name) > _MAX_NAME or not _NODE_NAME.match(name):
        raise ValueError(f"node name {name!r} is not a lowercase RFC 1123 subdomain")
    resources = {
        "cpu": _check_quantity("cpu", cpu),
        "memory": _check_quantity("memory", memory),
        "pods": _check_quantity("pods", pods),
        "ephemeral-storage": _check_quantity("ephemeral_storage", ephemeral_storage),
    }
    node_taints = []
    for taint in taints or ():
        key, effect = taint.get("key"), taint.get("effect")
        if not key or effect not in TAINT_EFFECTS:
            raise ValueError(f"taint {dict(taint)!r} needs a key and an effect in {sorted(TAINT_EFFECTS)}")
        node_taints.append({k: v for k, v in taint.items() if k in ("key", "value", "effect")})
    all_labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
        **(labels or {}),
    }
    spec: dict[str, Any] = {"providerID": provider_id or f"kwok://{name}"}
    if node_taints:
        spec["taints"] = node_taints
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {KWOK_ANNOTATION: KWOK_ANNOTATION_VALUE, **(annotations or {})},
        },
        "spec": spec,
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }
