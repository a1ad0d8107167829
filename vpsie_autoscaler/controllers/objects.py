"""Small, safe writes on Kubernetes objects shared by the lifecycle controllers.

Lists (finalizers, taints) are replaced wholesale by a JSON merge patch, so every patch that changes
one carries ``metadata.resourceVersion``: a concurrent writer makes it fail with ``Conflict`` and the
reconcile is retried on fresh data instead of silently dropping the other writer's entry
(controller-runtime's ``controllerutil.AddFinalizer`` + optimistic ``Update``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "add_finalizer",
    "annotations_of",
    "ensure_index",
    "labels_of",
    "meta",
    "parse_time",
    "patch_status",
    "remove_finalizer",
    "rfc3339",
]

from vpsie_autoscaler.api.times import parse_time, rfc3339
from vpsie_autoscaler.kube import KubeClient
from vpsie_autoscaler.kube.resources import Resource
from vpsie_autoscaler.runtime.informer import SharedInformer
from vpsie_autoscaler.runtime.store import IndexFunc


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("labels") or {}


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return meta(obj).get("annotations") or {}


def ensure_index(informer: SharedInformer, name: str, fn: IndexFunc) -> None:
    """Add an index to a shared informer unless a controller sharing it added it already."""
    with contextlib.suppress(ValueError):
        informer.add_indexers({name: fn})


async def add_finalizer(client: KubeClient, res: Resource, obj: Mapping[str, Any], finalizer: str) -> bool:
    """Add ``finalizer`` (optimistic lock); False when it was already there."""
    current = list(meta(obj).get("finalizers") or [])
    if finalizer in current:
        return False
    patch = {
        "metadata": {"finalizers": [*current, finalizer], "resourceVersion": meta(obj)["resourceVersion"]}
    }
    await client.merge_patch(res, meta(obj)["name"], patch, meta(obj).get("namespace"))
    return True


async def remove_finalizer(client: KubeClient, res: Resource, obj: Mapping[str, Any], finalizer: str) -> bool:
    """Remove ``finalizer`` (optimistic lock); False when it was not there."""
    current = list(meta(obj).get("finalizers") or [])
    if finalizer not in current:
        return False
    remaining = [f for f in current if f != finalizer]
    patch = {"metadata": {"finalizers": remaining, "resourceVersion": meta(obj)["resourceVersion"]}}
    await client.merge_patch(res, meta(obj)["name"], patch, meta(obj).get("namespace"))
    return True


async def patch_status(
    client: KubeClient, res: Resource, obj: Mapping[str, Any], status: Mapping[str, Any]
) -> dict[str, Any]:
    """Replace the ``status`` stanza through the status subresource (optimistic lock).

    Top-level status fields that ``status`` no longer has are nulled explicitly (a merge patch keeps
    what it does not mention).
    """
    body: dict[str, Any] = dict.fromkeys(obj.get("status") or {})
    body.update(status)
    patch = {"metadata": {"resourceVersion": meta(obj)["resourceVersion"]}, "status": body}
    return await client.merge_patch(
        res, meta(obj)["name"], patch, meta(obj).get("namespace"), subresource="status"
    )
