"""Which instance answers which launch: decided from evidence, by one rule, in one place.

VPSie's managed add-node takes no hostname and returns no id, and its nodes are listed only once
booted (docs/vpsie-api.md §4.10; docs/lifecycle.md, "Launch"). So a launch is answered by
*evidence*: a node of the group that no record owns and that was not in the group when the launch
record was written (its ``baseline``). When several launches wait, the oldest launch gets the oldest
new node (FIFO: VPSie provisions a group's nodes in request order). The count is what matters for
"never a node twice, never a node lost": every new node is bound to exactly one waiting record, or,
when none waits for it, it is *unowned* and gets a record of its own (adoption), never deleted on
sight and never ignored.

Plain VMs carry the hostname the record chose, so a VM answers exactly the record of its hostname.

:func:`assign` is pure (table- and property-tested). :class:`BindingBook` adds what a pure function
cannot know: the bindings this process wrote and its cache has not shown yet (client-go's
"expectations"), and one lock per source so two reconciles never hand one node to two records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from vpsie_autoscaler.api.vpsienode import VPSieNode, VPSieNodeSpec
from vpsie_autoscaler.runtime.clock import Clock, RealClock
from vpsie_autoscaler.runtime.expectations import Expectations
from vpsie_autoscaler.vpsie.provider import Instance, NodeSource, VMSource


def source_key(node_group: str, managed: Mapping[str, object] | None, plan_size: object = None) -> str:
    """One string per VPSie source: records with the same key compete for the same instances.

    A managed record on a size of its own (``spec.planSizeId``, a group with several plans) is added to
    the cluster's VPSie node group of that size, whichever NodeGroup asked: VPSie keeps one group per
    size, so the size names the group, and every such record of the cluster shares the key."""
    if managed:
        cluster = managed.get("clusterIdentifier", "")
        if plan_size:
            return f"managed/{cluster}/size/{plan_size}"
        group = managed.get("nodeGroupId") or managed.get("nodeGroupName") or ""
        return f"managed/{cluster}/{group}"
    return f"vm/{node_group}"


def source_key_of_spec(spec: VPSieNodeSpec) -> str:
    managed = spec.managed.to_k8s() if spec.managed is not None else None
    return source_key(spec.node_group, managed, spec.plan_size_id)


def source_key_of_object(obj: Mapping[str, object]) -> list[str]:
    """Index function over raw VPSieNodes (no model parsing on every cache event)."""
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        return []
    managed = spec.get("managed")
    return [
        source_key(
            str(spec.get("nodeGroup", "")),
            managed if isinstance(managed, Mapping) else None,
            spec.get("planSizeId"),
        )
    ]


@dataclass(frozen=True)
class Waiting:
    """A record whose launch was sent (or written ahead) and that no instance answers yet."""

    name: str
    requested_hostname: str
    sent_at: datetime
    baseline: frozenset[str]
    leaving: bool = False  # being deleted: served after every live launch


SOURCE_INDEX: Final = "lifecycle.source"
"""VPSieNode index: the VPSie source (managed group or VM group) → its records (binding; the NodeGroup
controller's adoption reads the same index)."""


def source_index(obj: Mapping[str, Any]) -> list[str]:
    return source_key_of_object(obj)


def instance_key(instance: Instance) -> str:
    """How a binding names an instance: the lower-cased VPSie hostname (unique in a cluster or account)."""
    return instance.hostname.lower()


def bound_key(vn: VPSieNode) -> str | None:
    """The instance a record owns (lower-cased VPSie hostname), if bound. A record written before
    launch records existed owns the instance of its Node (the Node name is the lower-cased hostname)."""
    launch = vn.status.launch
    if launch is not None and launch.bound_hostname:
        return launch.bound_hostname.lower()
    if vn.spec.adopt is not None:
        return vn.spec.adopt.hostname.lower()
    if vn.status.node_name:
        return vn.status.node_name.lower()
    return None


def raw_owned_key(obj: Mapping[str, Any]) -> str | None:
    """The instance an object that cannot be parsed owns, read field by field (never treated as
    owning nothing: its instance must not be handed to another record)."""

    def field(parent: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = parent.get(name)
        return value if isinstance(value, Mapping) else {}

    status, spec = field(obj, "status"), field(obj, "spec")
    launch, adopt = field(status, "launch"), field(spec, "adopt")
    for value in (launch.get("boundHostname"), adopt.get("hostname"), status.get("nodeName")):
        if isinstance(value, str) and value:
            return value.lower()
    return None


def waiting_of(vn: VPSieNode) -> Waiting | None:
    """The record as a waiting launch, or None when nothing can answer it: it sent nothing, or it is
    bound already. For managed groups (where binding is first come, first served) also when VPSie
    refused its launch (``NotDone``) or the record failed: a node arriving for it has no claim on it
    and is adopted, so a record that will never get its node can never take the node of a newer
    launch. A plain VM answers only the record of its hostname, so a Failed VM record still binds its
    own late VM (to delete it). A record being deleted still waits (to delete its node), after every
    live launch."""
    launch = vn.status.launch
    if launch is None or bound_key(vn) is not None:
        return None
    if vn.spec.managed is not None and (launch.outcome == "NotDone" or vn.status.phase == "Failed"):
        return None
    return Waiting(
        name=vn.metadata.name,
        requested_hostname=launch.requested_hostname.lower(),
        sent_at=launch.sent_at,
        baseline=frozenset(h.lower() for h in launch.baseline),
        leaving=vn.metadata.deletion_timestamp is not None,
    )


def _age(instance: Instance) -> tuple[bool, datetime, int, str]:
    created = instance.created_at
    return (created is None, created or datetime.min, instance.numeric_id or 0, instance.hostname.lower())


def assign(
    source: NodeSource, waiting: Iterable[Waiting], instances: Iterable[Instance], bound: Iterable[str]
) -> dict[str, Instance]:
    """Record name → the instance that answers its launch (see the module docstring).

    ``bound`` are the instance keys records already own. VMs: by requested hostname. Managed nodes:
    live launches before launches of records being deleted, oldest first within each; each takes the
    oldest instance that is neither owned nor in its baseline.
    """
    owned = set(bound)
    free = sorted((i for i in instances if instance_key(i) not in owned), key=_age)
    result: dict[str, Instance] = {}
    queue = sorted(waiting, key=lambda w: (w.leaving, w.sent_at, w.name))
    if isinstance(source, VMSource):
        by_name = {instance_key(i): i for i in free}
        for w in queue:
            found = by_name.get(w.requested_hostname)
            if found is not None:
                result[w.name] = found
        return result
    taken: set[str] = set()
    for w in queue:
        for inst in free:
            key = instance_key(inst)
            if key not in taken and key not in w.baseline:
                result[w.name] = inst
                taken.add(key)
                break
    return result


def unowned(
    source: NodeSource, waiting: Iterable[Waiting], instances: Iterable[Instance], bound: Iterable[str]
) -> list[Instance]:
    """Instances no record owns and no waiting launch can claim: they get a record by adoption."""
    instances = list(instances)
    bound = set(bound)
    claimed = {instance_key(i) for i in assign(source, waiting, instances, bound).values()}
    return [i for i in instances if instance_key(i) not in bound and instance_key(i) not in claimed]


class BindingBook:
    """This process's binding writes not yet visible in its cache, and one lock per source.

    The writes are :class:`~vpsie_autoscaler.runtime.expectations.Expectations` (instance key → record
    name) without a timeout: a binding we wrote and then forgot would let another record bind the same
    instance, so one stays expected until the cache shows it or the record goes."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._locks: dict[NodeSource, asyncio.Lock] = {}
        self._expected: Expectations[str, str] = Expectations(clock or RealClock(), timeout=None)

    def lock(self, source: NodeSource) -> asyncio.Lock:
        return self._locks.setdefault(source, asyncio.Lock())

    def expect(self, key: str, record: str) -> None:
        self._expected.expect(key, record)

    def view(self, records: Iterable[VPSieNode]) -> tuple[list[Waiting], set[str]]:
        """Waiting launches and owned instance keys of ``records`` (one source), with our own writes
        that the cache has not delivered yet applied on top."""
        waiting: list[Waiting] = []
        bound: set[str] = set()
        names = set()
        for vn in records:
            names.add(vn.metadata.name)
            key = bound_key(vn)
            if key is not None:
                bound.add(key)
                if self._expected.get(key) == vn.metadata.name:
                    self._expected.observe(key)  # the cache shows our write now
                continue
            w = waiting_of(vn)
            if w is not None:
                waiting.append(w)
        pending = {record: key for key, record in self._expected.items() if record in names}
        bound.update(pending.values())
        waiting = [w for w in waiting if w.name not in pending]
        return waiting, bound

    def expected_for(self, record: str) -> str | None:
        """The instance this process bound ``record`` to, while its cache has not shown it yet."""
        return next((key for key, r in self._expected.items() if r == record), None)

    def forget(self, record: str) -> None:
        for key in [k for k, r in self._expected.items() if r == record]:
            self._expected.forget(key)
