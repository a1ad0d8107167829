"""The drain executor: taint the Node, evict its pods through the Eviction API, report what blocks.

Only the lifecycle controller evicts (docs/architecture.md, drain protocol). One call of
:meth:`DrainExecutor.step` does one pass and never waits inside it: a PodDisruptionBudget that
forbids an eviction answers 429 and the pod is simply tried again on the next reconcile (the
reconciler requeues), as ``kubectl drain`` retries and cluster-autoscaler's drain loop does.

Pods that never block a drain (cluster-autoscaler ``drain.GetPodsForDeletionOnNodeDrain``): mirror
(static) pods, DaemonSet pods (their controller tolerates our taint and recreates them anyway), and
pods that already finished. Pods already terminating count as remaining but are not evicted again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from vpsie_autoscaler.api.labels import MIRROR_POD_ANNOTATION, TO_BE_DELETED_TAINT
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics
from vpsie_autoscaler.controllers.nodes import has_taint, set_taints, taints_of
from vpsie_autoscaler.controllers.objects import annotations_of, labels_of, meta
from vpsie_autoscaler.kube import KubeClient, errors
from vpsie_autoscaler.kube.resources import PDBS, PODS
from vpsie_autoscaler.scaling.selectors import LabelSelector

log = structlog.get_logger("vpsie_autoscaler.controllers.vpsienode.drain")

TAINT_EFFECT: Final = "NoSchedule"
TERMINAL_POD_PHASES: Final = frozenset({"Succeeded", "Failed"})

Obj = Mapping[str, Any]


@dataclass
class DrainProgress:
    """What one pass found: pods still on the node, evictions done, and the first refusal."""

    remaining: list[str] = field(default_factory=list)  # "namespace/name"
    evicted: int = 0
    blocker: str | None = None  # "namespace/name (PodDisruptionBudget ns/pdb): message"

    @property
    def done(self) -> bool:
        return not self.remaining


def to_be_deleted_taint() -> dict[str, str]:
    return {"key": TO_BE_DELETED_TAINT, "value": "", "effect": TAINT_EFFECT}


def _pod_key(pod: Obj) -> str:
    return f"{meta(pod).get('namespace')}/{meta(pod).get('name')}"


def blocks_drain(pod: Obj) -> bool:
    """Whether the drain must wait for this pod to leave."""
    if MIRROR_POD_ANNOTATION in annotations_of(pod):
        return False
    if any(
        ref.get("kind") == "DaemonSet" and ref.get("controller")
        for ref in meta(pod).get("ownerReferences") or []
    ):
        return False
    return (pod.get("status") or {}).get("phase") not in TERMINAL_POD_PHASES


class DrainExecutor:
    def __init__(self, client: KubeClient, metrics: AutoscalerMetrics) -> None:
        self._client = client
        self._metrics = metrics

    async def taint(self, node: Obj) -> bool:
        """Put our NoSchedule taint on the Node; False when it was already there."""
        if has_taint(node, TO_BE_DELETED_TAINT):
            return False
        await set_taints(self._client, node, [*taints_of(node), to_be_deleted_taint()])
        return True

    async def untaint(self, node: Obj) -> bool:
        """Remove our taint (a failed or aborted drain must not leave the node unschedulable)."""
        if not has_taint(node, TO_BE_DELETED_TAINT):
            return False
        await set_taints(
            self._client, node, [t for t in taints_of(node) if t.get("key") != TO_BE_DELETED_TAINT]
        )
        return True

    async def pods_on(self, node_name: str) -> list[dict[str, Any]]:
        listed = await self._client.list(PODS, field_selector=f"spec.nodeName={node_name}")
        return [p for p in listed.get("items") or [] if blocks_drain(p)]

    async def step(self, node_name: str, *, evict: bool = True) -> DrainProgress:
        """One pass: list the node's pods, evict those not yet terminating (unless ``evict`` is False)."""
        progress = DrainProgress()
        for pod in await self.pods_on(node_name):
            progress.remaining.append(_pod_key(pod))
            if not evict or meta(pod).get("deletionTimestamp"):
                continue
            try:
                await self._client.evict(meta(pod)["name"], meta(pod)["namespace"])
            except errors.NotFound:
                continue
            except errors.TooManyRequests as exc:
                if progress.blocker is None:
                    progress.blocker = await self._describe_blocker(pod, exc)
                continue
            progress.evicted += 1
            self._metrics.evicted_pods_total.inc()
            log.info("drain.evicted", node=node_name, pod=_pod_key(pod))
        return progress

    async def _describe_blocker(self, pod: Obj, exc: errors.KubeError) -> str:
        """``ns/pod (PodDisruptionBudget ns/name): <API message>`` naming the PDB when one matches."""
        namespace = meta(pod).get("namespace")
        pdb_name = None
        try:
            pdbs = await self._client.list(PDBS, namespace)
        except errors.KubeError:
            pdbs = {}
        for pdb in pdbs.get("items") or []:
            selector = LabelSelector.from_k8s((pdb.get("spec") or {}).get("selector"))
            if (pdb.get("spec") or {}).get("selector") is not None and selector.matches(labels_of(pod)):
                pdb_name = f"{namespace}/{meta(pdb).get('name')}"
                break
        via = f" (PodDisruptionBudget {pdb_name})" if pdb_name else ""
        return f"{_pod_key(pod)}{via}: {exc.message}"
