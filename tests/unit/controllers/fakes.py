"""In-memory stand-ins for the API server, the informer caches and the event recorder, so the
controllers' decision-to-write mapping can be tested with the fake clock and no cluster.

``FakeKube`` writes straight into the stores the snapshot reads (``cache_writes=False`` keeps the
cache stale, as a slow watch would).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import CollectorRegistry

from vpsie_autoscaler.api.labels import NODEGROUP_LABEL, TO_BE_DELETED_TAINT, VPSIENODE_LABEL
from vpsie_autoscaler.controllers.catalogue import PlanCatalogue
from vpsie_autoscaler.controllers.cluster_state import SnapshotBuilder
from vpsie_autoscaler.controllers.deps import Deps
from vpsie_autoscaler.controllers.metrics import AutoscalerMetrics, autoscaler_metrics
from vpsie_autoscaler.kube import KubeClient, Resource, errors
from vpsie_autoscaler.kube.resources import NODEGROUPS, NODES, PDBS, PODS, VPSIENODES
from vpsie_autoscaler.runtime.clock import FakeClock
from vpsie_autoscaler.runtime.events import EventRecorder
from vpsie_autoscaler.vpsie import models
from vpsie_autoscaler.vpsie.errors import ServerError

Obj = dict[str, Any]
EPOCH = "2026-01-01T00:00:00Z"
VM = {"resourceIdentifier": "plan-1", "osIdentifier": "os-1", "dcIdentifier": "dc-1", "projectId": "p-1"}


class Store:
    """A name-keyed store with the informer store's read API."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}

    def key(self, obj: Mapping[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace")
        return f"{ns}/{meta['name']}" if ns else str(meta["name"])

    def put(self, obj: Obj) -> Obj:
        self.objects[self.key(obj)] = obj
        return obj

    def list(self) -> list[Obj]:
        return list(self.objects.values())

    def get(self, name: str) -> Obj | None:
        return self.objects.get(name)


def merge(into: Obj, patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


@dataclass
class Call:
    verb: str
    resource: str
    name: str
    body: Any
    subresource: str | None = None


@dataclass
class FakeKube:
    clock: FakeClock
    stores: dict[str, Store]
    cache_writes: bool = True
    calls: list[Call] = field(default_factory=list)
    fail_create: list[errors.KubeError] = field(default_factory=list)
    _uid: itertools.count[int] = field(default_factory=itertools.count)

    def _store(self, res: Resource) -> Store:
        return self.stores[res.plural]

    async def create(self, res: Resource, body: Obj, namespace: str | None = None) -> Obj:
        name = body["metadata"]["name"]
        self.calls.append(Call("create", res.plural, name, body))
        if self.fail_create:
            raise self.fail_create.pop(0)
        store = self._store(res)
        if store.get(name) is not None:
            raise errors.AlreadyExists(f"{res.plural} {name} already exists")
        obj = copy.deepcopy(body)
        obj["metadata"]["uid"] = f"uid-{next(self._uid)}"
        obj["metadata"]["creationTimestamp"] = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        if self.cache_writes:
            store.put(obj)
        return obj

    async def merge_patch(
        self,
        res: Resource,
        name: str,
        patch: Obj,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        self.calls.append(Call("patch", res.plural, name, patch, subresource))
        obj = self._store(res).get(name)
        if obj is None:
            raise errors.NotFound(f"{res.plural} {name} not found")
        patch = copy.deepcopy(patch)
        (patch.get("metadata") or {}).pop("resourceVersion", None)
        merge(obj, patch)
        return obj

    async def delete(self, res: Resource, name: str, namespace: str | None = None, **_: Any) -> None:
        self.calls.append(Call("delete", res.plural, name, None))
        store = self._store(res)
        key = f"{namespace}/{name}" if namespace else name
        if store.objects.pop(key, None) is None:
            raise errors.NotFound(f"{res.plural} {name} not found")

    def writes(self, verb: str | None = None, resource: str | None = None) -> list[Call]:
        return [
            c
            for c in self.calls
            if (verb is None or c.verb == verb) and (resource is None or c.resource == resource)
        ]


@dataclass
class RecordedEvent:
    kind: str
    name: str
    type: str
    reason: str
    note: str
    related: str = ""


class FakeRecorder:
    def __init__(self) -> None:
        self.events: list[RecordedEvent] = []

    def event(
        self,
        obj: Mapping[str, Any],
        type: str,
        reason: str,
        note: str,
        action: str,
        *,
        related: Mapping[str, Any] | None = None,
    ) -> None:
        meta = obj.get("metadata") or {}
        rel = str(((related or {}).get("metadata") or {}).get("name", ""))
        self.events.append(
            RecordedEvent(str(obj.get("kind", "")), str(meta.get("name", "")), type, reason, note, rel)
        )

    def reasons(self, reason: str, name: str | None = None) -> list[RecordedEvent]:
        return [e for e in self.events if e.reason == reason and (name is None or e.name == name)]


@dataclass
class World:
    """Stores, fake API server, recorder, metrics and clock wired together."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC)))
    stores: dict[str, Store] = field(
        default_factory=lambda: {r.plural: Store() for r in (PODS, NODES, NODEGROUPS, VPSIENODES, PDBS)}
    )
    recorder: FakeRecorder = field(default_factory=FakeRecorder)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    catalogue: PlanCatalogue | None = None

    def __post_init__(self) -> None:
        self.kube = FakeKube(self.clock, self.stores)
        if self.catalogue is None:
            self.catalogue = PlanCatalogue(None, self.clock)

    @property
    def client(self) -> KubeClient:
        return cast(KubeClient, self.kube)

    @property
    def events(self) -> EventRecorder:
        return cast(EventRecorder, self.recorder)

    @property
    def metrics(self) -> AutoscalerMetrics:
        return autoscaler_metrics(self.registry)

    def deps(self, *, dry_run: bool = False) -> Deps:
        """What every controller is built from, over this world's fakes."""
        return Deps.build(
            client=self.client, recorder=self.events, clock=self.clock, metrics=self.metrics, dry_run=dry_run
        )

    def builder(
        self, *, daemonsets: Store | None = None, pvcs: Store | None = None, pvs: Store | None = None
    ) -> SnapshotBuilder:
        """A snapshot builder over this world's stores (and the optional ones given)."""
        assert self.catalogue is not None
        return SnapshotBuilder(
            pods=self.stores["pods"],
            nodes=self.stores["nodes"],
            nodegroups=self.stores["nodegroups"],
            vpsienodes=self.stores["vpsienodes"],
            pdbs=self.stores["poddisruptionbudgets"],
            daemonsets=daemonsets,
            pvcs=pvcs,
            pvs=pvs,
            catalogue=self.catalogue,
        )

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value

    # -- object builders ---------------------------------------------------------------------------

    def add(self, plural: str, obj: Obj) -> Obj:
        return self.stores[plural].put(obj)

    def group(self, name: str, *, min_nodes: int = 0, max_nodes: int = 10, cpu: str | None = "2",
              memory: str = "4Gi", **spec: Any) -> Obj:  # fmt: skip
        resources = {"cpu": cpu, "memory": memory} if cpu else {}
        obj: Obj = {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "NodeGroup",
            "metadata": {"name": name, "uid": f"ng-{name}", "generation": 1},
            "spec": {
                "minNodes": min_nodes,
                "maxNodes": max_nodes,
                "vm": VM,
                "template": {"resources": resources, "labels": {"pool": name}},
                **spec,
            },
        }
        return self.add("nodegroups", obj)

    def pending_pod(self, name: str, *, cpu: str = "1", ns: str = "default", since_s: float = 0.0,
                    owner: str | None = "ReplicaSet", **spec: Any) -> Obj:  # fmt: skip
        since = self.clock.now().timestamp() - since_s
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": f"pod-{ns}-{name}",
                "labels": {"app": name},
                "ownerReferences": [
                    {"kind": owner, "name": "rs", "controller": True, "uid": "x", "apiVersion": "apps/v1"}
                ]
                if owner
                else [],
            },
            "spec": {
                "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}],
                **spec,
            },
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "lastTransitionTime": datetime.fromtimestamp(since, self.clock.now().tzinfo).strftime(
                            "%Y-%m-%dT%H:%M:%SZ"
                        ),
                    }
                ],
            },
        }
        return self.add("pods", obj)

    def bound_pod(self, name: str, node: str, *, cpu: str = "100m", ns: str = "default",
                  owner: str | None = "ReplicaSet", labels: dict[str, str] | None = None) -> Obj:  # fmt: skip
        obj = self.pending_pod(name, cpu=cpu, ns=ns, owner=owner)
        obj["metadata"]["labels"] = labels or {"app": name}
        obj["spec"]["nodeName"] = node
        obj["status"] = {"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}]}
        return obj

    def node(self, name: str, group: str | None, *, cpu: str = "2", memory: str = "4Gi", ready: bool = True,
             vpsienode: str | None = None, taints: list[Obj] | None = None,
             annotations: dict[str, str] | None = None) -> Obj:  # fmt: skip
        labels = {"kubernetes.io/hostname": name}
        if group:
            labels[NODEGROUP_LABEL] = group
            labels["pool"] = group
        if vpsienode:
            labels[VPSIENODE_LABEL] = vpsienode
        obj: Obj = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "uid": f"node-{name}",
                "labels": labels,
                "annotations": dict(annotations or {}),
                "resourceVersion": "1",
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": {"taints": list(taints or [])},
            "status": {
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        return self.add("nodes", obj)

    def vpsienode(self, name: str, group: str, *, phase: str = "Ready", node_name: str | None = None,
                  annotations: dict[str, str] | None = None, created: str = EPOCH) -> Obj:  # fmt: skip
        obj: Obj = {
            "apiVersion": "autoscaler.vpsie.com/v1alpha1",
            "kind": "VPSieNode",
            "metadata": {
                "name": name,
                "labels": {NODEGROUP_LABEL: group},
                "annotations": dict(annotations or {}),
                "creationTimestamp": created,
            },
            "spec": {"nodeGroup": group, "hostname": name, "vm": VM},
            "status": {"phase": phase, **({"nodeName": node_name} if node_name else {})},
        }
        return self.add("vpsienodes", obj)

    def member(self, name: str, group: str, **node: Any) -> Obj:
        """A Ready VPSieNode with its Node (joined by the label)."""
        self.vpsienode(name, group, node_name=name)
        return self.node(name, group, vpsienode=name, **node)


TAINT = {"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}


class StubCatalogue:
    """A VPSie catalogue answering ``list_plans`` with ``plans``; fails while ``down``; counts calls."""

    def __init__(self, plans: list[models.Plan]) -> None:
        self.plans = plans
        self.down = False
        self.calls = 0

    async def list_node_groups(self, cluster_identifier: str) -> list[models.K8sNodeGroup]:
        return []

    async def list_k8s_offers(self, dc_identifier: str) -> list[models.K8sOffer]:
        return []

    async def list_plans(
        self, dc_identifier: str, os_identifier: str, category_identifier: str = ""
    ) -> list[models.Plan]:
        self.calls += 1
        if self.down:
            raise ServerError("VPSie is down", operation="list_plans")
        return list(self.plans)
