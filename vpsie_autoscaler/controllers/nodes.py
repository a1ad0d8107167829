"""Reading and patching the Kubernetes Node of a VPSieNode.

The Node joins with what its kubelet (or the cloud) registered; the autoscaler makes sure it also
carries the group's labels and taints (``spec.labels``/``spec.taints``: the node template the planner
fitted pods onto) and the two labels that link it back: ``NODEGROUP_LABEL`` and ``VPSIENODE_LABEL``.
Labels are a map, so a merge patch adds ours without touching the others; taints are a list, so the
patch carries the whole list and ``metadata.resourceVersion``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vpsie_autoscaler.api.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, NODEGROUP_LABEL, VPSIENODE_LABEL
from vpsie_autoscaler.api.vpsienode import VPSieNode
from vpsie_autoscaler.controllers.objects import labels_of, meta
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import NODES

Obj = Mapping[str, Any]


def node_ready(node: Obj) -> bool:
    """The Node's ``Ready`` condition is ``True``."""
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def taints_of(node: Obj) -> list[dict[str, Any]]:
    return [dict(t) for t in (node.get("spec") or {}).get("taints") or []]


def has_taint(node: Obj, key: str, effect: str | None = None) -> bool:
    return any(t.get("key") == key and (effect is None or t.get("effect") == effect) for t in taints_of(node))


def wanted_labels(vn: VPSieNode) -> dict[str, str]:
    """Labels the Node of ``vn`` must carry."""
    return {
        **vn.spec.labels,
        NODEGROUP_LABEL: vn.spec.node_group,
        VPSIENODE_LABEL: vn.metadata.name,
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
    }


def wanted_taints(vn: VPSieNode) -> list[dict[str, Any]]:
    return [t.to_k8s() for t in vn.spec.taints]


def _same_taint(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        a.get("key") == b.get("key")
        and a.get("effect") == b.get("effect")
        and (a.get("value") or "") == (b.get("value") or "")
    )


def join_patch(vn: VPSieNode, node: Obj) -> dict[str, Any] | None:
    """The merge patch that makes ``node`` carry ``vn``'s labels and taints, or None when it does."""
    current = labels_of(node)
    labels = {k: v for k, v in wanted_labels(vn).items() if current.get(k) != v}
    taints = taints_of(node)
    missing = [t for t in wanted_taints(vn) if not any(_same_taint(t, have) for have in taints)]
    if not labels and not missing:
        return None
    patch: dict[str, Any] = {"metadata": {}}
    if labels:
        patch["metadata"]["labels"] = labels
    if missing:
        patch["metadata"]["resourceVersion"] = meta(node)["resourceVersion"]
        patch["spec"] = {"taints": taints + missing}
    return patch


def claimed_by_other(vn_name: str, node: Obj) -> str | None:
    """The other VPSieNode named on the Node's ``VPSIENODE_LABEL``, if it names another one."""
    owner = labels_of(node).get(VPSIENODE_LABEL)
    return owner if owner and owner != vn_name else None


async def apply_join(client: KubeClient, vn: VPSieNode, node: Obj) -> bool:
    """Patch the Node with ``vn``'s labels and taints; False when nothing was missing."""
    patch = join_patch(vn, node)
    if patch is None:
        return False
    await client.merge_patch(NODES, meta(node)["name"], patch)
    return True


async def set_taints(client: KubeClient, node: Obj, taints: list[dict[str, Any]]) -> None:
    """Replace the Node's taints (optimistic lock on the Node's resourceVersion)."""
    patch = {"metadata": {"resourceVersion": meta(node)["resourceVersion"]}, "spec": {"taints": taints}}
    await client.merge_patch(NODES, meta(node)["name"], patch)
